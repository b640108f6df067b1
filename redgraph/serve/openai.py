"""Translation between OpenAI's chat-completions format and RED: a request into a RED request and
its settings, a result into a completion, and streamed tokens into server-sent chunks."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from redgraph.decoding.config import REDConfig
from redgraph.decoding.decoder import REDRequest, REDResult, TokenAttribution
from redgraph.errors import InputError, check_question
from redgraph.models.images import load_image, resolve_image
from redgraph.serve.batcher import RequestCancelled
from redgraph.serve.errors import APIError, error_for
from redgraph.serve.schemas import ChatRequest, chat_question, stop_strings
from redgraph.serve.settings import ServerSettings

log = logging.getLogger("redgraph.serve")


async def read_image(reference: str, settings: ServerSettings, *, page: int | None = None, lvlm=None,
                     whole_document: bool = False):
    """``(bytes, picture)`` of a data URL (or, when allowed, an http(s) URL), within the size limits;
    off the event loop, since decoding a large image takes a while. A PDF (``application/pdf``) gives
    its page ``page`` rendered for ``lvlm``; with ``whole_document`` (a graph run, which can ask every
    page) the document is only checked, and the picture is None."""
    from redgraph.models.documents import is_document, open_document, page_image

    data = await run_in_threadpool(resolve_image, reference, allow_paths=False, allow_documents=True,
                                   allow_remote=settings.allow_remote_images, max_bytes=settings.max_image_bytes)
    if is_document(data):
        if whole_document:
            def check() -> None:
                with open_document(data) as document:
                    if page is not None:
                        document.check_page(page)
            await run_in_threadpool(check)
            return data, None
        return data, await run_in_threadpool(page_image, data, page, lvlm)
    if page is not None:
        raise InputError(f"page={page} is for documents (PDF, TIFF); this image is not one")
    return data, await run_in_threadpool(load_image, data, max_pixels=settings.max_image_pixels)


async def red_request(body: ChatRequest, settings: ServerSettings, lvlm=None) -> tuple[REDRequest, REDConfig]:
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
    _, picture = await read_image(url, settings, page=body.page, lvlm=lvlm)
    sample = bool(body.temperature)  # absent or 0: greedy, so answers are reproducible by default
    config = REDConfig(
        rationale_weight=body.rationale_weight if body.rationale_weight is not None else 0.5,
        rationale_weights=tuple(body.rationale_weights) if body.rationale_weights is not None else None,
        max_new_tokens=max_tokens, do_sample=sample, temperature=body.temperature if sample else 1.0,
        top_p=body.top_p if sample else None, seed=body.seed, stop_strings=stop_strings(body.stop),
    )
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    if body.logprobs and body.top_logprobs:
        config = dataclasses.replace(config, top_logprobs=body.top_logprobs)
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


def _logprob_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def token_logprobs(tokens: list[TokenAttribution], tokenizer) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content`` for ``tokens``: each token's log-probability under RED (the
    combined distribution it was chosen from) and RED's most likely tokens at that step. The
    image-branch and rationale-branch values of each token are in the ``redgraph`` field."""
    return [
        {**_logprob_entry(token.text, token.logprob),
         "top_logprobs": [_logprob_entry(tokenizer.decode([token_id]), value)
                          for token_id, value in token.top_logprobs]}
        for token in tokens
    ]


def _answer_tokens(result: REDResult) -> list[TokenAttribution]:
    """The tokens that make the answer: without the end-of-sequence token that closed it."""
    return result.tokens[:-1] if result.finish_reason == "eos" else result.tokens


def completion(result: REDResult, completion_id: str, created: int, model: str, red: bool, *,
               tokenizer=None, logprobs: bool = False) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": _finish(result),
                     "logprobs": {"content": token_logprobs(_answer_tokens(result), tokenizer), "refusal": None}
                     if logprobs else None}],
        "usage": _usage(result),
        "redgraph": _attribution(result, red),
    }


async def stream(job, tokenizer, completion_id: str, created: int, model: str, stops: tuple[str, ...],
                  include_usage: bool, logprobs: bool = False) -> AsyncIterator[str]:
    """Server-sent chunks of ``job``'s answer. With ``logprobs``, each content chunk carries the
    log-probabilities of the tokens that arrived since the last one (the end token's are left out)."""
    pending: list[TokenAttribution] = []

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}
        return f"data: {json.dumps(body)}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None, *, tokens: list[TokenAttribution] | None = None,
              **extra: Any) -> str:
        content = None
        if logprobs and tokens is not None:
            content = {"content": token_logprobs(tokens, tokenizer), "refusal": None}
        return event([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": content}], **extra)

    finished = False
    try:
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
                pending.append(value)
                produced = tokenizer.decode(ids, skip_special_tokens=True)
                safe = min(len(produced) - hold, len(produced.rstrip("\ufffd")),
                           *(found for found in (produced.find(stop) for stop in stops) if found >= 0))
                if safe > sent:
                    yield chunk({"content": produced[sent:safe]}, tokens=pending)
                    pending = []
                    sent = safe
                continue
            if kind == "error":
                finished = True
                _, body = error_for(value)
                yield f"data: {json.dumps(body)}\n\n"
                return
            finished = True
            result: REDResult = value
            if result.finish_reason == "cancelled":
                _, body = error_for(RequestCancelled("the request ran past this server's deadline (or its client "
                                                     "went away); ask for fewer tokens, or retry"))
                yield f"data: {json.dumps(body)}\n\n"
                return
            if result.text[:sent] != produced[:sent]:  # cannot happen unless the decoder re-tokenises
                log.warning("streamed text diverged from the final text of %s", completion_id)
            rest = pending[:len(pending) - (len(result.tokens) - len(_answer_tokens(result)))]
            if len(result.text) > sent or rest:
                yield chunk({"content": result.text[sent:]}, tokens=rest)
            yield chunk({}, _finish(result), redgraph=_attribution(result, bool(job.request.rationales)))
            if include_usage:
                yield event([], usage=_usage(result))
            yield "data: [DONE]\n\n"
            return
    finally:
        if not finished:  # the client went away mid-stream (or the stream failed): stop decoding it
            job.cancel()
