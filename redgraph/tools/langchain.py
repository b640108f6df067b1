"""redgraph as a LangChain tool, for agents that need a checked answer about an image.

The tool runs the whole graph (reasoner, critic, RED answerer). Its content, for the calling
model, is a short JSON summary: answer, verdict, rationales with the critic's support, and the
path of the saved trace; the artifact holds the same summary for code. Failures come back as text
the model can act on ("image file 'x.png' does not exist; check the path ..."), not as exceptions.

Example:
    >>> tool = make_ask_image_tool()  # doctest: +SKIP
    >>> agent = create_agent(model, tools=[tool])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel

from redgraph.agents.experts import make_experts, parse_experts
from redgraph.errors import RedgraphError
from redgraph.tools.summary import ImageArg, PageArg, QuestionArg, RationaleArg, RationaleWeightArg, RoundsArg


class AskImageArgs(BaseModel):
    """Arguments of the ``ask_image`` tool (the MCP tool takes the same, described and bounded alike)."""

    image: ImageArg
    question: QuestionArg
    rationale: RationaleArg = None
    rationale_weight: RationaleWeightArg = 1.0
    rounds: RoundsArg = 2
    page: PageArg = None


def make_ask_image_tool(
    model: str | os.PathLike[str] | None = None,
    *,
    lvlm=None,
    trace_dir: str | os.PathLike[str] | None = None,
    allow_remote_images: bool = False,
    name: str = "ask_image",
    experts: str | Sequence[str] = "lvlm",
) -> StructuredTool:
    """A LangChain tool answering questions about images with the rationale graph.

    Args:
        model: checkpoint path or hub id; None for the embedded model. Loaded on first use.
        lvlm: an already loaded model (then ``model`` is not used).
        trace_dir: where traces are saved (default ``redgraph_home()/traces``).
        allow_remote_images: let the calling model pass http(s) image URLs.
        name: the tool's name as the model sees it.
        experts: who checks the claims: ``"lvlm"`` or ``"lvlm,ocr"`` (see :func:`redgraph.make_context`).
    """
    from redgraph.models.loading import LazyModel
    from redgraph.tools.summary import ask_for_agent

    experts = parse_experts(experts)
    if "ocr" in experts:
        make_experts(experts)  # a missing OCR engine is refused now, not at the first call
    loader = LazyModel(model, lvlm=lvlm)

    def ask_image(image: str, question: str, rationale: str | None = None, rationale_weight: float = 1.0,
                  rounds: int = 2, page: int | None = None) -> tuple[str, dict[str, Any]]:
        try:
            summary = ask_for_agent(loader.get(), image, question, rationale=rationale, trace_dir=trace_dir,
                                    allow_remote_images=allow_remote_images, rationale_weight=rationale_weight,
                                    rounds=rounds, page=page, experts=experts)
        except RedgraphError as exc:
            raise ToolException(f"ask_image failed: {exc}") from exc
        return json.dumps(summary), summary

    return StructuredTool.from_function(
        ask_image,
        name=name,
        description=(
            "Answer a question about an image or a PDF with a checked, explainable answer. A reasoner writes a rationale "
            "(or yours is used), a critic verifies its claims against the image, and the answer is decoded from "
            "the image and the accepted rationale. Returns the answer, whether it is unsure (the image could not "
            "tell: then check it or ask a person), the critic's verdict, each rationale's support, the page of a PDF "
            "the answer comes from, and the path of an audit trace."
        ),
        args_schema=AskImageArgs,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=_explain_invalid_arguments,
    )


def _explain_invalid_arguments(error) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
    return f"ask_image was called with invalid arguments ({problems}); fix them and call it again"


__all__ = ["AskImageArgs", "make_ask_image_tool"]
