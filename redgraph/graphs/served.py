"""The graph as the LangGraph server (``langgraph dev`` / ``langgraph up``) runs it, named in the
repository's ``langgraph.json``.

Input: ``{"image_input": "<file path or data URL>", "question": "..."}``. Context (optional JSON):
any of :data:`redgraph.graphs.context.CONTEXT_SETTINGS`, e.g. ``{"rationale_weight": 0.5,
"rounds": 3}``; the embedded model when no ``model`` is named. The server supplies the
checkpointer, so human review (``on_exhausted: "human_review"``) pauses and resumes through its API.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph

from redgraph.graphs.context import ServedContext
from redgraph.graphs.graph import add_rationale_nodes
from redgraph.graphs.state import GraphState


class ServedState(GraphState, total=False):
    image_input: str  # a file path or data URL; turned into ``image`` (sha256 + stored path) first


def prepare(state: ServedState, config: RunnableConfig) -> dict[str, Any]:
    """Resolve ``image_input`` into an image reference and name the trace after the thread."""
    from redgraph.errors import check_question
    from redgraph.graphs.run import image_reference
    from redgraph.models.images import resolve_image

    check_question(state.get("question"))
    update: dict[str, Any] = {}
    if "image" not in state:
        if "image_input" not in state:
            from redgraph.errors import InputError

            raise InputError("the input needs 'image_input' (a file path or data URL) and 'question'")
        update["image"] = image_reference(resolve_image(state["image_input"]))
    if "trace_id" not in state:
        update["trace_id"] = str(config.get("configurable", {}).get("thread_id") or uuid.uuid4().hex)
    return update


def build_served_graph(checkpointer=None):
    """``prepare``, then the rationale graph's nodes in the same graph (not a subgraph), so answer
    tokens reach a server client on the plain ``custom`` stream mode."""
    graph = StateGraph(ServedState, context_schema=ServedContext)
    graph.add_node("prepare", prepare)
    graph.add_edge(START, "prepare")
    add_rationale_nodes(graph, after="prepare")
    return graph.compile(checkpointer=checkpointer)


graph = build_served_graph()
