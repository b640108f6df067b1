"""Old import path of helpers that now live where they belong: image references in
:mod:`redgraph.models.images`, the lazily loaded model in :mod:`redgraph.models.loading`, the graph
run in :mod:`redgraph.graphs.run` and the agents' summary in :mod:`redgraph.tools.summary`. Nothing
inside redgraph imports this module."""

from redgraph.graphs.run import run_graph
from redgraph.models.images import DEFAULT_MAX_IMAGE_BYTES, resolve_image
from redgraph.models.loading import LazyModel
from redgraph.tools.summary import ask_for_agent

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "LazyModel", "ask_for_agent", "resolve_image", "run_graph"]
