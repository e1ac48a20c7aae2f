"""A run folder: config.json, metrics.jsonl, summary.json, checkpoint/, plots."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ...errors import DempError


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MetricsLog:
    """Append-only JSON-lines log; ``truncate_after(step)`` drops lines of an interrupted tail."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """All records (a torn last line is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_after(self, step: int) -> None:
        """Keep only records up to ``step`` (for a resumed run)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that holds an object.

    Raises:
        DempError: The file is unreadable, not JSON, or holds something else (one line).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DempError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise DempError(f"{path} does not hold a JSON object")
    return data


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file ({} when it does not exist)."""
    from safetensors.torch import load_file

    return load_file(str(path)) if path.exists() else {}


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (disabled when ``enabled`` is false)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True)
