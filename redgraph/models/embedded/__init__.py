"""The embedded default LVLM: a small Qwen2-VL trained from scratch on synthetic visual reasoning,
shipped inside the package so that redgraph works offline, on a CPU, with no model named.

It knows coloured-shape scenes, bar charts and small documents (see :mod:`redgraph.data`), and
nothing else: it is a working default and a test bed, not a general vision-language model. Real
users name their own model (``--model`` / ``load_lvlm(path)``).

Example:
    >>> from redgraph.models.embedded import load_embedded
    >>> lvlm = load_embedded()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from redgraph.models.embedded.files import (
    EMBEDDED_DIR,
    EMBEDDED_NAME,
    MANIFEST_FILE,
    REQUIRED_FILES,
    check_checkpoint_files,
)


def load_embedded(path: str | os.PathLike[str] | None = None, *, device: str = "cpu", dtype: str = "float32"):
    """Load the embedded model (or a checkpoint trained with ``redgraph embedded train``); see
    :func:`redgraph.models.loading.load_embedded`."""
    from redgraph.models.loading import load_embedded as load

    return load(path, device=device, dtype=dtype)


def manifest(path: str | os.PathLike[str] | None = None) -> dict:
    """The training record saved next to the weights (command, seed, steps, time, losses)."""
    file = (Path(path) if path is not None else EMBEDDED_DIR) / MANIFEST_FILE
    if not file.is_file():
        return {}
    return json.loads(file.read_text(encoding="utf-8"))


__all__ = [
    "EMBEDDED_DIR", "EMBEDDED_NAME", "MANIFEST_FILE", "REQUIRED_FILES", "check_checkpoint_files", "load_embedded", "manifest",
]
