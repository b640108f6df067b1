"""``redgraph serve`` over real HTTP: the official ``openai`` client (plain, RED, streaming),
LangChain's ``ChatOpenAI``, the graph endpoint, shared batching, and every bad input."""

from __future__ import annotations

import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")
import uvicorn  # noqa: E402
from openai import APIStatusError, OpenAI  # noqa: E402

from redgraph.decoding import REDConfig, REDDecoder  # noqa: E402
from redgraph.errors import ConfigError  # noqa: E402
from redgraph.models.images import image_data_url  # noqa: E402
from redgraph.serve import DecodeBatcher, ServerBusy, ServerSettings, check_bind, create_app  # noqa: E402
from redgraph.trace import verify_data  # noqa: E402
from tests.conftest import scene, tiny  # noqa: E402

KEY = "test-key"
QUESTION = "What colour is the circle?"
RATIONALE = "The circle on the left is red."


class LiveServer:
    def __init__(self, app) -> None:
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        while not self.server.started:
            self.thread.join(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def live():
    settings = ServerSettings(model_name="tiny", api_key=KEY, max_body_bytes=200_000, max_image_bytes=100_000)
    with LiveServer(create_app(tiny("qwen2_vl"), settings)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def user_message(picture=None, question: str = QUESTION) -> list[dict]:
    url = image_data_url(picture or scene())
    return [{"role": "user", "content": [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": url}}]}]


def local_answer(rationales=(), max_new_tokens: int = 8, **config) -> str:
    decoder = REDDecoder(tiny("qwen2_vl"), REDConfig(max_new_tokens=max_new_tokens, **config))
    return decoder.decode(scene(), QUESTION, list(rationales)).text


def test_plain_completion_equals_the_library(client):
    response = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8)
    assert response.choices[0].message.content == local_answer()
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.usage.completion_tokens >= 1
    assert response.model_extra["redgraph"]["mode"] == "plain"


def test_rationale_field_turns_red_on(client):
    response = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8,
                                              extra_body={"rationale": RATIONALE, "rationale_weight": 2.0})
    extra = response.model_extra["redgraph"]
    assert extra["mode"] == "red" and extra["rationale_lambdas"] == [2.0]
    assert response.choices[0].message.content == local_answer([RATIONALE], rationale_weight=2.0)
    assert len(extra["tokens"]) == response.usage.completion_tokens
    two = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8,
                                         extra_body={"rationales": [RATIONALE, "The square is blue."],
                                                     "rationale_weight": 1.0, "rationale_weights": [3, 1]})
    assert two.model_extra["redgraph"]["rationale_lambdas"] == [0.75, 0.25]


def test_logprobs_come_in_openais_shape_and_are_reds_own(client):
    response = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8, logprobs=True,
                                              top_logprobs=3, extra_body={"rationale": RATIONALE})
    choice = response.choices[0]
    local = REDDecoder(tiny("qwen2_vl"), REDConfig(max_new_tokens=8, top_logprobs=3)).decode(scene(), QUESTION, [RATIONALE])
    answer_tokens = local.tokens[:-1] if local.finish_reason == "eos" else local.tokens
    content = choice.logprobs.content
    assert [entry.token for entry in content] == [token.text for token in answer_tokens]
    assert "".join(entry.token for entry in content) == choice.message.content
    for entry, token in zip(content, answer_tokens):
        assert abs(entry.logprob - token.logprob) < 1e-4 and bytes(entry.bytes) == entry.token.encode()
        assert len(entry.top_logprobs) == 3
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.top_logprobs[0].token == entry.token  # greedy: RED's most likely token is the one chosen
    # each token's image- and rationale-branch values are in the redgraph field, as before
    assert len(response.model_extra["redgraph"]["tokens"][0]["rationale_logprobs"]) == 1
    # the same log-probabilities arrive in the stream, each with the chunk its token completed
    chunks = list(client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8, logprobs=True,
                                                 top_logprobs=3, stream=True, extra_body={"rationale": RATIONALE}))
    streamed = [entry for c in chunks if c.choices and c.choices[0].logprobs for entry in c.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in content]
    # and without logprobs there are none
    plain = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8, logprobs=False)
    assert plain.choices[0].logprobs is None


def test_streaming_gives_the_same_text(client):
    full = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8,
                                          extra_body={"rationale": RATIONALE}).choices[0].message.content
    chunks = list(client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}, extra_body={"rationale": RATIONALE}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_stop_string_is_cut_when_streaming_too(client):
    answer = local_answer(max_new_tokens=8)
    if len(answer) < 3:
        pytest.skip(f"the tiny model's answer {answer!r} is too short to cut")
    stop = answer[2:4]
    expected = local_answer(max_new_tokens=8, stop_strings=(stop,))
    plain = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8, stop=stop)
    streamed = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=8, stop=stop, stream=True)
    assert plain.choices[0].message.content == expected
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_langchain_chat_openai(live):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    content = user_message()[0]["content"]
    model = ChatOpenAI(model="tiny", base_url=live.url + "/v1", api_key=KEY, max_tokens=8, max_retries=0,
                       temperature=0, extra_body={"rationale": RATIONALE})
    reply = model.invoke([HumanMessage(content=content)])
    assert reply.content == local_answer([RATIONALE])
    streamed = "".join(chunk.content for chunk in model.stream([HumanMessage(content=content)]))
    assert streamed == reply.content


def test_models_and_health(client, live):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx.get(live.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_concurrent_requests_share_batches_and_get_their_own_answers(live):
    batcher = live.app.state.batcher
    before = (batcher.batches, batcher.batched_requests)
    # Each request its own image, question and rationale: their rows are prefilled packed together.
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "pink"]
    asks = [(scene(colours[i]), f"{QUESTION} ({i})", f"{RATIONALE} {colours[i]}") for i in range(8)]

    def one(ask) -> dict:
        picture, question, rationale = ask
        body = {"model": "tiny", "messages": user_message(picture, question), "max_tokens": 6, "rationale": rationale}
        response = httpx.post(live.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, asks))
    decoder = REDDecoder(tiny("qwen2_vl"), REDConfig(max_new_tokens=6))
    alone = [decoder.decode(picture, question, [rationale]) for picture, question, rationale in asks]
    assert [r["choices"][0]["message"]["content"] for r in replies] == [a.text for a in alone]
    batches, requests = batcher.batches - before[0], batcher.batched_requests - before[1]
    assert requests == 8 and batches < 8  # at least two requests shared a forward


def test_graph_endpoint_returns_a_verifiable_trace(live):
    body = {"image": image_data_url(scene()), "question": QUESTION, "rationale": RATIONALE, "rounds": 1}
    response = httpx.post(live.url + "/v1/redgraph/ask", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["answer"] is not None and result["verdict"] in ("accept", "revise")
    assert result["rationales"][0]["text"] == RATIONALE and 0 <= result["rationales"][0]["support"] <= 1
    assert verify_data(result["trace"]).ok
    result["trace"]["events"][-1]["outputs"]["text"] = "something else"
    assert not verify_data(result["trace"]).ok


def _post(live, body, *, token: str | None = KEY, path: str = "/v1/chat/completions", raw: bytes | None = None,
          content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(live.url + path, content=data, headers=headers, timeout=60)


def _png_data_url(kind: str = "image/png", payload: bytes | None = None) -> str:
    if payload is None:
        buffer = io.BytesIO()
        scene().save(buffer, format="PNG")
        payload = buffer.getvalue()
    return f"data:{kind};base64," + base64.b64encode(payload).decode()


def _thin_png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (20000, 4), "white").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _with_image(url: str, **extra) -> dict:
    return {"model": "tiny", "max_tokens": 4, **extra, "messages": [{"role": "user", "content": [
        {"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": url}}]}]}


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    scene().save(buffer, format=fmt)
    return buffer.getvalue()


def _garbage_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block PIL reads with warnings and could not write back (it once gave a 500)."""
    picture = scene()
    exif = picture.getexif()
    exif[0x0112] = 3
    exif[0x010F] = "Camera"
    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG", exif=exif)
    data = bytearray(jpeg.getvalue())
    start = data.index(b"Exif")
    for offset, value in ((17, 37), (49, 71)):  # the make tag's type becomes 37 (none), its text garbled
        data[start + offset] = value
    return bytes(data)


BAD_REQUESTS = {
    "malformed JSON": (dict(raw=b'{"model": "tiny", "messages": ['), 400, "not valid JSON"),
    "missing messages": (dict(body={"model": "tiny"}), 400, "messages"),
    "unknown field": (dict(body={**_with_image(_png_data_url()), "temprature": 1}), 400, "temprature"),
    "response_format": (dict(body={**_with_image(_png_data_url()), "response_format": {"type": "json_object"}}), 400,
                        "response_format is not supported by this server: answers are short text"),
    "tools": (dict(body={**_with_image(_png_data_url()), "tools": [{"type": "function", "function": {"name": "f"}}]}),
              400, "give redgraph itself to your agent"),
    "top_logprobs alone": (dict(body={**_with_image(_png_data_url()), "top_logprobs": 2}), 400,
                           "top_logprobs needs logprobs: true"),
    "top_logprobs over 20": (dict(body={**_with_image(_png_data_url()), "logprobs": True, "top_logprobs": 21}), 400,
                             "top_logprobs"),
    "huge body": (dict(body=_with_image("data:image/png;base64," + "A" * 300_000)), 413, ""),
    "image over the limit": (dict(body=_with_image("data:image/png;base64," + "A" * 150_000)), 400, "above the limit"),
    "bad base64": (dict(body=_with_image("data:image/png;base64,@@not-base64@@")), 400, "malformed base64"),
    "not an image": (dict(body=_with_image(_png_data_url(payload=b"hello, not a picture"))), 400,
                     "the given 20 bytes is not a readable image (not a format redgraph reads)"),
    "unsupported type": (dict(body=_with_image(_png_data_url("image/tiff"))), 400, "image/tiff"),
    "remote URL": (dict(body=_with_image("https://example.com/cat.png")), 400, "remote image URLs are refused"),
    "no image": (dict(body={"model": "tiny", "messages": [{"role": "user", "content": QUESTION}]}), 400, "0 images"),
    "earlier turns": (dict(body={**_with_image(_png_data_url()), "messages": _with_image(_png_data_url())["messages"]
                                 + [{"role": "assistant", "content": "red"}]}), 400, "role 'assistant'"),
    "n=2": (dict(body=_with_image(_png_data_url(), n=2)), 400, "n=2"),
    "negative lambda": (dict(body=_with_image(_png_data_url(), rationale="x", rationale_weight=-1)), 400, "rationale_weight"),
    "empty rationale": (dict(body=_with_image(_png_data_url(), rationale="  ")), 400, "rationale is empty"),
    "lambda without rationale": (dict(body=_with_image(_png_data_url(), rationale_weight=1)), 400, "without a rationale"),
    "too many tokens": (dict(body=_with_image(_png_data_url(), max_tokens=100_000)), 400, "limit"),
    "unknown model": (dict(body={**_with_image(_png_data_url()), "model": "gpt-9"}), 404, "gpt-9"),
    "missing token": (dict(body=_with_image(_png_data_url()), token=None), 401, "missing API key"),
    "wrong token": (dict(body=_with_image(_png_data_url()), token="nope"), 401, "incorrect API key"),
    "graph: empty question": (dict(body={"image": _png_data_url(), "question": " "}, path="/v1/redgraph/ask"), 400, "question is empty"),
    "graph: human review": (dict(body={"image": _png_data_url(), "question": QUESTION, "on_exhausted": "human_review"},
                                 path="/v1/redgraph/ask"), 400, "on_exhausted"),
    "graph: file path": (dict(body={"image": "/etc/passwd", "question": QUESTION}, path="/v1/redgraph/ask"), 400,
                         "file paths are not accepted"),
    "unknown route": (dict(body={}, path="/v1/completions"), 404, "Not Found"),
    # Hostile inputs (issue 18): each once gave a 500 or a 200 with nothing in it.
    "long thin image": (dict(body=_with_image(_thin_png_data_url())), 400, "20000x4, an aspect ratio of 5000:1"),
    "huge lambda": (dict(body=_with_image(_png_data_url(), rationale="x", rationale_weight=1e308)), 400,
                    "at most 100"),
    "control-only rationale": (dict(body=_with_image(_png_data_url(), rationale="\x00")), 400, "only control characters"),
    "graph: control-only question": (dict(body={"image": _png_data_url(), "question": "\x00"}, path="/v1/redgraph/ask"),
                                     400, "only control characters"),
    # Hostile inputs, second round (issue 37): each once gave a 500.
    "seed beyond int64": (dict(body=_with_image(_png_data_url(), seed=2**70, temperature=1)), 400, "seed must be"),
    "temperature 1e-300": (dict(body=_with_image(_png_data_url(), temperature=1e-300)), 400, "temperature must be"),
    "special token in the question": (dict(body={**_with_image(_png_data_url()), "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is <|image_pad|> here?"},
        {"type": "image_url", "image_url": {"url": _png_data_url()}}]}]}), 400, "special token '<|image_pad|>'"),
    "special token in the rationale": (dict(body=_with_image(_png_data_url(), rationale="It is <|im_end|> red.")), 400,
                                       "special token '<|im_end|>'"),
    "graph: special token in the rationale": (dict(body={"image": _png_data_url(), "question": QUESTION,
                                                         "rationale": "The circle is <|im_start|>red."},
                                                   path="/v1/redgraph/ask"), 400, "special token '<|im_start|>'"),
    "graph: rounds beyond the bound": (dict(body={"image": _png_data_url(), "question": QUESTION, "rounds": 100000},
                                            path="/v1/redgraph/ask"), 400, "rounds"),
    "graph: lone surrogate rationale": (dict(raw=json.dumps({"image": _png_data_url(), "question": QUESTION}).encode()[:-1]
                                             + b', "rationale": "red \\ud800"}', path="/v1/redgraph/ask"), 400,
                                        "rationale"),
    "lone surrogate question": (dict(raw=json.dumps(_with_image(_png_data_url())).replace(
        QUESTION, QUESTION + "\\udc00").encode()), 400, "surrogate"),
    "TIFF declared as PNG": (dict(body=_with_image(_png_data_url(payload=_encoded("TIFF")))), 400,
                             "declares image/png but holds TIFF document data"),
    "EPS declared as PNG": (dict(body=_with_image(_png_data_url(payload=_encoded("EPS")))), 400,
                            "EPS data, not a format redgraph reads"),
    "JPEG with a garbage EXIF block": (dict(body=_with_image(_png_data_url("image/jpeg", _garbage_exif_jpeg()),
                                                             max_tokens=1)), 200, ""),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_an_openai_shaped_error_and_the_server_keeps_serving(live, client, case):
    kwargs, status, words = BAD_REQUESTS[case]
    response = _post(live, kwargs.get("body"), **{k: v for k, v in kwargs.items() if k != "body"})
    assert response.status_code == status, response.text
    if status != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and words in error["message"]
    assert client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=2).choices


def test_openai_client_raises_with_the_servers_message(client):
    with pytest.raises(APIStatusError) as caught:
        client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=4, n=3)
    assert caught.value.status_code == 400 and "n=3" in caught.value.message


def test_full_queue_answers_503_with_retry_after(live):
    batcher = live.app.state.batcher
    with batcher._condition:
        batcher._running += batcher.max_pending  # as if that many requests were decoding
    try:
        response = _post(live, _with_image(_png_data_url()))
    finally:
        with batcher._condition:
            batcher._running -= batcher.max_pending
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "server_busy"


def test_batcher_refuses_beyond_max_pending_and_groups_by_settings():
    import asyncio

    from redgraph.decoding.decoder import REDRequest

    release = threading.Event()
    calls: list[int] = []

    def decode(config, requests, on_token):
        release.wait(10)
        calls.append(len(requests))
        return [f"answer to {r.question}" for r in requests]

    async def main():
        batcher = DecodeBatcher(None, max_batch=4, max_pending=3, max_wait_s=0, decode=decode)
        first = batcher.submit(REDRequest(scene(), "q0"), REDConfig())
        while batcher._queue:  # the worker took the first request and is blocked on it
            await asyncio.sleep(0.001)
        queued = [batcher.submit(REDRequest(scene(), f"q{i}"), REDConfig(max_new_tokens=4 if i == 1 else 8))
                  for i in (1, 2)]
        with pytest.raises(ServerBusy, match="3 requests"):
            batcher.submit(REDRequest(scene(), "q3"), REDConfig())
        release.set()
        results = [await job.result() for job in [first, *queued]]
        batcher.close()
        return results

    assert asyncio.run(main()) == ["answer to q0", "answer to q1", "answer to q2"]
    assert calls == [1, 1, 1]  # q1 and q2 differ in settings, so they were not decoded together


def test_one_bad_request_does_not_fail_its_batch():
    import asyncio

    from redgraph.decoding.decoder import REDRequest
    from redgraph.errors import InputError

    sizes: list[int] = []

    def decode(config, requests, on_token):
        sizes.append(len(requests))
        if any(r.question == "bad" for r in requests):
            raise InputError("the rationale is too long for this model")
        return [f"answer to {r.question}" for r in requests]

    async def main():
        batcher = DecodeBatcher(None, max_batch=4, max_wait_s=0, decode=decode)
        with batcher._condition:  # the worker cannot take any of them before all three are queued
            jobs = [batcher.submit(REDRequest(scene(), q), REDConfig()) for q in ("good", "bad", "fine")]
        results = []
        for job in jobs:
            try:
                results.append(await job.result())
            except InputError as exc:
                results.append(str(exc))
        batcher.close()
        return results

    assert asyncio.run(main()) == ["answer to good", "the rationale is too long for this model", "answer to fine"]
    assert sizes == [3, 1, 1, 1]  # tried together, then each alone


@pytest.mark.parametrize("host, key, ok", [("127.0.0.1", None, True), ("::1", None, True), ("localhost", None, True),
                                           ("0.0.0.0", None, False), ("example.org", None, False), ("0.0.0.0", "k", True)])
def test_binding_beyond_loopback_needs_a_key(host, key, ok):
    if ok:
        check_bind(host, key)
    else:
        with pytest.raises(ConfigError, match="without an API key"):
            check_bind(host, key)


def test_serve_command_refuses_a_public_bind_without_a_key(monkeypatch):
    from typer.testing import CliRunner

    from redgraph.cli import app

    monkeypatch.delenv("REDGRAPH_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without an API key" in result.output


def test_a_chunked_body_over_the_limit_gets_413(live, client):
    def chunks():
        for _ in range(30):
            yield b" " * 10_000

    response = httpx.post(live.url + "/v1/chat/completions", content=chunks(),
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413 and "limit of 200000 bytes" in response.json()["error"]["message"]
    assert client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=2).choices


def test_remote_images_are_fetched_only_when_allowed(tmp_path):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from redgraph.errors import ImageError
    from redgraph.models.images import resolve_image

    scene().save(tmp_path / "scene.png")
    (tmp_path / "big.png").write_bytes(b"x" * 5000)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    files = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{files.server_address[1]}"
    try:
        with pytest.raises(ImageError, match="remote image URLs are refused"):
            resolve_image(f"{base}/scene.png")
        assert resolve_image(f"{base}/scene.png", allow_remote=True) == (tmp_path / "scene.png").read_bytes()
        with pytest.raises(ImageError, match="larger than the limit of 1000 bytes"):
            resolve_image(f"{base}/big.png", allow_remote=True, max_bytes=1000)
        with pytest.raises(ImageError, match="HTTP 404"):
            resolve_image(f"{base}/missing.png", allow_remote=True)
        with pytest.raises(ImageError, match="scheme that is not supported"):
            resolve_image("ftp://example.com/a.png", allow_remote=True)
    finally:
        files.shutdown()
        files.server_close()


def test_serve_command_starts_a_server_that_needs_the_key_from_the_environment():
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "REDGRAPH_API_KEY": "from-env"}
    server = subprocess.Popen([sys.executable, "-m", "redgraph.cli", "serve", "--port", str(port), "--model-name", "m"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert httpx.get(url + "/v1/models").status_code == 401
        listed = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer from-env"})
        assert [m["id"] for m in listed.json()["data"]] == ["m"]
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()


def test_a_rationale_too_long_for_the_model_is_a_400_before_any_stream_starts(live):
    body = {"model": "tiny", "messages": user_message(), "max_tokens": 4, "rationale": "red " * 4200}
    for extra in ({}, {"stream": True}):
        reply = _post(live, {**body, **extra})
        assert reply.status_code == 400 and "above this model's limit of 2048 tokens" in reply.json()["error"]["message"]
        assert reply.json()["error"]["type"] == "invalid_request_error"


def test_a_stream_that_fails_after_it_started_ends_with_an_openai_shaped_error_event():
    import asyncio
    from types import SimpleNamespace

    from redgraph.errors import InputError
    from redgraph.serve.openai import stream

    async def collect() -> list[str]:
        events: asyncio.Queue = asyncio.Queue()
        await events.put(("error", InputError("the rationale-branch prompt exceeds the model's context")))
        job = SimpleNamespace(events=events, request=SimpleNamespace(rationales=("x",)), cancel=lambda: None)
        return [chunk async for chunk in stream(job, tiny("qwen2_vl").tokenizer, "id", 0, "tiny", (), False)]

    chunks = asyncio.run(collect())
    error = json.loads(chunks[-1].removeprefix("data: "))["error"]
    assert error["type"] == "invalid_request_error" and "exceeds the model's context" in error["message"]


def test_responses_and_chunks_validate_as_the_openai_packages_own_types(live):
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    body = {"model": "tiny", "messages": user_message(), "max_tokens": 6, "logprobs": True, "top_logprobs": 2,
            "rationale": RATIONALE}
    headers = {"Authorization": f"Bearer {KEY}"}
    reply = httpx.post(live.url + "/v1/chat/completions", json=body, headers=headers, timeout=60).json()
    parsed = ChatCompletion.model_validate(reply)
    assert parsed.choices[0].logprobs.content[0].top_logprobs[0].token
    streamed = httpx.post(live.url + "/v1/chat/completions", json={**body, "stream": True,
                          "stream_options": {"include_usage": True}}, headers=headers, timeout=60).text
    events = [line[len("data: "):] for line in streamed.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(event)) for event in events[:-1]]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_a_partial_body_is_answered_408_and_its_connection_closed_within_the_body_timeout():
    import socket
    import time

    settings = ServerSettings(model_name="tiny", api_key=KEY, body_timeout_s=1.0)
    with LiveServer(create_app(tiny("qwen2_vl"), settings)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        held = []
        for _ in range(20):  # many at once: none is held past the timeout
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"mod")
            held.append(connection)
        began = time.monotonic()
        for connection in held:
            answer = b""
            while chunk := connection.recv(65536):  # ends when the server closes the connection
                answer += chunk
            connection.close()
            assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
        assert time.monotonic() - began < 8
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200



# --- neutral values clients send by default, and every documented field (issue 38) ---------------

NEUTRAL_VALUES = {"presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "store": False,
                  "metadata": {"run": "7"}, "service_tier": "auto", "user": "agent-1", "tools": [],
                  "response_format": {"type": "text"}, "modalities": ["text"], "parallel_tool_calls": False,
                  "prompt_cache_key": "k", "safety_identifier": "s", "tool_choice": "none", "functions": []}


def test_neutral_values_are_taken_and_change_nothing(client):
    plain = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=4)
    neutral = client.chat.completions.create(model="tiny", messages=user_message(), max_tokens=4, **{
        k: v for k, v in NEUTRAL_VALUES.items() if k not in ("functions",)}, extra_body={"functions": []})
    assert neutral.choices[0].message.content == plain.choices[0].message.content


def test_chat_openai_with_its_non_default_parameters(live):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=live.url + "/v1", api_key=KEY, model="tiny", max_tokens=4, presence_penalty=0,
                      frequency_penalty=0, logit_bias={}, store=False, max_retries=0)
    reply = chat.invoke([HumanMessage(content=user_message()[0]["content"])])
    assert isinstance(reply.content, str)


def test_models_retrieve(client):
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(APIStatusError) as missing:
        client.models.retrieve("gpt-9")
    assert missing.value.status_code == 404 and "gpt-9" in missing.value.message


def _documented_fields() -> list[str]:
    from openai.types.chat import completion_create_params

    return sorted(completion_create_params.CompletionCreateParamsBase.__annotations__)


ASKING_VALUES = {"presence_penalty": 0.5, "frequency_penalty": -1, "logit_bias": {"1": 5}, "store": True,
                 "metadata": {"a": 1}, "service_tier": "flex", "tools": [{"type": "function", "function": {"name": "f"}}],
                 "response_format": {"type": "json_object"}, "modalities": ["text", "audio"],
                 "parallel_tool_calls": "yes", "prompt_cache_key": 5, "safety_identifier": 5,
                 "tool_choice": "required", "functions": [{"name": "f"}], "function_call": "auto",
                 "audio": {"voice": "alloy", "format": "mp3"}, "prediction": {"type": "content", "content": "x"},
                 "reasoning_effort": "high", "verbosity": "high", "web_search_options": {}, "moderation": {},
                 "prompt_cache_options": {}, "prompt_cache_retention": "24h"}
HONOURED = {"messages", "model", "max_tokens", "max_completion_tokens", "n", "seed", "stop", "stream_options",
            "temperature", "top_p", "logprobs", "top_logprobs", "user"}


@pytest.mark.parametrize("field", _documented_fields())
def test_every_documented_request_field_is_honoured_or_refused_by_name(live, field):
    if field in HONOURED:
        return  # exercised by the tests above (the real client sends each)
    assert field in ASKING_VALUES, f"a new OpenAI field {field!r}: decide whether it is honoured or refused"
    body = {**_with_image(_png_data_url()), field: ASKING_VALUES[field]}
    reply = _post(live, body)
    assert reply.status_code == 400, reply.text
    assert field in reply.json()["error"]["message"] and reply.json()["error"]["param"] == field
    if field in NEUTRAL_VALUES:
        assert _post(live, {**_with_image(_png_data_url()), field: NEUTRAL_VALUES[field]}).status_code == 200
