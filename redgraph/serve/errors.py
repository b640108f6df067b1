"""Every failure answered in OpenAI's error shape: the API error, the body-size limit, and how redgraph's
errors and unexpected ones map onto HTTP statuses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from redgraph.errors import ConfigError, InputError, RedgraphError
from redgraph.serve.batcher import RequestCancelled, ServerBusy
from redgraph.serve.schemas import error_body

log = logging.getLogger("redgraph.serve")

# OpenAI request fields this server does not take, and what to do instead.
_TOOLS = ("redgraph answers one question about one image; give redgraph itself to your agent as a tool "
          "(redgraph.tools.make_ask_image_tool, or the MCP server `redgraph mcp`)")
UNSUPPORTED = {
    "response_format": "answers are short text decoded with RED; ask for the answer in words and parse it, or send "
                       "the rationale in the 'rationale' field to steer it",
    "tools": _TOOLS, "tool_choice": _TOOLS, "functions": _TOOLS, "function_call": _TOOLS, "parallel_tool_calls": _TOOLS,
    "presence_penalty": "RED's scores are the model's own log-probabilities, which penalties would change; send 0 or "
                        "leave it out",
    "frequency_penalty": "RED's scores are the model's own log-probabilities, which penalties would change; send 0 or "
                         "leave it out",
    "logit_bias": "RED's scores are the model's own log-probabilities; send {} or leave it out",
    "store": "this server stores no completion; send false or leave it out",
    "modalities": "answers are text only; send [\"text\"] or leave it out",
    "service_tier": "this server has one tier; send \"auto\" or \"default\", or leave it out",
    "metadata": "metadata must be an object of strings (it is not stored)",
    "audio": "answers are text only", "prediction": "predicted outputs are not used by RED decoding",
    "reasoning_effort": "the model is not a reasoning model; give a rationale in the 'rationale' field instead",
    "verbosity": "answers are as long as max_tokens allows", "web_search_options": "this server does not search the web",
    "moderation": "this server does not moderate", "prompt_cache_options": "prompts are not cached across requests",
    "prompt_cache_retention": "prompts are not cached across requests",
}


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
    """Answers 413 (in OpenAI's error shape) to bodies above ``limit`` bytes, declared or chunked,
    and 408 to a body that has not fully arrived ``timeout_s`` seconds after its headers (a slow or
    partial upload), closing the connection: no client holds a connection and up to ``limit`` bytes
    of memory longer than that."""

    def __init__(self, app, limit: int, timeout_s: float = 30.0) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

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
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    body += message.get("body", b"")
                    if len(body) > self.limit:
                        return await self._error().response()(scope, receive, send)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            late = APIError(408, f"the request body did not arrive within {self.timeout_s:g} s ({len(body)} bytes "
                                 "came); send the whole body at once", code="body_timeout",
                            headers={"connection": "close"})
            return await late.response()(scope, receive, send)
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def error_for(exc: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ServerBusy):
        return 503, error_body(str(exc), "server_error", code="server_busy")
    if isinstance(exc, RequestCancelled):
        return 504, error_body(str(exc), "server_error", code="timeout")
    if isinstance(exc, (InputError, ConfigError)):
        return 400, error_body(str(exc))
    if isinstance(exc, RedgraphError):
        return 500, error_body(str(exc), "server_error")
    log.exception("unexpected error", exc_info=exc)
    return 500, error_body(f"internal error: {type(exc).__name__}", "server_error")


def install_error_handlers(app: FastAPI) -> None:
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
        if first.get("type") == "extra_forbidden" and where in UNSUPPORTED:
            return APIError(400, f"{where} is not supported by this server: {UNSUPPORTED[where]}", param=where).response()
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return APIError(400, f"{where or 'body'}: {first['msg']}{more}", param=where or None).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return APIError(exc.status_code, str(exc.detail), kind, headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(RedgraphError)
    async def redgraph_error(request: Request, exc: RedgraphError) -> JSONResponse:
        status, body = error_for(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_for(exc)
        return JSONResponse(body, status_code=status)
