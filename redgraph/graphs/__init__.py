"""The LangGraph workflow: the wiring (:mod:`~redgraph.graphs.graph`), its nodes, state and run context,
and ``ask``, which runs it with a checkpointer and a trace."""

from redgraph.graphs.context import POLICIES, RunContext, make_context
from redgraph.graphs.graph import after_critique, build_graph
from redgraph.graphs.run import AskResult, ask
from redgraph.graphs.state import GraphState, ImageRef

__all__ = [
    "POLICIES", "AskResult", "GraphState", "ImageRef", "RunContext", "after_critique", "ask", "build_graph",
    "make_context",
]
