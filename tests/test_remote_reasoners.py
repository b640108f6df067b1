"""The OpenAI reasoner over real HTTP against a local Chat Completions server that answers with a
local model, and the LangChain reasoner with a fake chat model."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from redgraph.agents.remote import LangChainReasoner, OpenAIReasoner
from redgraph.errors import ConfigError, RemoteModelError
from redgraph.decoding.generate import generate_text
from redgraph.models.prompts import render
from tests.conftest import scene, tiny


class ChatCompletions(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: model "tiny" answers with a local LLaVA; "broken" fails; "slow" stalls."""

    requests: list[dict] = []
    calls = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        type(self).calls += 1
        if body["model"] == "slow":
            time.sleep(1.0)
            return self._send(504, {"error": {"message": "too late", "type": "timeout"}})
        if body["model"] == "broken":
            return self._send(500, {"error": {"message": "model crashed", "type": "server_error"}})
        if self.headers.get("Authorization") != "Bearer test-key":
            return self._send(401, {"error": {"message": "bad key", "type": "auth"}})
        parts = body["messages"][0]["content"]
        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        text = next(p["text"] for p in parts if p["type"] == "text")
        lvlm = tiny("llava_clip")
        [reply] = generate_text(lvlm, [render(lvlm.processor, text, with_image=True)], [image], 6)
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": reply or "(empty)"}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    httpd.daemon_threads = False  # server_close() then waits for every handler to finish
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_openai_reasoner_over_http_with_a_two_step_style(server):
    ChatCompletions.requests.clear()
    reasoner = OpenAIReasoner("tiny", base_url=server, api_key="test-key", styles=("decompose",), max_new_tokens=20)
    [rationale] = reasoner.write(scene(), "What colour is the circle?")
    assert rationale.model == "openai:tiny" and rationale.style == "decompose" and rationale.text
    first, second = ChatCompletions.requests
    assert first["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "List the objects and regions" in first["messages"][0]["content"][1]["text"]
    assert rationale.analysis in second["messages"][0]["content"][1]["text"]
    assert first["max_tokens"] == 20 and first["temperature"] == 0


def test_openai_errors_become_clear_errors(server, monkeypatch):
    with pytest.raises(RemoteModelError, match="HTTP 500: model crashed"):
        OpenAIReasoner("broken", base_url=server, api_key="test-key", max_retries=0).write(scene(), "Q?")
    ChatCompletions.calls = 0
    with pytest.raises(RemoteModelError, match="HTTP 500"):
        OpenAIReasoner("broken", base_url=server, api_key="test-key", max_retries=2).write(scene(), "Q?")
    assert ChatCompletions.calls == 3  # retried twice, with the client's backoff
    with pytest.raises(RemoteModelError, match="refused the API key"):
        OpenAIReasoner("tiny", base_url=server, api_key="wrong", max_retries=0).write(scene(), "Q?")
    with pytest.raises(RemoteModelError, match="timed out"):
        OpenAIReasoner("slow", base_url=server, api_key="test-key", timeout=0.3, max_retries=0).write(scene(), "Q?")
    with pytest.raises(RemoteModelError, match="cannot reach"):
        OpenAIReasoner("tiny", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0).write(scene(), "Q?")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIReasoner("tiny", base_url=server)


def test_langchain_reasoner_sends_the_image_block():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    seen = []

    class Recording(GenericFakeChatModel):
        def _generate(self, messages, *args, **kwargs):
            seen.append(messages)
            return super()._generate(messages, *args, **kwargs)

    model = Recording(messages=iter([AIMessage(content="The circle is red.")]))
    [rationale] = LangChainReasoner(model).write(scene(), "What colour is the circle?")
    assert rationale.text == "The circle is red." and rationale.model.startswith("langchain:")
    blocks = seen[0][0].content
    assert blocks[0]["type"] == "image" and blocks[0]["mime_type"] == "image/png"
    assert "What colour is the circle?" in blocks[1]["text"]


def test_langchain_failures_are_named():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    with pytest.raises(RemoteModelError, match="failed: StopIteration"):
        LangChainReasoner(GenericFakeChatModel(messages=iter([]))).write(scene(), "Q?")
    with pytest.raises(ConfigError, match="LangChain chat model"):
        LangChainReasoner(object())


def test_ask_command_with_an_openai_reasoner(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from redgraph.cli import app

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    tiny("llava_clip").save(tmp_path / "model")
    scene().save(tmp_path / "scene.png")
    result = CliRunner().invoke(app, [
        "ask", str(tmp_path / "scene.png"), "what color is the circle?", "--model", str(tmp_path / "model"),
        "--reasoner", "openai:tiny", "--base-url", server, "--checkpoint", "memory", "--rounds", "1",
        "--max-new-tokens", "2", "--json",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rationales"][0]["model"] == "openai:tiny" and payload["rationales"][0]["style"] == "step_by_step"
    monkeypatch.delenv("OPENAI_API_KEY")
    missing = CliRunner().invoke(app, ["ask", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "model"),
                                       "--reasoner", "openai:tiny", "--base-url", server])
    assert missing.exit_code == 2 and "OPENAI_API_KEY" in missing.output
