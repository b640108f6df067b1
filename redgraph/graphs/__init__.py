"""The LangGraph workflow: state, context and wiring (no model code here)."""

from redgraph.graphs.rationale_graph import after_critique, build_graph
from redgraph.graphs.run import AskResult, ask, make_context
from redgraph.graphs.state import POLICIES, GraphState, ImageRef, RunContext

__all__ = [
    "POLICIES", "AskResult", "GraphState", "ImageRef", "RunContext", "after_critique", "ask", "build_graph",
    "make_context",
]
