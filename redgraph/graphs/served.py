"""The graph as the LangGraph server (``langgraph dev`` / ``langgraph up``) runs it, named in the
repository's ``langgraph.json``.

Input: ``{"image_input": "<file path or data URL>", "question": "..."}``. Context (optional JSON):
any of :data:`redgraph.graphs.context.CONTEXT_SETTINGS`, e.g. ``{"rationale_weight": 0.5,
"rounds": 3}``; the embedded model when no ``model`` is named. The server supplies the
checkpointer, so human review (``on_exhausted: "human_review"``) pauses and resumes through its API.

``langgraph.json`` names :func:`make_served_graph`, a graph factory: the server hands a factory
the run's context as the caller sent it, before it drops the keys its schema does not list, so a
misspelt setting (``rationale_weigth``) fails the run with a message naming it, as in-process.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from redgraph.graphs.context import CONTEXT_SETTINGS, ServedContext
from redgraph.graphs.graph import add_rationale_nodes
from redgraph.graphs.state import GraphState

try:  # the LangGraph server's runtime type, which is how it recognises the factory's argument
    from langgraph_sdk.runtime import ServerRuntime
except ImportError:  # pragma: no cover - langgraph brings langgraph_sdk
    ServerRuntime = Any


class ServedState(GraphState, total=False):
    image_input: str  # a file path or data URL; turned into ``image`` (sha256 + stored path) first
    page: int  # of a PDF given as image_input


class _ServedInputRequired(TypedDict):
    image_input: str  # a file path or a data URL: an image, or a PDF (data:application/pdf;base64,...)
    question: str


class ServedInput(_ServedInputRequired, total=False):
    """What a caller gives a run (the graph's input schema, as LangGraph Studio shows it). Annotations
    are plain types: the server resolves them from a module it may not register by name."""

    page: int  # of a PDF: the page to ask (needed when it has several)


def prepare(state: ServedState, config: RunnableConfig) -> dict[str, Any]:
    """Resolve ``image_input`` into an image reference and name the trace after the thread."""
    from redgraph.errors import check_question

    check_question(state.get("question"))
    update: dict[str, Any] = {}
    if "image" not in state:
        if "image_input" not in state:
            from redgraph.errors import InputError

            raise InputError("the input needs 'image_input' (a file path or data URL) and 'question'")
        update["image"] = _input_reference(state["image_input"], state.get("page"))
    if "trace_id" not in state:
        update["trace_id"] = str(config.get("configurable", {}).get("thread_id") or uuid.uuid4().hex)
    return update


def _input_reference(image_input: str, page: int | None) -> dict[str, Any]:
    """The run's image reference: an image's, or a PDF page's (rendered for the run's answerer, with
    the document's digest and the page). One run reads one page: a PDF of several needs ``page``."""
    from langgraph.runtime import get_runtime

    from redgraph.errors import InputError
    from redgraph.graphs.context import resolve_context
    from redgraph.graphs.run import image_reference, load_document_page, open_document_of
    from redgraph.models.images import resolve_image

    resolved = resolve_image(image_input, allow_documents=True)
    document = open_document_of(resolved)  # a file's first KiB decides: an image file is read once, later
    if document is None:
        if page is not None:
            raise InputError(f"page={page!r} is for documents (PDF, TIFF); image_input is an image")
        return image_reference(resolved)
    with document:
        if page is None and document.pages > 1:
            raise InputError(f"the document has {document.pages} pages; give 'page' in the input (one run reads one page)")
        context = resolve_context(get_runtime().context)
        reference, _ = load_document_page(document, page if page is not None else 1, context)
    return reference


def build_served_graph(checkpointer=None):
    """``prepare``, then the rationale graph's nodes in the same graph (not a subgraph), so answer
    tokens reach a server client on the plain ``custom`` stream mode."""
    graph = StateGraph(ServedState, input_schema=ServedInput, context_schema=ServedContext)
    graph.add_node("prepare", prepare)
    graph.add_edge(START, "prepare")
    add_rationale_nodes(graph, after="prepare")
    return graph.compile(checkpointer=checkpointer)


graph = build_served_graph()


def make_served_graph(runtime: ServerRuntime) -> Any:
    """The served graph, for the LangGraph server: a run's context is checked first, every key the
    caller sent, against :data:`~redgraph.graphs.context.CONTEXT_SETTINGS`.

    Raises:
        ConfigError: naming the unknown keys and the known ones.
    """
    from redgraph.errors import ConfigError

    context = getattr(runtime, "context", None)
    if isinstance(context, Mapping):
        unknown = sorted(set(context) - set(CONTEXT_SETTINGS))
        if unknown:
            raise ConfigError(f"unknown context settings {unknown}; use any of {', '.join(CONTEXT_SETTINGS)}")
    return graph
