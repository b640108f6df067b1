"""The HTTP server's routes: OpenAI-compatible chat completions with RED, and the whole graph.

Settings live in :mod:`~redgraph.serve.settings`, the OpenAI translation and streaming in
:mod:`~redgraph.serve.openai`, error mapping in :mod:`~redgraph.serve.errors`.

Routes:
    ``POST /v1/chat/completions``: OpenAI's format; ``rationale``/``rationales`` in the body turn RED on.
    ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``.
    ``POST /v1/redgraph/ask``: one graph run (reasoner, critic, RED answerer) with its trace.

Example:
    >>> app = create_app(load_lvlm(None), ServerSettings(api_key="secret"))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from redgraph.errors import check_question
from redgraph.graphs.run import run_graph
from redgraph.serve.batcher import DecodeBatcher, RequestCancelled, ServerBusy
from redgraph.serve.errors import APIError, BodyLimit, install_error_handlers
from redgraph.serve.openai import completion, read_image, red_request, stream
from redgraph.serve.schemas import AskRequest, ChatRequest
from redgraph.serve.settings import ServerSettings


def create_app(lvlm, settings: ServerSettings = ServerSettings()) -> FastAPI:
    """The FastAPI application serving ``lvlm`` (a loaded :class:`redgraph.models.LVLM`)."""
    model_name = settings.model_name or getattr(lvlm, "name", "redgraph")
    graph_slots = threading.BoundedSemaphore(settings.max_graph_runs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = DecodeBatcher(lvlm, max_batch=settings.max_batch, max_pending=settings.max_pending)
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(title="redgraph", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.state.settings = settings
    app.state.model_name = model_name
    app.state.graph_runs = 0

    async def authorise(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "incorrect API key", code="invalid_api_key")

    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        batcher = getattr(app.state, "batcher", None)
        return {"status": "ok", "model": model_name, "pending": batcher.pending if batcher else 0,
                "graph_runs": app.state.graph_runs,
                "batches": batcher.batches if batcher else 0,
                "batched_requests": batcher.batched_requests if batcher else 0}

    card = {"id": model_name, "object": "model", "created": 0, "owned_by": "redgraph"}

    @app.get("/v1/models", dependencies=[Depends(authorise)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(authorise)])
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise APIError(404, f"model {model_id!r} is not served here; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        return card

    @app.post("/v1/chat/completions", dependencies=[Depends(authorise)])
    async def chat_completions(body: ChatRequest, request: Request):
        if body.model != model_name:
            raise APIError(404, f"model {body.model!r} is not served here; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        decoding, config = await red_request(body, settings, lvlm)
        # Over-long text is refused here, before it takes a place in the decoding queue.
        lvlm.check_text_length(decoding.question, "question")
        for index, rationale in enumerate(decoding.rationales):
            lvlm.check_text_length(rationale, f"rationale {index}")
        job = request.app.state.batcher.submit(decoding, config, timeout_s=settings.request_timeout_s)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                stream(job, lvlm.tokenizer, completion_id, created, model_name, config.stop_strings, include_usage,
                       body.logprobs),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
            )
        result = await _until_done(asyncio.ensure_future(job.result()), request, job.cancel)
        if result.finish_reason == "cancelled":
            raise RequestCancelled(f"the request ran past this server's deadline of {settings.request_timeout_s:g} s "
                                   "(or its client went away); ask for fewer tokens, or retry")
        return completion(result, completion_id, created, model_name, bool(decoding.rationales),
                          tokenizer=lvlm.tokenizer, logprobs=body.logprobs)

    @app.post("/v1/redgraph/ask", dependencies=[Depends(authorise)])
    async def redgraph_ask(body: AskRequest, request: Request) -> dict[str, Any]:
        check_question(body.question)
        lvlm.check_text_length(body.question, "question")
        if body.rationale is not None:
            lvlm.check_text_length(body.rationale, "rationale")
        image, _ = await read_image(body.image, settings, page=body.page, whole_document=True)
        if not graph_slots.acquire(blocking=False):
            raise ServerBusy(f"{settings.max_graph_runs} graph runs are already in progress; retry shortly")
        stop = threading.Event()
        deadline = time.monotonic() + settings.request_timeout_s
        app.state.graph_runs += 1
        try:
            run = asyncio.ensure_future(run_in_threadpool(lambda: run_graph(
                lvlm, image, body.question, rationale=body.rationale,
                rationale_weight=body.rationale_weight, rationales=body.rationales, rounds=body.rounds,
                on_exhausted=body.on_exhausted, on_unsure=body.on_unsure, max_new_tokens=body.max_new_tokens,
                should_stop=lambda: stop.is_set() or time.monotonic() > deadline, page=body.page,
                experts=body.experts,
            ).to_dict()))
            return await _until_done(run, request, stop.set)
        finally:
            app.state.graph_runs -= 1
            graph_slots.release()

    return app


async def _until_done(work: asyncio.Future, request: Request, cancel) -> Any:
    """``work``'s result; when the client disconnects first, ``cancel()`` stops the work at its next
    step, and the (now short) rest is still awaited, so nothing runs on unowned."""
    while True:
        done, _ = await asyncio.wait({work}, timeout=0.25)
        if done:
            return work.result()
        if await request.is_disconnected():
            cancel()


__all__ = ["create_app"]
