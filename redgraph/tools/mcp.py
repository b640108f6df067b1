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
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from redgraph.errors import RedgraphError
from redgraph.models.loading import LazyModel
from redgraph.tools.summary import ask_for_agent


def build_server(
    model: str | os.PathLike[str] | None = None,
    *,
    lvlm=None,
    trace_dir: str | os.PathLike[str] | None = None,
) -> MCPServer:
    """The MCP server; the model (``model``, or the embedded one) loads on the first ``ask_image``."""
    loader = LazyModel(model, lvlm=lvlm)
    server = MCPServer(
        "redgraph",
        instructions="Checked, explainable answers about images. Use ask_image for a question about an image, "
                     "and verify_trace to check that an answer's audit trace was not changed.",
    )

    @server.tool()
    async def ask_image(image: str, question: str, rationale: str | None = None, rationale_weight: float = 1.0,
                        rounds: int = 2) -> dict[str, Any]:
        """Answer a question about an image (a file path or a data:image/...;base64 URL). A reasoner writes a
        rationale (or the given one is used), a critic checks its claims against the image, and the answer is
        decoded from the image and the accepted rationale. Returns answer, unsure (true when the image could not
        tell: check the answer or ask a person), verdict, rationales with support, and the trace file's path."""
        try:
            return await anyio.to_thread.run_sync(lambda: ask_for_agent(
                loader.get(), image, question, rationale=rationale, trace_dir=trace_dir,
                rationale_weight=rationale_weight, rounds=rounds))
        except RedgraphError as exc:
            raise ToolError(f"ask_image failed: {exc}") from exc

    @server.tool()
    def verify_trace(trace: str, key: str | None = None) -> dict[str, Any]:
        """Check a redgraph trace: a file path (its exact bytes are checked) or the trace's JSON text (its
        events and hash chain are checked). With a key, the HMAC signature is checked too. Returns ok, the
        reason, and the first bad event's index."""
        from redgraph.trace import read_json, read_trace_file, verify_data, verify_text

        text = trace.strip()
        if text.startswith("{"):
            try:
                result = verify_data(read_json(text), key)
            except RedgraphError as exc:
                raise ToolError(f"verify_trace: the trace text cannot be read ({exc}); pass the file's path or its "
                                "JSON") from exc
        else:
            try:
                content = read_trace_file(Path(os.path.expanduser(text)))
            except RedgraphError as exc:
                raise ToolError(f"verify_trace: no trace file at {trace[:200]!r} can be read ({exc}); pass the file's "
                                "path or its JSON text") from exc
            result = verify_text(content, key)
        return {"ok": result.ok, "reason": result.reason, "first_bad_event": result.first_bad, "events": result.events,
                "signed": result.signed, "readable": result.readable}

    return server


__all__ = ["build_server"]
