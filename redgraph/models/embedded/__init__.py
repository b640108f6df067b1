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

from redgraph.errors import ModelLoadError

EMBEDDED_DIR = Path(__file__).parent / "weights"
EMBEDDED_NAME = "redgraph-embedded"
# The files a checkpoint folder needs; each is named in the error when missing or unreadable.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json")


def load_embedded(path: str | os.PathLike[str] | None = None, *, device: str = "cpu", dtype: str = "float32"):
    """Load the embedded model (or a checkpoint trained with ``redgraph embedded train``).

    Args:
        path: a checkpoint folder; None loads the one shipped in the package.
        device: where to put the weights.
        dtype: ``"float32"`` (as trained), ``"float16"`` or ``"bfloat16"``.

    Raises:
        ModelLoadError: a file is missing or corrupt; the message names it.
    """
    from redgraph.models.loading import load_lvlm

    folder = Path(path) if path is not None else EMBEDDED_DIR
    check_checkpoint_files(folder)
    try:
        lvlm = load_lvlm(folder, dtype=dtype, device=device, local_files_only=True)
    except ModelLoadError as exc:
        raise ModelLoadError(f"the embedded model in {folder} could not be loaded: {exc}") from exc
    if path is None:
        lvlm.name = EMBEDDED_NAME
    return lvlm


def check_checkpoint_files(folder: Path) -> None:
    """Raise ModelLoadError naming the first missing or unreadable file of a checkpoint folder."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"the embedded model folder {folder} does not exist; reinstall redgraph, or pass --model with a "
            "checkpoint folder"
        )
    for name in REQUIRED_FILES:
        file = folder / name
        if not file.is_file():
            raise ModelLoadError(
                f"{file} is missing; the embedded model is incomplete. Reinstall redgraph, or rebuild it with "
                "`redgraph embedded train`"
            )
        if name.endswith(".json"):
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ModelLoadError(f"{file} is corrupt (not JSON: {exc}); reinstall redgraph") from exc
    weights = folder / "model.safetensors"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            handle.keys()
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise ModelLoadError(f"{weights} is corrupt ({exc}); reinstall redgraph, or rebuild it with "
                             "`redgraph embedded train`") from exc


def manifest(path: str | os.PathLike[str] | None = None) -> dict:
    """The training record saved next to the weights (command, seed, steps, time, losses)."""
    file = (Path(path) if path is not None else EMBEDDED_DIR) / "redgraph_manifest.json"
    if not file.is_file():
        return {}
    return json.loads(file.read_text(encoding="utf-8"))


__all__ = ["EMBEDDED_DIR", "EMBEDDED_NAME", "check_checkpoint_files", "load_embedded", "manifest"]
