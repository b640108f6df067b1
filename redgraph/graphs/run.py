"""Running the rationale graph: ``ask`` (one question, end to end) with a checkpointer and a trace.

Runs are checkpointed after every node (a SQLite file by default, through LangGraph's SQLite
saver), so a run whose process died resumes from its thread id without redoing finished nodes.
An image given as bytes or a PIL image is stored once, by content, next to the checkpoints: the
state only ever holds its sha256 and path.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redgraph.errors import ConfigError, InputError, RedgraphError
from redgraph.graphs.context import RunContext, make_context, one_step_at_a_time
from redgraph.graphs.storage import close_checkpointer, open_checkpointer, redgraph_home
from redgraph.models.images import ImageInput, image_sha256, load_image, load_image_file_digests
from redgraph.trace.chain import KEY_ENV, Trace, chain_event



def image_reference(image: ImageInput, store: Path | None = None) -> dict[str, str]:
    """sha256 + path of an image, and the sha256 of the file the caller gave (``file_sha256``; the
    bytes of a data URL are a file too; a PIL image has none); bytes and PIL images are first saved
    by content under ``store``."""
    return _load_and_refer(image, store)[0]


def _load_and_refer(image: ImageInput, store: Path | None = None) -> tuple[dict[str, str], Any]:
    """The image's reference (sha256 of the pixels, path, sha256 of the file) and its pixels, loaded
    and limited once."""
    if isinstance(image, (str, os.PathLike)):
        picture, digest, file_digest = load_image_file_digests(image)
        return {"sha256": digest, "path": str(Path(image).resolve()), "file_sha256": file_digest}, picture
    picture = load_image(image)
    digest = image_sha256(picture)
    folder = store or redgraph_home() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.png"
    if not path.exists():
        picture.save(path)
    reference = {"sha256": digest, "path": str(path)}
    if isinstance(image, (bytes, bytearray)):
        reference["file_sha256"] = hashlib.sha256(bytes(image)).hexdigest()
    return reference, picture


# The flags of an answer the project cannot stand behind, whatever path produced it (AskResult.unsure).
UNSURE_FLAGS = frozenset({"image_unsure", "picture_out_of_range_answered_from_image", "reader_failed",
                          "answer_differs_from_reading", "empty_answer"})


@dataclass
class AskResult:
    """What ``ask`` returns: the answer, the rationales with the critic's support, the verdict, the trace."""

    answer: str | None
    rationales: list[dict[str, Any]]
    verdict: str | None
    outcome: str | None
    flags: list[str]
    thread_id: str
    trace: Trace
    state: dict[str, Any] = field(repr=False)
    pending_review: dict[str, Any] | None = None  # the human-review question, while paused
    document: dict[str, Any] | None = None  # a PDF's run: its digest, pages, the page answered and why

    @property
    def page(self) -> int | None:
        """The page of a PDF that the answer comes from (1-based); None for an image."""
        return (self.state.get("image") or {}).get("document", {}).get("page")

    @property
    def unsure(self) -> bool:
        """The project cannot stand behind the answer (any of :data:`UNSURE_FLAGS`): the image could
        not tell whether the rationale's claims hold; the picture is beyond the model's range and
        nothing accepted speaks for the answer; a reader failed; the answer is not what the readers
        read; or the model wrote no answer."""
        return any(flag in UNSURE_FLAGS for flag in self.flags)

    def summary(self) -> dict[str, Any]:
        """The short form a calling agent or a person reads first: answer, whether the image was
        unsure, rationales with the critic's support, verdict, outcome, flags and how much the
        answer leaned on the rationales."""
        summary = {
            "answer": self.answer, "unsure": self.unsure, "verdict": self.verdict, "outcome": self.outcome,
            "flags": self.flags,
            "rationales": self.rationales,
            "rationale_dependence": (self.state.get("answer") or {}).get("rationale_dependence"),
        }
        readings = (self.state.get("answer") or {}).get("readings")
        if readings:  # what the readers read for the question, which the answer is held to
            summary["readings"] = readings
        if self.page is not None:
            summary["page"] = self.page
        if self.document is not None:
            summary["document"] = self.document
        return summary

    def to_dict(self) -> dict[str, Any]:
        """Everything: the summary's fields, the thread, a pending review, the answer's token record,
        every round's history and the trace."""
        return {
            "answer": self.answer, "unsure": self.unsure, "rationales": self.rationales, "verdict": self.verdict,
            "outcome": self.outcome,
            "flags": self.flags, "thread_id": self.thread_id, "pending_review": self.pending_review,
            "answer_detail": self.state.get("answer"), "history": self.state.get("history", []),
            "page": self.page, "document": self.document,
            "trace": self.trace.to_file().model_dump(mode="json"),
        }


def ask(
    image: ImageInput,
    question: str,
    context: RunContext | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    thread_id: str | None = None,
    resume: Any = None,
    trace_path: str | os.PathLike[str] | None = None,
    sign_key: str | bytes | None = None,
    on_token: Callable[[dict], None] | None = None,
    page: int | None = None,
    on_page: Callable[[int, int, AskResult], None] | None = None,
) -> AskResult:
    """Answer ``question`` about ``image`` through the graph (reason -> critique -> RED answer).

    Args:
        image: path, bytes or PIL image; or a document (a PDF or multi-page TIFF: path or bytes), read a page at a time.
        question: the question.
        context: models and settings (:class:`RunContext`); None builds one with
            :func:`make_context` (the embedded model as answerer, reasoner and critic).
        checkpoint: SQLite file, ``"memory"``, a ``postgresql://`` URL, or None for the default file.
        thread_id: names the run; an unfinished run of this id resumes where it stopped, a finished
            one is returned as it was.
        resume: the person's answer when the run paused for human review.
        trace_path: where to write the trace (JSON); written also when the run fails.
        sign_key: HMAC key to sign the finished trace (default: ``$REDGRAPH_TRACE_KEY`` if set).
        on_token: receives each streamed answer token (a dict with ``token`` and attribution).
        page: of a PDF, the page to ask (1-based). None asks every page (up to
            :data:`MAX_ASKED_PAGES`) and answers from the page the critic supports best
            (:func:`choose_page`); the result's ``page`` and ``document`` say which and why, and the
            trace's last event records every page's answer.
        on_page: called after each page of a document is asked, with (page, pages, its result).
    """
    from redgraph.errors import check_question

    check_question(question)
    if context is None:
        context = make_context()
    elif not isinstance(context, RunContext):
        raise ConfigError(f"context must be a RunContext (see make_context), got {type(context).__name__}")
    if hasattr(context.answerer, "check_text_length"):
        context.answerer.check_text_length(question, "question")  # before any model work
    document = open_document_of(image)
    if document is None and page is not None:
        raise InputError(f"page={page!r} is for documents (PDF, TIFF); this input is an image")
    saver = open_checkpointer(checkpoint)
    try:
        graph = _compiled_graph().copy(update={"checkpointer": saver})
        if document is not None:
            with document:
                return _ask_document(graph, document, page, question, context, thread_id=thread_id, resume=resume,
                                     trace_path=trace_path, sign_key=sign_key, on_token=on_token, on_page=on_page)
        return _run(graph, image, question, context, thread_id=thread_id, resume=resume, trace_path=trace_path,
                    sign_key=sign_key, on_token=on_token)
    finally:
        close_checkpointer(saver)


def run_graph(
    lvlm,
    image: str | bytes,
    question: str,
    *,
    rationale: str | None = None,
    trace_path: str | os.PathLike[str] | None = None,
    page: int | None = None,
    **settings: Any,
):
    """One graph run with the local model as answerer, critic and (unless ``rationale`` is given)
    reasoner, checkpointed in memory; returns the :class:`AskResult`. ``page``: of a PDF (see :func:`ask`).

    A given ``rationale`` is still checked by the critic: it stands in for the reasoner's output.
    """
    from redgraph.agents.reasoner import LocalReasoner
    from redgraph.agents.scripted import ScriptedReasoner

    if rationale is not None and (not isinstance(rationale, str) or not rationale.strip()):
        raise InputError(f"rationale must be a non-empty text or left out, got {rationale!r:.80}")
    reasoner = ScriptedReasoner([rationale], name="caller") if rationale is not None else LocalReasoner(lvlm)
    context = make_context(lvlm, reasoner=reasoner, **settings)
    return ask(image, question, context, checkpoint="memory", trace_path=trace_path, page=page)


@functools.cache
def _compiled_graph():
    """The graph compiled once; each run gets a shallow copy holding its own checkpointer."""
    from redgraph.graphs.graph import build_graph

    return build_graph()


def _run(graph, image, question, context, *, thread_id, resume, trace_path, sign_key, on_token,
         loaded: tuple[dict, Any] | None = None, close: bool = True) -> AskResult:
    """One run of the graph. ``loaded``: the image's reference and pixels, when the caller made them
    (a PDF's page); ``close=False`` leaves the trace unsigned and unwritten, for the caller to add to."""
    from langgraph.types import Command

    named = thread_id is not None
    thread_id = thread_id or uuid.uuid4().hex
    config = {"configurable": {"thread_id": thread_id}}
    # The image is loaded and limited here, once; the nodes take these pixels (a run resumed in
    # another process, or through a server, has none and reads the file, checking its sha256).
    reference, picture = loaded if loaded is not None else _load_and_refer(image)
    context = dataclasses.replace(context, images={reference["sha256"]: picture})
    existing = graph.get_state(config) if named else None  # a thread id made here holds nothing yet
    finished = existing is not None and bool(existing.values.get("answer"))
    if resume is not None:
        if existing is None or not existing.interrupts:
            raise InputError(f"run {thread_id!r} is not waiting for review; nothing to resume")
        from redgraph.graphs.nodes import human_choice

        # Checked here first: a bad value sent into the graph would stay recorded as the reply.
        human_choice(resume, existing.interrupts[0].value["rationales"])
        payload: Any = Command(resume=resume)
    elif existing is not None and existing.values:
        stored = existing.values
        if stored.get("question") != question or stored.get("image", {}).get("sha256") != reference["sha256"]:
            raise InputError(f"thread {thread_id!r} holds a run for another question or image "
                             f"({stored.get('question')!r}); use a new thread id")
        payload = None  # a known run: continue after its last finished node (or nothing, if finished)
    else:
        payload = {"trace_id": thread_id, "question": question, "image": reference}
    try:
        if not finished:
            # "sync": each step's checkpoint is on disk before the next starts, so a killed process
            # loses at most the node it was running. Tokens are streamed only to a caller who takes
            # them: with a "custom" stream LangGraph runs every node in a worker thread beside a
            # waiter thread, without one it runs a step's single node in this thread.
            modes = ["custom", "updates"] if on_token is not None else ["updates"]
            with one_step_at_a_time(on_token) as limits:
                for mode, chunk in graph.stream(payload, {**config, **limits}, context=context, stream_mode=modes,
                                                durability="sync"):
                    if mode == "custom":
                        on_token(chunk)
    except Exception as exc:
        state = graph.get_state(config).values
        _write_trace(_failed_trace(thread_id, state, exc), trace_path)
        if isinstance(exc, RedgraphError):
            raise
        raise RedgraphError(f"the run {thread_id!r} failed: {type(exc).__name__}: {exc}") from exc
    snapshot = graph.get_state(config)
    state = dict(snapshot.values)
    trace = Trace.from_events(thread_id, state.get("trace", []))
    if close:
        _close_trace(trace, trace_path, sign_key, finished=not snapshot.next)
    reviews = state.get("reviews", [])
    rationales = [{"text": r["text"], "style": r.get("style"), "model": r.get("model"),
                   "support": reviews[i]["support"] if i < len(reviews) else None,
                   "accepted": reviews[i]["accepted"] if i < len(reviews) else None,
                   "status": reviews[i].get("status") if i < len(reviews) else None}
                  for i, r in enumerate(state.get("rationales", []))]
    return AskResult(
        answer=(state.get("answer") or {}).get("text"), rationales=rationales, verdict=state.get("verdict"),
        outcome=state.get("outcome"), flags=list(state.get("flags", [])), thread_id=thread_id, trace=trace,
        state=state, pending_review=snapshot.interrupts[0].value if snapshot.interrupts else None,
    )


def _close_trace(trace: Trace, trace_path, sign_key, *, finished: bool) -> None:
    """Sign a finished run's trace (with ``sign_key``, else ``$REDGRAPH_TRACE_KEY`` if set) and write it."""
    key = sign_key if sign_key is not None else os.environ.get(KEY_ENV)
    if key and finished:
        trace.sign(key)
    _write_trace(trace, trace_path)


MAX_ASKED_PAGES = 20  # with no page named, a document of more pages is refused (name the page)


def open_document_of(image: ImageInput):
    """The document (PDF or TIFF) behind ``image`` (a path or bytes), opened; None for an image. A
    file's first KiB decides, so an image file is not read twice."""
    from redgraph.models.documents import is_document, open_document
    from redgraph.models.images import DEFAULT_MAX_FILE_BYTES

    if isinstance(image, (bytes, bytearray)):
        return open_document(bytes(image), "the given document") if is_document(image) else None
    if isinstance(image, (str, os.PathLike)):
        from redgraph.data.files import check_regular_file, read_regular_file
        from redgraph.errors import ImageError

        location = os.fspath(image)
        check_regular_file(location, max_bytes=DEFAULT_MAX_FILE_BYTES, what="image file", error=ImageError)
        try:
            with open(location, "rb") as file:
                head = file.read(1024)
        except OSError as exc:
            raise ImageError(f"image file {location[:200]!r} cannot be read ({exc.strerror}); check the path") from exc
        if not is_document(head):
            return None
        data = read_regular_file(location, max_bytes=DEFAULT_MAX_FILE_BYTES, what="document", error=ImageError)
        return open_document(data, f"document {location[:200]!r}")
    return None


def load_document_page(document, page: int, context: RunContext) -> tuple[dict, Any]:
    """A document's page rendered for the answerer, saved by content (a resumed run reads it back), and its
    reference: pixel digest, path, the document's file digest, and the page."""
    from redgraph.models.documents import READING_PIXELS, page_reference, render_page, target_pixels

    from redgraph.agents.reading import picture_out_of_range

    target = target_pixels(context.answerer)
    picture = render_page(document, page, target=target)
    # A page the model's eyes cannot read goes to the readers, and OCR needs the pixels: rendered
    # again at their size. A page of the model's own kind stays as the model reads it.
    if (getattr(context.reasoner, "readers", "never") != "never" and target < READING_PIXELS
            and picture_out_of_range(context.answerer, picture)):
        picture = render_page(document, page, target=READING_PIXELS)
    reference, picture = _load_and_refer(picture)
    reference["file_sha256"] = document.sha256
    reference["document"] = page_reference(document, page)
    return reference, picture


def _ask_document(graph, document, page, question, context, *, thread_id, resume, trace_path, sign_key, on_token,
                  on_page) -> AskResult:
    if page is not None or document.pages == 1:
        page = document.check_page(page if page is not None else 1)
        return _run(graph, None, question, context, thread_id=thread_id, resume=resume, trace_path=trace_path,
                    sign_key=sign_key, on_token=on_token, loaded=load_document_page(document, page, context))
    if document.pages > MAX_ASKED_PAGES:
        raise InputError(f"the document has {document.pages} pages; with no page named redgraph asks at most "
                         f"{MAX_ASKED_PAGES}: name the page (page=N, --page N)")
    if resume is not None or context.on_exhausted == "human_review" or context.on_unsure == "human_review":
        raise InputError("human review pauses one run on one page: name the page of the document (page=N, --page N)")
    thread_id = thread_id or uuid.uuid4().hex
    results = []
    for number in range(1, document.pages + 1):
        result = _run(graph, None, question, context, thread_id=f"{thread_id}-page-{number}", resume=None,
                      trace_path=None, sign_key=None, on_token=None, loaded=load_document_page(document, number, context),
                      close=False)
        results.append(result)
        if on_page is not None:
            on_page(number, document.pages, result)
    chosen, basis, table = choose_page(results)
    result = results[chosen - 1]
    result.document = {"sha256": document.sha256, "pages": document.pages, "chosen_page": chosen, "basis": basis,
                       "asked": table}
    result.trace.append("document", "page_choice", inputs={"question": question, "document": document.sha256},
                        outputs=result.document)
    _close_trace(result.trace, trace_path, sign_key, finished=True)
    if on_token is not None:  # the chosen page's answer, as a single run would have streamed it
        for token in (result.state.get("answer") or {}).get("tokens", []):
            if not token.get("special"):
                on_token({"token": token["text"], "changed_by_rationale": token.get("changed_by_rationale"),
                          "rationale_shift": token.get("rationale_shift")})
    return result


def choose_page(results: list[AskResult]) -> tuple[int, str, list[dict[str, Any]]]:
    """The page whose run answers, from each page's run (page 1 first): the page with an accepted
    rationale of the highest critic support; when no page has one, the page whose answer the image
    branch gave with the highest probability (its tokens' mean). Returns (page, basis, each page's
    answer, outcome, support and confidence)."""
    import math

    table = []
    for number, result in enumerate(results, start=1):
        supports = [r["support"] for r in result.rationales if r.get("accepted") and r.get("support") is not None]
        tokens = [t for t in (result.state.get("answer") or {}).get("tokens", []) if not t.get("special")]
        confidence = math.exp(sum(t["image_logprob"] for t in tokens) / len(tokens)) if tokens else 0.0
        table.append({"page": number, "answer": result.answer, "outcome": result.outcome,
                      "support": max(supports) if supports else None, "confidence": round(confidence, 6),
                      "thread_id": result.thread_id, "last_hash": result.trace.last_hash})
    supported = [row for row in table if row["support"] is not None]
    if supported:
        best = max(supported, key=lambda row: (row["support"], row["confidence"], -row["page"]))
        return best["page"], "the critic's support of an accepted rationale", table
    best = max(table, key=lambda row: (row["confidence"], -row["page"]))
    return best["page"], "the image's confidence in its answer (no page had an accepted rationale)", table


def _failed_trace(thread_id: str, state: dict, exc: Exception) -> Trace:
    events = list(state.get("trace", []))
    events.append(chain_event(thread_id, events[-1]["hash"] if events else None, len(events), "run", "error",
                              inputs={}, outputs={"error": type(exc).__name__, "message": str(exc)}))
    return Trace.from_events(thread_id, events)


def _write_trace(trace: Trace, path) -> None:
    if path is not None:
        trace.save(path)
