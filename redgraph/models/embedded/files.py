"""Where the embedded model's files are, and the check that a checkpoint folder is whole (no model
code: :mod:`redgraph.models.loading` reads these to load it)."""

from __future__ import annotations

import json
from pathlib import Path

from redgraph.errors import ModelLoadError

EMBEDDED_DIR = Path(__file__).parent / "weights"
EMBEDDED_NAME = "redgraph-embedded"
# The files a checkpoint folder needs; each is named in the error when missing or unreadable.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json")
# The training record `redgraph embedded train` saves next to the weights (not required to load).
MANIFEST_FILE = "redgraph_manifest.json"


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
