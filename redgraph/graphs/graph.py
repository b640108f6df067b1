"""Wiring of the rationale graph: receive -> reason -> critique -> (reason again | decide) -> answer.

Node code lives in :mod:`redgraph.graphs.nodes`; this module only wires and compiles.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from redgraph.graphs import nodes
from redgraph.graphs.context import RunContext, resolve_context, run_setting
from redgraph.graphs.state import GraphState


def after_critique(state: GraphState, runtime: Runtime[RunContext]) -> Literal["reason", "decide"]:
    """Revise while rounds remain; otherwise decide (accepted, or the exhausted-rounds policy)."""
    if state["verdict"] == "revise" and state["round"] < run_setting(state, resolve_context(runtime.context), "rounds"):
        return "reason"
    return "decide"


def build_graph(checkpointer=None):
    """The compiled graph. Pass a LangGraph checkpointer to make runs resumable by thread id."""
    graph = StateGraph(GraphState, context_schema=RunContext)
    add_rationale_nodes(graph, after=START)
    return graph.compile(checkpointer=checkpointer)


def add_rationale_nodes(graph: StateGraph, *, after: str) -> None:
    """Add the rationale graph's nodes and edges to ``graph``, entered from node ``after`` (e.g.
    START); it ends at END. Adding them to another graph, rather than nesting the compiled graph,
    keeps them top-level nodes, so their streamed tokens reach a client without subgraph streaming."""
    graph.add_node("receive", nodes.receive)
    graph.add_node("reason", nodes.reason)
    graph.add_node("critique", nodes.critique)
    graph.add_node("decide", nodes.decide)
    graph.add_node("answer", nodes.answer)
    graph.add_edge(after, "receive")
    graph.add_edge("receive", "reason")
    graph.add_edge("reason", "critique")
    graph.add_conditional_edges("critique", after_critique)
    graph.add_edge("decide", "answer")
    graph.add_edge("answer", END)
