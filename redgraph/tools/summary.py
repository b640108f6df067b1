"""One graph run summarised for a calling agent: what the LangChain tool and the MCP tool answer."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from redgraph.graphs.run import redgraph_home, run_graph
from redgraph.models.images import resolve_image


def ask_for_agent(
    lvlm,
    image: str,
    question: str,
    *,
    rationale: str | None = None,
    trace_dir: str | os.PathLike[str] | None = None,
    allow_remote_images: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """What the LangChain tool and the MCP tool answer: one graph run on an image given as a path or
    data URL, summarised for a calling model, with the trace saved to ``trace_dir`` (default
    ``redgraph_home()/traces``) and named in the summary."""
    picture = resolve_image(image, allow_paths=True, allow_remote=allow_remote_images)
    folder = Path(trace_dir) if trace_dir is not None else redgraph_home() / "traces"
    run_id = uuid.uuid4().hex
    path = folder / f"{run_id}.json"
    result = run_graph(lvlm, picture, question, rationale=rationale, trace_path=path, **settings)
    return {**result.summary(), "trace": str(path)}
