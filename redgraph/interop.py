"""What the server, the LangChain tool and the MCP server share: reading an image reference given
as text, and one graph run summarised as JSON.

Example:
    >>> resolve_image("data:text/plain;base64,aGk=", allow_paths=False)
    Traceback (most recent call last):
    ...
    redgraph.errors.ImageError: data URL type 'text/plain' is not supported; send one of image/png, image/jpeg, image/webp, image/gif, image/bmp
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

from redgraph.errors import ImageError, InputError
from redgraph.models.images import decode_data_url

DEFAULT_MAX_IMAGE_BYTES = 8 * 1024 * 1024


class LazyModel:
    """A model loaded on first use (once, whichever thread asks first), or one given ready."""

    def __init__(self, model: str | os.PathLike[str] | None = None, *, lvlm=None) -> None:
        self.model = model
        self._lvlm = lvlm
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._lvlm is None:
                from redgraph.models.loading import load_lvlm

                self._lvlm = load_lvlm(self.model)
            return self._lvlm


def resolve_image(
    reference: str,
    *,
    allow_paths: bool = True,
    allow_remote: bool = False,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    timeout: float = 10.0,
) -> str | bytes:
    """A file path (returned as is) or the bytes behind a data URL or, when allowed, an http(s) URL.

    Raises:
        ImageError: the reference is of a kind not allowed here, the file is missing, the data URL
            is malformed, the download fails, or the image is larger than ``max_bytes``.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise ImageError(f"the image reference must be a non-empty string (a data URL or a file path), got {reference!r:.80}")
    reference = reference.strip()
    if reference.startswith("data:"):
        return decode_data_url(reference, max_bytes=max_bytes)
    if reference.startswith(("http://", "https://")):
        if not allow_remote:
            raise ImageError(
                f"remote image URLs are refused here ({reference[:80]!r}); send the image as a data URL, "
                "or start the server with --allow-remote-images"
            )
        return _download(reference, max_bytes, timeout)
    if "://" in reference[:16]:
        raise ImageError(f"{reference[:80]!r} uses a scheme that is not supported; send a data URL or a file path")
    if not allow_paths:
        raise ImageError(f"file paths are not accepted here ({reference[:80]!r}); send the image as a data URL")
    path = Path(os.path.expanduser(reference))
    if not path.is_file():
        raise ImageError(f"image file {reference!r} does not exist; check the path, or send a data URL")
    if path.stat().st_size > max_bytes:
        raise ImageError(f"image file {reference!r} is {path.stat().st_size} bytes, above the limit of {max_bytes}")
    return str(path)


def _download(url: str, max_bytes: int, timeout: float) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ImageError(f"fetching {url[:80]!r} gave HTTP {response.status_code}; check the URL")
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise ImageError(f"the image at {url[:80]!r} is larger than the limit of {max_bytes} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise ImageError(f"cannot fetch {url[:80]!r}: {type(exc).__name__}: {exc}") from exc


def run_graph(
    lvlm,
    image: str | bytes,
    question: str,
    *,
    rationale: str | None = None,
    trace_path: str | os.PathLike[str] | None = None,
    **settings: Any,
):
    """One graph run with the local model as answerer, critic and (unless ``rationale`` is given)
    reasoner, checkpointed in memory; returns the :class:`redgraph.graphs.run.AskResult`.

    A given ``rationale`` is still checked by the critic: it stands in for the reasoner's output.
    """
    from redgraph.agents.reasoner import LocalReasoner
    from redgraph.agents.scripted import ScriptedReasoner
    from redgraph.graphs.context import make_context
    from redgraph.graphs.run import ask

    if rationale is not None and (not isinstance(rationale, str) or not rationale.strip()):
        raise InputError(f"rationale must be a non-empty text or left out, got {rationale!r:.80}")
    reasoner = ScriptedReasoner([rationale], name="caller") if rationale is not None else LocalReasoner(lvlm)
    context = make_context(lvlm, reasoner=reasoner, **settings)
    return ask(image, question, context, checkpoint="memory", trace_path=trace_path)


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
    from redgraph.graphs.run import redgraph_home

    picture = resolve_image(image, allow_paths=True, allow_remote=allow_remote_images)
    folder = Path(trace_dir) if trace_dir is not None else redgraph_home() / "traces"
    run_id = uuid.uuid4().hex
    path = folder / f"{run_id}.json"
    result = run_graph(lvlm, picture, question, rationale=rationale, trace_path=path, **settings)
    return {
        "answer": result.answer,
        "verdict": result.verdict,
        "outcome": result.outcome,
        "flags": result.flags,
        "rationales": [{"text": r["text"], "support": r["support"], "accepted": r["accepted"]} for r in result.rationales],
        "rationale_dependence": (result.state.get("answer") or {}).get("rationale_dependence"),
        "trace": str(path),
    }
