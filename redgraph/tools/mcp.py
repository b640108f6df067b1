"""``redgraph mcp``: an MCP server over stdio with the official ``mcp`` package.

Tools:
    ``ask_image``: answer a question about an image (a file path or data URL) through the rationale
        graph; returns the answer, the critic's verdict, the rationales with their support, and the
        path of the saved trace.
    ``verify_trace``: check a trace (a file path, or the trace's JSON text) and say whether it is
        intact, naming the first changed event if not.

Example (a client's configuration)::

    {"mcpServers": {"redgraph": {"command": "redgraph", "args": ["mcp"]}}}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

import redgraph
from redgraph.agents.experts import make_experts, parse_experts
from redgraph.errors import RedgraphError
from redgraph.models.loading import LazyModel
from redgraph.tools.summary import (
    ImageArg,
    PageArg,
    QuestionArg,
    RationaleArg,
    RationaleWeightArg,
    RoundsArg,
    ask_for_agent,
    verify_for_agent,
)


def build_server(
    model: str | os.PathLike[str] | None = None,
    *,
    lvlm=None,
    trace_dir: str | os.PathLike[str] | None = None,
    experts: str | Sequence[str] = "lvlm",
) -> MCPServer:
    """The MCP server; the model (``model``, or the embedded one) loads on the first ``ask_image``.
    ``experts``: who checks the claims (``"lvlm"`` or ``"lvlm,ocr"``, see :func:`redgraph.make_context`)."""
    experts = parse_experts(experts)
    if "ocr" in experts:
        make_experts(experts)  # a missing OCR engine is refused now, not at the first call
    loader = LazyModel(model, lvlm=lvlm)
    server = MCPServer(
        "redgraph",
        version=redgraph.__version__,
        instructions="Checked, explainable answers about images. Use ask_image for a question about an image, "
                     "and verify_trace to check that an answer's audit trace was not changed.",
    )

    @server.tool()
    async def ask_image(image: ImageArg, question: QuestionArg, rationale: RationaleArg = None,
                        rationale_weight: RationaleWeightArg = 1.0, rounds: RoundsArg = 2,
                        page: PageArg = None) -> dict[str, Any]:
        """Answer a question about an image or a PDF (a file path or a data URL). A reasoner writes a
        rationale (or the given one is used), a critic checks its claims against the image, and the answer is
        decoded from the image and the accepted rationale. Returns answer, unsure (true when the image could not
        tell: check the answer or ask a person), verdict, rationales with support, the page of a PDF the answer comes
        from, and the trace file's path."""
        try:
            return await anyio.to_thread.run_sync(lambda: ask_for_agent(
                loader.get(), image, question, rationale=rationale, trace_dir=trace_dir,
                rationale_weight=rationale_weight, rounds=rounds, page=page, experts=experts))
        except RedgraphError as exc:
            raise ToolError(f"ask_image failed: {exc}") from exc

    @server.tool()
    def verify_trace(
        trace: Annotated[str, Field(min_length=1, description="A trace file's path, or the trace's JSON text.")],
        key: Annotated[str | None, Field(description="The HMAC key the trace was signed with, to check its "
                                                     "signature too.")] = None,
    ) -> dict[str, Any]:
        """Check a redgraph trace: a file path (its exact bytes are checked) or the trace's JSON text (its
        events and hash chain are checked). With a key, the HMAC signature is checked too. Returns ok, the
        reason, the first bad event's index, and readable (false when the text is not a trace at all)."""
        try:
            return verify_for_agent(trace, key)
        except RedgraphError as exc:
            raise ToolError(f"verify_trace: {exc}") from exc

    return server


__all__ = ["build_server"]
