"""Seeded, bounded fuzzing of every surface a caller or attacker reaches: the trace reader, the image
loader, the input checks, the Python API, the LangChain tool, the CLI and the HTTP server. Whatever
comes in, the answer is a result or redgraph's own error naming the problem: never another
exception, a traceback, a 500 or a hang. (``benchmarks/fuzz.py`` runs the same generators for
longer and counts the outcomes.)"""

from __future__ import annotations

import base64
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redgraph.errors import RedgraphError, check_question, check_rationale
from redgraph.models.images import load_image
from redgraph.trace import Trace, verify_text
from tests.conftest import scene, tiny

FUZZ = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FEW = settings(FUZZ, max_examples=40)

# Text that hostile callers send: control characters, huge numbers, nesting, odd unicode.
hostile_text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=20),
    st.builds(lambda n: "[" * n, st.integers(0, 5000)),
    st.builds(lambda n: "9" * n, st.integers(1, 6000)),
    st.sampled_from(["\x00", "\u200b", "\ufeff", "{}", "null", '{"format": "redgraph-trace"}', "💥" * 50, "what \ud800?"]),
)


def _trace() -> Trace:
    trace = Trace("fuzz")
    trace.append("input", "question", inputs={"q": 1}, outputs={"question": "What colour?"})
    trace.append("critic", "verdict", inputs={}, outputs={"verdict": "accept", "support": [0.9]})
    trace.append("answerer", "answer", inputs={}, outputs={"answer": "red"})
    trace.sign(b"k", key_id="fuzz")
    return trace


VALID = _trace().to_json()


@FUZZ
@given(hostile_text)
def test_the_trace_reader_answers_every_text(text):
    result = verify_text(text, b"k")
    assert isinstance(result.ok, bool) and result.reason


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.integers(0, 255))
def test_every_byte_edit_of_a_signed_trace_is_caught(position, value):
    data = bytearray(VALID.encode())
    if data[position] == value:
        return
    data[position] = value
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # not text: the file reader refuses it before verification
    assert not verify_text(text, b"k").ok


def _canonical(data) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


STRUCTURAL = {
    "delete an event": lambda d, i: d["events"].pop(i),
    "swap two events": lambda d, i: d["events"].insert(0, d["events"].pop(i)) if i else d["events"].append(
        d["events"].pop(0)),
    "re-hash an edited event": lambda d, i: _rehash(d["events"][i]),
    "truncate": lambda d, i: d.update(events=d["events"][:i]),
    "edit the key id": lambda d, i: d["signature"].update(key_id=f"other-{i}"),
    "edit the algorithm": lambda d, i: d["signature"].update(algorithm="hmac-md5"),
    "drop the signature": lambda d, i: d.pop("signature"),
    "edit the head": lambda d, i: d["head"].update(events=i),
    "renumber after a deletion": lambda d, i: (d["events"].pop(i), [e.update(index=n) for n, e in enumerate(d["events"])]),
}


def _rehash(event: dict) -> None:
    from redgraph.trace.chain import _event_hash

    event["outputs"] = {**event["outputs"], "edited": True}
    event["hash"] = _event_hash(event)


@pytest.mark.parametrize("edit", list(STRUCTURAL))
@pytest.mark.parametrize("index", [0, 1, 2])
def test_structural_edits_are_caught(edit, index):
    data = json.loads(VALID)
    STRUCTURAL[edit](data, index)
    assert not verify_text(_canonical(data), b"k").ok


@FUZZ
@given(st.binary(max_size=400))
def test_the_image_loader_answers_every_byte_string(data):
    try:
        picture = load_image(data)
    except RedgraphError:
        return
    assert picture.mode == "RGB"


def _png(width: int, height: int, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


@FEW
@given(st.integers(1, 3000), st.integers(1, 40), st.sampled_from(["RGB", "RGBA", "L", "LA", "I;16", "P", "1"]))
def test_images_of_odd_shapes_and_modes_load_or_are_refused(width, height, mode):
    try:
        picture = load_image(_png(width, height, mode))
    except RedgraphError:
        return
    assert picture.mode == "RGB" and picture.size == (width, height)


@FUZZ
@given(st.one_of(hostile_text, st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=3)))
def test_the_input_checks_answer_every_value(value):
    for check in (check_question, check_rationale):
        try:
            assert check(value) == value
        except RedgraphError:
            pass


@FEW
@given(hostile_text, st.lists(hostile_text, max_size=2), st.floats(allow_nan=True, allow_infinity=True))
def test_the_python_api_answers_every_question_rationale_and_lambda(question, rationales, weight):
    from redgraph.decoding import REDConfig, REDDecoder

    try:
        result = REDDecoder(tiny("llava_clip"), REDConfig(rationale_weight=weight, max_new_tokens=2)).decode(
            scene(), question, rationales)
    except RedgraphError:
        return
    assert isinstance(result.text, str)


@FEW
@given(st.fixed_dictionaries({}, optional={
    "image": st.one_of(hostile_text, st.just("data:image/png;base64,AAAA"), st.text(min_size=4000, max_size=5000)),
    "question": hostile_text,
    "rationale": st.one_of(st.none(), hostile_text),
    "rationale_weight": st.one_of(st.floats(), st.integers(), st.text(max_size=5)),
    "rounds": st.one_of(st.integers(-5, 10), st.text(max_size=3)),
}))
def test_the_langchain_tool_answers_every_argument_set_with_text(tmp_path_factory, args):
    from redgraph.tools import make_ask_image_tool

    tool = make_ask_image_tool(lvlm=tiny("llava_clip"), trace_dir=tmp_path_factory.mktemp("traces"))
    reply = tool.invoke({"name": "ask_image", "args": args, "id": "fuzz", "type": "tool_call"})
    assert isinstance(reply.content, str) and reply.content


@FEW
@given(st.binary(max_size=300))
def test_the_cli_trace_verify_exits_with_a_verdict_for_every_file(tmp_path_factory, data):
    from typer.testing import CliRunner

    from redgraph.cli import app

    path = tmp_path_factory.mktemp("fuzz") / "trace.json"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["trace", "verify", str(path)])
    assert result.exit_code in (1, 2, 3), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _data_url(payload: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(payload).decode()


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), hostile_text),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=8)


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("fastapi")
    from redgraph.serve import ServerSettings, create_app
    from tests.test_server import LiveServer

    settings_ = ServerSettings(model_name="tiny", max_body_bytes=200_000, max_image_bytes=100_000, max_tokens_limit=8)
    with LiveServer(create_app(tiny("llava_clip"), settings_)) as live:
        yield live


@FEW
@given(st.fixed_dictionaries({"model": st.just("tiny")}, optional={
    "messages": st.one_of(json_values, st.just([{"role": "user", "content": [
        {"type": "text", "text": "What colour?"}, {"type": "image_url", "image_url": {"url": "IMAGE"}}]}])),
    "rationale": json_values, "rationale_weight": json_values, "max_tokens": json_values, "stream": st.booleans(),
    "temperature": json_values, "stop": json_values, "n": json_values,
}), st.sampled_from([_data_url(_png(8, 8, "RGB")), _data_url(b"junk"), _data_url(_png(2000, 3, "L")),
                     _data_url(_png(8, 8, "RGBA")), "https://example.com/x.png", "/etc/passwd"]))
def test_the_server_never_answers_500(server, body, image):
    import httpx

    text = json.dumps(body).replace("IMAGE", image)
    reply = httpx.post(server.url + "/v1/chat/completions", content=text.encode(),
                       headers={"Content-Type": "application/json"}, timeout=60)
    assert reply.status_code in (200, 400, 404, 413, 503), reply.text
    if reply.status_code != 200:
        assert reply.json()["error"]["message"]
    ask = httpx.post(server.url + "/v1/redgraph/ask", content=json.dumps({"image": image, **body}).encode(),
                     headers={"Content-Type": "application/json"}, timeout=60)
    assert ask.status_code in (200, 400, 503), ask.text


# --- the second round's classes (issue 37) ------------------------------------------------------

@FEW
@given(st.sampled_from(["<|image_pad|>", "<|im_end|>", "<|im_start|>", "plain"]),
       st.one_of(st.none(), st.integers(-2, 2**70)), st.one_of(st.none(), st.floats(0, 1e9)),
       st.booleans(), st.sampled_from(["TIFF", "ICO", "EPS", "PNG"]))
def test_the_server_never_answers_500_to_tokens_numbers_surrogates_or_formats(server, token, seed, temperature,
                                                                             surrogate, fmt):
    import httpx
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), "red").save(buffer, fmt)
    question = f"What is {token} here?" + ("\udc00" if surrogate else "")
    body = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": _data_url(buffer.getvalue())}}]}]}
    body.update({k: v for k, v in (("seed", seed), ("temperature", temperature)) if v is not None})
    raw = json.dumps(body).encode()  # json writes a lone surrogate as its \udc00 escape, as a client's JSON would
    for path in ("/v1/chat/completions", "/v1/redgraph/ask"):
        sent = raw if path.endswith("completions") else json.dumps(
            {"image": _data_url(buffer.getvalue()), "question": question, "rationale": question}).encode()
        reply = httpx.post(server.url + path, content=sent, headers={"Content-Type": "application/json"}, timeout=60)
        assert reply.status_code in (200, 400, 503), reply.text
        if reply.status_code == 400:
            assert reply.json()["error"]["message"]


@FUZZ
@given(st.sampled_from(["folder", "fifo", "under a file", "device", "missing folders"]), st.binary(max_size=50))
def test_file_outputs_are_regular_files_or_refused_and_leave_nothing_behind(tmp_path_factory, target, data):
    import os
    import stat

    from redgraph.data.files import write_file

    folder = tmp_path_factory.mktemp("outputs")
    (folder / "a-file").write_text("keep")
    os.mkfifo(folder / "fifo")
    path = {"folder": folder, "fifo": folder / "fifo", "under a file": folder / "a-file" / "x.json",
            "device": os.devnull, "missing folders": folder / "new" / "deeper" / "x.json"}[target]
    try:
        write_file(path, data, what="trace")
        assert target == "missing folders" and (folder / "new" / "deeper" / "x.json").read_bytes() == data
    except RedgraphError as exc:
        assert target != "missing folders" and str(exc)
    assert stat.S_ISFIFO(os.stat(folder / "fifo").st_mode) and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert (folder / "a-file").read_text() == "keep"
    assert {p.name for p in folder.rglob("*")} <= {"a-file", "fifo", "new", "deeper", "x.json"}  # no temporary file
