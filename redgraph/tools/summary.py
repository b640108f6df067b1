"""One graph run summarised for a calling agent: what the LangChain tool and the MCP tool answer,
and the arguments both take, described and bounded once."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from redgraph.errors import MAX_ROUNDS
from redgraph.graphs.run import run_graph
from redgraph.graphs.storage import redgraph_home
from redgraph.models.images import resolve_image

ImageArg = Annotated[str, Field(description="Path of an image file or a PDF, or either as a data URL "
                                            "(data:image/png;base64,... or data:application/pdf;base64,...); "
                                            "images in PNG, JPEG, WebP, GIF or BMP.", min_length=1)]
QuestionArg = Annotated[str, Field(description="The question about the image.", min_length=1)]
RationaleArg = Annotated[str | None, Field(
    description="Optional reasoning about the image to check and answer with; the critic verifies its claims first.")]
RationaleWeightArg = Annotated[float, Field(ge=0, le=10, description="How strongly accepted rationales steer the "
                                                                     "answer (RED's lambda), 0 to 10.")]
RoundsArg = Annotated[int, Field(ge=1, le=MAX_ROUNDS, description=f"Most reasoning rounds before giving up on a "
                                                                  f"rationale, 1 to {MAX_ROUNDS}.")]
PageArg = Annotated[int | None, Field(ge=1, description="Of a PDF: the page to ask (1 is the first). Left out, every "
                                                        "page is asked (up to 20) and the answer says which page "
                                                        "it comes from.")]


def ask_for_agent(
    lvlm,
    image: str,
    question: str,
    *,
    rationale: str | None = None,
    trace_dir: str | os.PathLike[str] | None = None,
    allow_remote_images: bool = False,
    page: int | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """What the LangChain tool and the MCP tool answer: one graph run on an image given as a path or
    data URL, summarised for a calling model, with the trace saved to ``trace_dir`` (default
    ``redgraph_home()/traces``) and named in the summary."""
    picture = resolve_image(image, allow_paths=True, allow_remote=allow_remote_images, allow_documents=True)
    folder = Path(trace_dir) if trace_dir is not None else redgraph_home() / "traces"
    run_id = uuid.uuid4().hex
    path = folder / f"{run_id}.json"
    result = run_graph(lvlm, picture, question, rationale=rationale, trace_path=path, page=page, **settings)
    return {**result.summary(), "trace": str(path)}


def verify_for_agent(trace: str, key: str | None = None) -> dict[str, Any]:
    """What the MCP tool ``verify_trace`` answers: a trace given as a file path (its exact bytes are
    checked) or as its JSON text (its events, chain and signature). Text that is not a trace at all
    (not JSON, ``Infinity``, a lone surrogate, nested too deep, ...) is a result with ``readable``
    false and the reason, like ``redgraph trace verify``'s exit 3, not an error.

    Raises:
        InputError: ``trace`` is neither JSON text nor the path of a readable trace file.
    """
    from redgraph.errors import InputError
    from redgraph.trace import read_json, read_trace_file, verify_data, verify_text

    if not isinstance(trace, str) or not trace.strip():
        raise InputError("give a trace file's path or the trace's JSON text")
    text = trace.strip()
    if text.startswith("{"):
        try:
            data = read_json(text)
        except InputError as exc:
            result = None
            reason = f"unreadable: {exc}"
        else:
            result = verify_data(data, key)
    else:
        location = os.path.expanduser(text)
        if "\x00" in location:
            raise InputError(f"{text[:200]!r} is not a path (it holds a NUL character); pass the trace file's path or "
                             "its JSON text")
        try:
            content = read_trace_file(Path(location))
        except InputError as exc:
            raise InputError(f"no trace file at {text[:200]!r} can be read ({exc}); pass the file's path or its JSON "
                             "text") from exc
        result = verify_text(content, key)
    if result is None:
        return {"ok": False, "reason": reason, "first_bad_event": None, "events": 0, "signed": False, "readable": False}
    return {"ok": result.ok, "reason": result.reason, "first_bad_event": result.first_bad, "events": result.events,
            "signed": result.signed, "readable": result.readable}
