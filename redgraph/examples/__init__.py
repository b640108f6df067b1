"""Example images bundled with redgraph for `redgraph demo` (held-out synthetic test items)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path


def load_examples() -> list[dict]:
    """The bundled examples: image file name, question, answer, a misleading rationale, source item."""
    return json.loads(files(__name__).joinpath("examples.json").read_text(encoding="utf-8"))


def example_path(example: dict) -> Path:
    """The image file of one bundled example."""
    return Path(str(files(__name__).joinpath(example["image"])))
