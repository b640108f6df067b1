"""redgraph: explainable, checkable vision-language answers.

A reasoner writes rationales, a critic checks them against the image, and a local LVLM answers
with Rationale-Enhanced Decoding (RED), so that the answer provably depends on both.

``import redgraph`` is light: torch and transformers load only when a model is used.

Example:
    >>> import redgraph
    >>> config = redgraph.REDConfig(rationale_weight=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from redgraph.errors import (
    ConfigError,
    ExpertError,
    ImageError,
    InputError,
    ModelLoadError,
    RedgraphError,
    RemoteModelError,
    UnsupportedError,
)

__version__ = "0.1.0"

_LAZY = {
    "REDConfig": "redgraph.decoding",
    "REDDecoder": "redgraph.decoding",
    "REDRequest": "redgraph.decoding",
    "REDResult": "redgraph.decoding",
    "RationaleEnhancedLogitsProcessor": "redgraph.decoding",
    "red_scores": "redgraph.decoding",
    "LVLM": "redgraph.models",
    "load_lvlm": "redgraph.models",
    "load_image": "redgraph.models",
    "load_embedded": "redgraph.models.embedded",
    "ask": "redgraph.graphs",
    "build_graph": "redgraph.graphs",
    "make_context": "redgraph.graphs",
}

if TYPE_CHECKING:
    from redgraph.decoding import (
        RationaleEnhancedLogitsProcessor,
        REDConfig,
        REDDecoder,
        REDRequest,
        REDResult,
        red_scores,
    )
    from redgraph.graphs import ask, build_graph, make_context
    from redgraph.models import LVLM, load_image, load_lvlm
    from redgraph.models.embedded import load_embedded


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'redgraph' has no attribute {name!r}")


__all__ = [
    "LVLM",
    "ConfigError",
    "ExpertError",
    "ImageError",
    "InputError",
    "ModelLoadError",
    "REDConfig",
    "REDDecoder",
    "REDRequest",
    "REDResult",
    "RationaleEnhancedLogitsProcessor",
    "RedgraphError",
    "RemoteModelError",
    "UnsupportedError",
    "__version__",
    "ask",
    "build_graph",
    "load_embedded",
    "load_image",
    "load_lvlm",
    "make_context",
    "red_scores",
]
