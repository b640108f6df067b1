"""The HTTP server: OpenAI-compatible chat completions with RED, and the whole graph.

Routes:
    ``POST /v1/chat/completions``: OpenAI's format; ``rationale``/``rationales`` in the body turn RED on.
    ``GET /v1/models``, ``GET /health``.
    ``POST /v1/redgraph/ask``: one graph run (reasoner, critic, RED answerer) with its trace.

Example:
    >>> app = create_app(load_lvlm(None), ServerSettings(api_key="secret"))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from redgraph.decoding.config import REDConfig
from redgraph.decoding.decoder import REDRequest, REDResult
from redgraph.errors import ConfigError, InputError, RedgraphError, check_whole_number
from redgraph.graphs.run import run_graph
from redgraph.models.images import load_image, resolve_image
from redgraph.models.prompts import check_question
from redgraph.serve.batcher import DecodeBatcher, ServerBusy
from redgraph.serve.schemas import AskRequest, ChatRequest, chat_question, error_body, stop_strings

log = logging.getLogger("redgraph.serve")
API_KEY_ENV = "REDGRAPH_API_KEY"


@dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of one server.

    Attributes:
        model_name: the name clients send as ``model`` (default: the loaded model's name).
        api_key: when set, every ``/v1`` request must carry ``Authorization: Bearer <key>``.
        max_body_bytes: largest request body (413 above it).
        max_image_bytes, max_image_pixels: largest image, encoded and decoded.
        allow_remote_images: fetch ``http(s)://`` image URLs (refused by default).
        max_batch: most chat requests decoded together.
        max_pending: most chat requests waiting or decoding; more get 503.
        max_graph_runs: most concurrent graph runs; more get 503.
        default_max_tokens, max_tokens_limit: answer length when unset, and the largest allowed.
    """

    model_name: str | None = None
    api_key: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_image_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    allow_remote_images: bool = False
    max_batch: int = 8
    max_pending: int = 32
    max_graph_runs: int = 2
    default_max_tokens: int = 64
    max_tokens_limit: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_image_bytes", "max_image_pixels", "max_batch", "max_pending",
                     "max_graph_runs", "default_max_tokens", "max_tokens_limit"):
            check_whole_number(name, getattr(self, name))
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; pass a real key or leave it unset")


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without a key.

    Raises:
        ConfigError: ``host`` is not a loopback address and no API key is set.
    """
    import ipaddress

    if api_key:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False  # a host name: it may resolve to any interface
    if not loopback:
        raise ConfigError(
            f"refusing to bind {host!r} without an API key: anyone who can reach it could use the model; "
            f"pass --api-key or set {API_KEY_ENV}, or bind 127.0.0.1"
        )


class APIError(Exception):
    """An error answered as ``status`` with an OpenAI-shaped body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *,
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.code, self.headers = status, kind, param, code, headers

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(str(self), self.kind, param=self.param, code=self.code),
                            status_code=self.status, headers=self.headers)


class BodyLimit:
    """Answers 413 (in OpenAI's error shape) to bodies above ``limit`` bytes, declared or chunked."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    def _error(self) -> APIError:
        return APIError(413, f"the request body is larger than this server's limit of {self.limit} bytes; "
                             "send a smaller image", code="body_too_large")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._error().response()(scope, receive, send)
        # Read the body here (up to the limit), then hand it on whole: a chunked upload has no
        # declared length, and an error raised mid-read would reach the client as a parse error.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._error().response()(scope, receive, send)
            if not message.get("more_body", False):
                break
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


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
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.state.settings = settings
    app.state.model_name = model_name

    async def authorise(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "incorrect API key", code="invalid_api_key")

    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        batcher = getattr(app.state, "batcher", None)
        return {"status": "ok", "model": model_name, "pending": batcher.pending if batcher else 0,
                "batches": batcher.batches if batcher else 0,
                "batched_requests": batcher.batched_requests if batcher else 0}

    @app.get("/v1/models", dependencies=[Depends(authorise)])
    async def models() -> dict[str, Any]:
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "redgraph"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorise)])
    async def chat_completions(body: ChatRequest, request: Request):
        if body.model != model_name:
            raise APIError(404, f"model {body.model!r} is not served here; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        red_request, config = await _red_request(body, settings)
        job = request.app.state.batcher.submit(red_request, config)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _stream(job, lvlm.tokenizer, completion_id, created, model_name, config.stop_strings, include_usage),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
            )
        result = await job.result()
        return _completion(result, completion_id, created, model_name, bool(red_request.rationales))

    @app.post("/v1/redgraph/ask", dependencies=[Depends(authorise)])
    async def redgraph_ask(body: AskRequest) -> dict[str, Any]:
        check_question(body.question)
        image, _ = await _read_image(body.image, settings)
        if not graph_slots.acquire(blocking=False):
            raise ServerBusy(f"{settings.max_graph_runs} graph runs are already in progress; retry shortly")
        try:
            return await run_in_threadpool(lambda: run_graph(
                lvlm, image, body.question, rationale=body.rationale,
                rationale_weight=body.rationale_weight, rationales=body.rationales, rounds=body.rounds,
                on_exhausted=body.on_exhausted, max_new_tokens=body.max_new_tokens,
            ).to_dict())
        finally:
            graph_slots.release()

    return app


async def _read_image(reference: str, settings: ServerSettings):
    """``(bytes, picture)`` of a data URL (or, when allowed, an http(s) URL), within the size limits;
    off the event loop, since decoding a large image takes a while."""
    data = await run_in_threadpool(resolve_image, reference, allow_paths=False,
                                   allow_remote=settings.allow_remote_images, max_bytes=settings.max_image_bytes)
    return data, await run_in_threadpool(load_image, data, max_pixels=settings.max_image_pixels)


async def _red_request(body: ChatRequest, settings: ServerSettings) -> tuple[REDRequest, REDConfig]:
    if body.n != 1:
        raise APIError(400, f"n={body.n} is not supported; ask for one choice (n=1)", param="n")
    if body.rationale is not None and body.rationales is not None:
        raise APIError(400, "send either 'rationale' or 'rationales', not both", param="rationales")
    rationales = [body.rationale] if body.rationale is not None else list(body.rationales or [])
    if (body.rationale_weight is not None or body.rationale_weights is not None) and not rationales:
        raise APIError(400, "rationale_weight was given without a rationale; add 'rationale' or 'rationales'",
                       param="rationale_weight")
    max_tokens = body.max_completion_tokens or body.max_tokens or settings.default_max_tokens
    if max_tokens > settings.max_tokens_limit:
        raise APIError(400, f"max_tokens={max_tokens} is above this server's limit of {settings.max_tokens_limit}",
                       param="max_tokens")
    question, url = chat_question(body.messages)
    check_question(question)
    _, picture = await _read_image(url, settings)
    sample = bool(body.temperature)  # absent or 0: greedy, so answers are reproducible by default
    config = REDConfig(
        rationale_weight=body.rationale_weight if body.rationale_weight is not None else 0.5,
        rationale_weights=tuple(body.rationale_weights) if body.rationale_weights is not None else None,
        max_new_tokens=max_tokens, do_sample=sample, temperature=body.temperature if sample else 1.0,
        top_p=body.top_p if sample else None, seed=body.seed, stop_strings=stop_strings(body.stop),
    )
    weights = config.rationale_weights
    if weights is not None and len(weights) != len(rationales):
        raise APIError(400, f"rationale_weights has {len(weights)} values for {len(rationales)} rationales; give one per rationale",
                       param="rationale_weights")
    return REDRequest(picture, question, tuple(rationales)), config


def _attribution(result: REDResult, red: bool) -> dict[str, Any]:
    """The ``redgraph`` field of a completion: the RED result's record, less what the choice already says."""
    record = result.to_dict()
    del record["text"], record["finish_reason"]
    return {"mode": "red" if red else "plain", **record}


def _usage(result: REDResult) -> dict[str, int]:
    completion = len(result.token_ids)
    prompt = result.prompt_tokens + sum(result.rationale_prompt_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(result: REDResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _completion(result: REDResult, completion_id: str, created: int, model: str, red: bool) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": _finish(result), "logprobs": None}],
        "usage": _usage(result),
        "redgraph": _attribution(result, red),
    }


async def _stream(job, tokenizer, completion_id: str, created: int, model: str, stops: tuple[str, ...],
                  include_usage: bool) -> AsyncIterator[str]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}
        return f"data: {json.dumps(body)}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return event([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra)

    yield chunk({"role": "assistant", "content": ""})
    # The text so far is decoded from all token ids (a character may span tokens). Held back: an
    # incomplete character at the end, and, with stop strings, what could still begin one.
    hold = max((len(s) for s in stops), default=1) - 1
    ids: list[int] = []
    produced, sent = "", 0
    while True:
        kind, value = await job.events.get()
        if kind == "token":
            ids.append(value.token_id)
            produced = tokenizer.decode(ids, skip_special_tokens=True)
            safe = min(len(produced) - hold, len(produced.rstrip("\ufffd")),
                       *(found for found in (produced.find(stop) for stop in stops) if found >= 0))
            if safe > sent:
                yield chunk({"content": produced[sent:safe]})
                sent = safe
            continue
        if kind == "error":
            _, body = _error_for(value)
            yield f"data: {json.dumps(body)}\n\n"
            return
        result: REDResult = value
        if result.text[:sent] != produced[:sent]:  # cannot happen unless the decoder re-tokenises
            log.warning("streamed text diverged from the final text of %s", completion_id)
        if len(result.text) > sent:
            yield chunk({"content": result.text[sent:]})
        yield chunk({}, _finish(result), redgraph=_attribution(result, bool(job.request.rationales)))
        if include_usage:
            yield event([], usage=_usage(result))
        yield "data: [DONE]\n\n"
        return


def _error_for(exc: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ServerBusy):
        return 503, error_body(str(exc), "server_error", code="server_busy")
    if isinstance(exc, (InputError, ConfigError)):
        return 400, error_body(str(exc))
    if isinstance(exc, RedgraphError):
        return 500, error_body(str(exc), "server_error")
    log.exception("unexpected error", exc_info=exc)
    return 500, error_body(f"internal error: {type(exc).__name__}", "server_error")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return APIError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}").response()
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return APIError(400, f"{where or 'body'}: {first['msg']}{more}", param=where or None).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return APIError(exc.status_code, str(exc.detail), kind, headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(RedgraphError)
    async def redgraph_error(request: Request, exc: RedgraphError) -> JSONResponse:
        status, body = _error_for(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        status, body = _error_for(exc)
        return JSONResponse(body, status_code=status)


__all__ = ["API_KEY_ENV", "APIError", "ServerSettings", "check_bind", "create_app"]
