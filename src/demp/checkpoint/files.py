"""A checkpoint's files on disk: checksums, the previous generation, interrupted saves.

See :mod:`demp.checkpoint` for the layout. Every file but ``spec.json`` is listed in the
spec with its sha256; a save renames the complete new directory into place after moving
the one it replaces to ``<name>.prev``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError


def previous_of(path: str | os.PathLike[str]) -> Path:
    """Where the generation before ``path`` is kept: ``<name>.prev`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.prev")


def latest_checkpoint(
    path: str | os.PathLike[str], read_spec: Callable[[Path], dict[str, Any]]
) -> Path:
    """The newest complete checkpoint: ``path``, else its previous generation.

    Each candidate's spec is read and its files' checksums verified. Falling back to the
    previous generation warns, naming what was wrong with the newest.

    Raises:
        CheckpointError: Neither is complete and intact (the message names both problems).
    """
    problems = []
    for candidate in (Path(path), previous_of(path)):
        try:
            verify_files(candidate, read_spec(candidate))
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            warnings.warn(
                f"{problems[0]}; resuming from the previous checkpoint {candidate}", stacklevel=2
            )
        return candidate
    raise CheckpointError(" and ".join(problems))


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary folders of interrupted saves of ``path`` (returns them)."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{path.name}.*") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def verify_files(path: Path, spec: dict[str, Any]) -> None:
    """Every file the spec lists must exist with its sha256 (older specs list none)."""
    for name, digest in (spec.get("files") or {}).items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing")
        if sha256(file) != digest:
            raise CheckpointError(f"{file} is damaged (its sha256 differs from spec.json's)")


def sha256(file: Path) -> str:
    """The file's sha256, hex."""
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Flush the folder's files to disk before it is renamed into place."""
    for file in folder.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())


def swap_into_place(tmp: Path, path: Path) -> None:
    """``path`` -> ``path.prev`` (the older prev removed first), then ``tmp`` -> ``path``.

    At every instant ``path`` or ``path.prev`` is a complete checkpoint (or, before the
    first save, ``tmp`` is not yet anything): a kill between the two renames leaves the
    previous generation, which :func:`latest_checkpoint` falls back to.
    """
    if path.exists():
        prev = previous_of(path)
        if prev.exists():
            shutil.rmtree(prev)
        os.replace(path, prev)
    os.replace(tmp, path)
