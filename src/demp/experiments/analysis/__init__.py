"""The paper's neuron-death analyses (§2, appendices B-F) as ``demp analyze NAME``.

Each analysis trains small models (or simulates the theory's random walks), writes
``NAME.json`` (every number) and ``NAME.png`` into the output folder, and comes in three
sizes: ``tiny`` (seconds; the test suite), ``quick`` (minutes on 2 CPU cores) and ``full``
(closer to the paper; hours on a CPU).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from ...errors import DempError
from .common import SIZES, Context, write_result

ANALYSES = {
    "dead-ratio": "dead_ratio",
    "regularization": "regularization",
    "noise-regimes": "noise_regimes",
    "hyperparameters": "hyperparameters",
    "adam-epsilon": "adam_epsilon",
    "overlap": "overlap",
    "probe-size": "probe_size",
    "theory": "theory",
}


def run_analysis(
    name: str,
    size: str = "quick",
    out: str | Path = "runs/analyze",
    *,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one analysis and write ``out/NAME.json`` and ``out/NAME.png``.

    Returns:
        The JSON content (with ``"json"`` and ``"png"`` paths added).

    Raises:
        DempError: Unknown analysis or size.
    """
    if name not in ANALYSES:
        raise DempError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")
    if size not in SIZES:
        raise DempError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    module = importlib.import_module(f"{__name__}.{ANALYSES[name]}")
    ctx = Context(size, data_dir, progress)
    start = time.perf_counter()
    result, figure = module.run(ctx)
    result = {"analysis": name, "size": size, **result, "notes": ctx.notes,
              "seconds": time.perf_counter() - start}  # fmt: skip
    json_path, png_path = write_result(Path(out), name, result, figure)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return {**result, "json": str(json_path), "png": str(png_path)}
