"""Traces: the chain catches any changed byte and names the first bad event; signatures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from redgraph.errors import InputError
from redgraph.trace import ModelRef, Trace, json_schema, verify_data, verify_text
from tests.conftest import json_paths

SCHEMA = Path(__file__).resolve().parent.parent / "redgraph" / "trace" / "trace.schema.json"


def _trace(signed: bool = False) -> Trace:
    trace = Trace("thread-1")
    trace.append("input", "question", inputs={"image_sha256": "ab" * 32, "question": "What colour?"},
                 outputs={"question": "What colour is the circle?", "image": {"sha256": "ab" * 32, "path": "x.png"}})
    trace.append("reasoner", "rationale", inputs={"round": 0}, outputs={"text": "The circle is red.", "style": "plain"},
                 model=ModelRef(id="redgraph-embedded", weights_digest="cd" * 32), config={"k": 1},
                 timings={"seconds": 0.25})
    trace.append("critic", "verdict", inputs={"round": 0}, outputs={"verdict": "accept", "support": [0.93]})
    trace.append("answerer", "answer", inputs={}, outputs={"answer": "red", "tokens": [{"text": "red", "score": -0.1}]})
    if signed:
        trace.sign(b"secret", key_id="test")
    return trace


def test_a_written_trace_verifies():
    result = verify_text(_trace().to_json())
    assert result.ok and result.events == 4 and not result.signed


def test_every_single_byte_change_is_caught_and_located():
    text = _trace().to_json()
    rng = random.Random(0)
    for offset in rng.sample(range(len(text)), 300):
        original = text[offset]
        replacement = rng.choice([c for c in "a0 \n{}\"x9" if c != original])
        changed = text[:offset] + replacement + text[offset + 1 :]
        result = verify_text(changed)
        assert not result.ok, (offset, original, replacement)


def test_the_first_bad_event_is_named():
    text = _trace().to_json()
    data = json.loads(text)
    data["events"][2]["outputs"]["verdict"] = "revise"
    result = verify_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
    assert not result.ok and result.first_bad == 2 and "event 2" in result.reason
    spaced = text.replace('"answer": "red"', '"answer":  "red"')
    result = verify_text(spaced)
    assert not result.ok and result.first_bad == 3


def test_dropping_or_reordering_events_breaks_the_chain():
    data = json.loads(_trace().to_json())
    del data["events"][1]
    for index, event in enumerate(data["events"]):
        event["index"] = index
    result = verify_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
    assert not result.ok and result.first_bad == 1


def test_signature():
    text = _trace(signed=True).to_json()
    assert verify_text(text, key=b"secret").signature_checked
    assert not verify_text(text, key=b"other").ok
    unchecked = verify_text(text)
    assert unchecked.ok and unchecked.signed and not unchecked.signature_checked
    assert not verify_text(_trace().to_json(), key=b"secret").ok
    with pytest.raises(InputError, match="signed and closed"):
        _trace(signed=True).append("x", "y", inputs={}, outputs={})


def test_published_schema_matches_the_model():
    assert json.loads(SCHEMA.read_text()) == json_schema()


def test_save_is_canonical(tmp_path):
    path = _trace().save(tmp_path / "t" / "trace.json")
    assert verify_text(path.read_text(encoding="utf-8")).ok


def test_bad_values_are_refused():
    with pytest.raises(InputError, match="NaN"):
        Trace("t").append("n", "k", inputs={}, outputs={"x": float("nan")})
    with pytest.raises(InputError, match="not JSON data"):
        Trace("t").append("n", "k", inputs={"image": b"bytes"}, outputs={})
    with pytest.raises(InputError, match="trace id"):
        Trace("")



# --- the end of the chain, and hostile files (issue 18) -----------------------------------------

def _edited(trace: Trace, edit) -> str:
    data = json.loads(trace.to_json())
    edit(data)
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _drop_last(data):
    data["events"].pop()


def _rehash_last(data):
    from redgraph.trace.chain import _event_hash, chain_event

    last = data["events"][-1]
    last["outputs"]["answer"] = "blue"
    last["hash"] = _event_hash(last)


@pytest.mark.parametrize("edit", [_drop_last, _rehash_last, lambda d: d["events"].clear(),
                                  lambda d: d.pop("head")], ids=["drop last", "re-hash last", "empty", "no head"])
def test_the_end_of_an_unsigned_trace_is_protected(edit):
    result = verify_text(_edited(_trace(), edit))
    assert not result.ok and result.readable


def test_a_signed_trace_cut_short_fails_without_a_key_and_an_edited_key_id_with_it():
    assert not verify_text(_edited(_trace(signed=True), _drop_last)).ok
    edited = _edited(_trace(signed=True), lambda d: d["signature"].update(key_id="someone-else"))
    assert verify_text(edited).ok  # without the key, nothing can vouch for the key id
    assert not verify_text(edited, b"secret").ok and verify_text(_trace(signed=True).to_json(), b"secret").ok


def test_an_empty_trace_cannot_be_signed():
    with pytest.raises(InputError, match="no event"):
        Trace("nothing").sign(b"k")


def test_a_version_1_trace_still_verifies_and_says_its_end_is_unprotected():
    from redgraph.trace.chain import _signature_value

    def as_version_1(data):
        data["version"] = 1
        data.pop("head")
        data["signature"]["value"] = _signature_value(b"secret", data["trace_id"], data["events"][-1]["hash"], version=1)

    result = verify_text(_edited(_trace(signed=True), as_version_1), b"secret")
    assert result.ok
    assert "version 1" in verify_text(_edited(_trace(signed=True), as_version_1)).reason


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a": ' + "9" * 5000 + "}", "{" * 65 + "}" * 65, "not json"])
def test_unreadable_text_is_its_own_verdict(text):
    result = verify_text(text)
    assert not result.ok and not result.readable and result.reason.startswith("unreadable")


def test_trace_verify_exits_3_when_unreadable_and_2_for_a_pipe(tmp_path):
    import os

    from typer.testing import CliRunner

    from redgraph.cli import app

    runner = CliRunner()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000)
    unreadable = runner.invoke(app, ["trace", "verify", str(deep)])
    assert unreadable.exit_code == 3 and "unreadable" in unreadable.output
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for command in ("verify", "show"):
        piped = runner.invoke(app, ["trace", command, str(fifo)])
        assert piped.exit_code == 2 and "not a regular file" in piped.output
    tampered = tmp_path / "t.json"
    tampered.write_text(_edited(_trace(), _drop_last))
    assert runner.invoke(app, ["trace", "verify", str(tampered)]).exit_code == 1


def test_events_are_hashed_over_rfc8785_canonical_json(tmp_path):
    import hashlib

    import rfc8785

    trace = Trace("jcs")
    trace.append("answer", "answer", inputs={"sizes": [3.0, 1e-05]},
                 outputs={"supports": [0.5, 1e-05, 2.5e-07, 3.0], "text": "naïve ✓"}, timings={"seconds": 0.00125})
    path = trace.save(tmp_path / "t.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == 4
    [event] = data["events"]
    # Any JCS implementation re-hashes an event from the file: here the rfc8785 package, on the
    # parsed file (Python's own JSON text of the same floats, 1e-05 and 3.0, differs).
    body = {k: v for k, v in event.items() if k != "hash"}
    assert hashlib.sha256(rfc8785.dumps(body)).hexdigest() == event["hash"]
    assert json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() != rfc8785.dumps(body)
    assert verify_text(path.read_text(encoding="utf-8")).ok
    with pytest.raises(InputError, match="integer beyond what JSON numbers carry"):
        Trace("big").append("x", "y", inputs={}, outputs={"n": 2**60})


def test_a_version_2_trace_written_before_rfc8785_still_verifies_with_its_key():
    text = (Path(__file__).parent / "data" / "trace-v2.json").read_text(encoding="utf-8")
    assert json.loads(text)["version"] == 2
    result = verify_text(text, b"fixture-key")
    assert result.ok and result.signature_checked, result.reason
    assert not verify_text(text.replace('"naïve ✓"', '"naive ✓"'), b"fixture-key").ok


# --- a strict schema, and a signature over the whole file (issue 37) ---------------------------

def _retypings(value):
    """Values of other JSON types (and the same number as the other of int and float) for ``value``."""
    candidates = [True, False, None, 0, 1, 2.0, "3", " 1e-05 ", [], {}, [value], {"v": value}]
    if isinstance(value, float):
        candidates += [int(value), str(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        candidates += [float(value), str(value), value + 1]
    if isinstance(value, str):
        candidates += [value + " ", value.upper(), ""]
    return [c for c in candidates if not (type(c) is type(value) and c == value)]


def _edit_at(data, path, edit):
    edited = json.loads(json.dumps(data))
    *parents, last = path
    holder = edited
    for step in parents:
        holder = holder[step]
    if edit is _DELETE:
        del holder[last]
    else:
        holder[last] = edit
    return json.dumps(edited, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


_DELETE = object()


def test_every_retyping_and_deletion_of_a_keyed_trace_is_caught():
    data = json.loads(_trace(signed=True).to_json())
    tried = 0
    for path in json_paths(data):
        holder = data
        for step in path[:-1]:
            holder = holder[step]
        edits = _retypings(holder[path[-1]]) + ([_DELETE] if isinstance(holder, dict) else [])
        for edit in edits:
            result = verify_text(_edit_at(data, path, edit), b"secret")
            assert not result.ok, (path, edit)
            tried += 1
    assert tried > 1000


@pytest.mark.parametrize("edit", [
    lambda d: d["events"][1].update(index=True), lambda d: d["events"][1].update(index=1.0),
    lambda d: d["events"][1].update(index="1"), lambda d: d["head"].update(events="4"),
    lambda d: d["head"].update(events=4.0), lambda d: d["events"][1]["timings"].update(seconds=" 0.25 "),
    lambda d: d.update(version=4.0), lambda d: d.update(version=True),
    lambda d: d["events"][0].pop("model"), lambda d: d["events"][0].pop("config"),
    lambda d: d["signature"].pop("key_id"), lambda d: d["signature"].pop("algorithm"),
    lambda d: d["events"][1].update(time="yesterday"),
], ids=["index true", "index 1.0", "index '1'", "head events '4'", "head events 4.0", "timing string",
        "version 4.0", "version true", "no model", "no config", "no key_id", "no algorithm", "time"])
def test_the_audits_edits_are_tampering_with_or_without_the_key(edit):
    text = _edited(_trace(signed=True), edit)
    for key in (None, b"secret"):
        result = verify_text(text, key)
        assert not result.ok and result.readable and "not a redgraph trace" in result.reason, result.reason


def test_the_signature_covers_every_byte_even_a_json_equal_number():
    trace = Trace("numbers")
    trace.append("answer", "answer", inputs={}, outputs={"support": 1.0})
    trace.sign(b"secret")
    text = trace.to_json()
    assert '"support": 1\n' in text and verify_text(text, b"secret").ok  # outputs are stored as RFC 8785 data
    # 1 and 1.0 are one number to RFC 8785, so the chain holds; the signature covers the file as written.
    edited = text.replace('"support": 1\n', '"support": 1.0\n')
    assert verify_text(edited).ok
    assert not verify_text(edited, b"secret").ok


@pytest.mark.parametrize("text", [
    '{"a": 9007199254740993}', '{"a": -9007199254740993}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": NaN}',
    '{"a": 1e400}', '{"trace_id": "\\ud800"}', '{"a": ["ok", "\\udfff"]}', '{"\\ud800": 1}',
], ids=["2^53+2", "-(2^53+2)", "Infinity", "-Infinity", "NaN", "1e400", "surrogate id", "surrogate in list",
        "surrogate key"])
def test_json_beyond_what_every_reader_agrees_on_is_unreadable(text):
    result = verify_text(text, b"secret")
    assert not result.ok and not result.readable, result.reason
    assert not verify_data(json.loads(text)).readable


def test_a_non_hex_signature_value_is_tampering_not_a_crash():
    text = _edited(_trace(signed=True), lambda d: d["signature"].update(value="é" * 64))
    result = verify_text(text, b"secret")
    assert not result.ok and "signature.value" in result.reason


@pytest.mark.parametrize("command", ["verify", "show", "spans"])
@pytest.mark.parametrize("content", ['{"a": Infinity}', '{"events": 9007199254740993}', '{"trace_id": "\\udc00"}'],
                         ids=["Infinity", "big int", "surrogate"])
def test_the_trace_commands_refuse_unreadable_json_without_a_traceback(tmp_path, command, content):
    from typer.testing import CliRunner

    from redgraph.cli import app

    path = tmp_path / "t.json"
    path.write_text(content)
    result = CliRunner().invoke(app, ["trace", command, str(path)])
    assert result.exit_code in (2, 3) and result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_an_event_hash_built_from_its_parts_equals_the_hash_of_the_whole_event():
    from redgraph.trace.chain import _event_hash, chain_event

    values = [0.1, 1.0, 1e-7, 123456789.5, -0.0, 2 ** 52, "é\u2028\U0001F600", None, True, [], {}, {"b": 1, "a": [1.5]},
              {"\u00e9": 1, "z": 2, "\U0001F600": 3, "\uff01": 4}]
    for index, value in enumerate(values):
        event = chain_event("t", None, index, "node", "kind", inputs={"v": value}, outputs={"v": value, "w": [value]},
                            config={"c": value}, timings={"seconds": 0.25})
        assert event["hash"] == _event_hash(event)
