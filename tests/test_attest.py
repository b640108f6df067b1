"""A trace as an in-toto statement in a DSSE envelope: a third party verifies it with the public key."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.errors import InputError
from redgraph.trace import Trace
from redgraph.trace.attest import (
    PAYLOAD_TYPE,
    Ed25519Signer,
    HmacSigner,
    attest,
    generate_ed25519_key,
    pae,
    statement,
    verify_attestation,
)

runner = CliRunner()


def _trace(answer: str = "red", trace_id: str = "run-1") -> Trace:
    trace = Trace(trace_id)
    trace.append("receive", "input", inputs={"q": 1},
                 outputs={"question": "What colour?", "image": {"sha256": "ab" * 32, "path": "/x.png"}})
    trace.append("answer", "answer", inputs={}, outputs={"text": answer, "tokens": []})
    return trace


def test_the_statement_names_the_chain_head_the_image_and_the_answer():
    trace = _trace()
    made = statement(trace.to_json())
    assert made["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in made["subject"]}
    assert subjects == {"redgraph-trace-file": hashlib.sha256(trace.to_json().encode()).hexdigest(),
                        "redgraph-trace:run-1": trace.last_hash, "image-pixels": "ab" * 32,
                        "answer": hashlib.sha256(b"red").hexdigest()}
    assert made["predicate"]["events"] == 2 and made["predicate"]["answer"] == "red"


def test_dsse_pae_is_the_specs_encoding():
    # DSSE v1: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_a_third_party_verifies_with_the_public_key_alone():
    private_pem, public_pem = generate_ed25519_key()
    trace = _trace()
    envelope = attest(trace.to_json(), [Ed25519Signer(private_pem)])
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert json.loads(base64.b64decode(envelope["payload"])) == statement(trace.to_json())
    check = verify_attestation(envelope, trace.to_json(), public_keys=[public_pem])
    assert check.ok and check.verified_keyids == (envelope["signatures"][0]["keyid"],)


def test_what_does_not_verify():
    private_pem, public_pem = generate_ed25519_key()
    _, stranger_pem = generate_ed25519_key()
    trace = _trace()
    envelope = attest(trace.to_json(), [Ed25519Signer(private_pem)])
    assert not verify_attestation(envelope, trace.to_json(), public_keys=[stranger_pem]).ok  # someone else's key
    # the envelope moved to another run's trace
    other = _trace(answer="blue", trace_id="run-2")
    moved = verify_attestation(envelope, other.to_json(), public_keys=[public_pem])
    assert not moved.ok and "not this trace's" in moved.reason
    # the trace changed after it was attested
    changed = json.loads(trace.to_json())
    changed["events"][1]["outputs"]["text"] = "blue"
    edited = verify_attestation(envelope, json.dumps(changed, sort_keys=True, indent=2) + "\n", public_keys=[public_pem])
    assert not edited.ok and "does not verify" in edited.reason
    # the payload changed under its signature
    forged = dict(envelope, payload=base64.b64encode(json.dumps(statement(other.to_json())).encode()).decode())
    assert "does not match" in verify_attestation(forged, other.to_json(), public_keys=[public_pem]).reason
    assert "no key" in verify_attestation(envelope, trace.to_json()).reason


def test_hmac_is_one_signer_beside_ed25519():
    private_pem, public_pem = generate_ed25519_key()
    trace = _trace()
    envelope = attest(trace.to_json(), [Ed25519Signer(private_pem), HmacSigner("secret")])
    assert len(envelope["signatures"]) == 2
    assert verify_attestation(envelope, trace.to_json(), hmac_keys={"hmac": "secret"}).ok
    assert not verify_attestation(envelope, trace.to_json(), hmac_keys={"hmac": "wrong"}).ok
    assert verify_attestation(envelope, trace.to_json(), public_keys=[public_pem]).ok


def test_keys_that_are_not_ed25519_are_named():
    with pytest.raises(InputError, match="not an unencrypted PEM private key"):
        Ed25519Signer(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_the_commands_keygen_attest_and_verify(tmp_path):
    trace_path = _trace().save(tmp_path / "run.json")
    made = runner.invoke(app, ["trace", "keygen", str(tmp_path / "signer")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "signer.key").stat().st_mode & 0o077 == 0  # only the owner reads the private key
    again = runner.invoke(app, ["trace", "keygen", str(tmp_path / "signer")])
    assert again.exit_code == 2 and "never overwritten" in again.output
    attested = runner.invoke(app, ["trace", "attest", str(trace_path), "--ed25519-key", str(tmp_path / "signer.key")])
    assert attested.exit_code == 0, attested.output
    envelope_path = tmp_path / "run.json.intoto.json"
    ok = runner.invoke(app, ["trace", "verify-attestation", str(trace_path), str(envelope_path),
                             "--public-key", str(tmp_path / "signer.pub")])
    assert ok.exit_code == 0 and "statement matches the trace" in ok.output
    nothing = runner.invoke(app, ["trace", "attest", str(trace_path)])
    assert nothing.exit_code == 2 and "--ed25519-key" in nothing.output
    data = json.loads(trace_path.read_text())
    data["events"][1]["outputs"]["text"] = "blue"
    trace_path.write_text(json.dumps(data, sort_keys=True, indent=2) + "\n")
    bad = runner.invoke(app, ["trace", "verify-attestation", str(trace_path), str(envelope_path),
                              "--public-key", str(tmp_path / "signer.pub")])
    assert bad.exit_code == 1 and "does not verify" in bad.output
    refused = runner.invoke(app, ["trace", "attest", str(trace_path), "--hmac-key", "k"])
    assert refused.exit_code == 2 and "would vouch for a changed trace" in refused.output


# --- the attestation covers the whole file; malformed envelopes (issue 37) ---------------------

def _signed_and_attested():
    private_pem, public_pem = generate_ed25519_key()
    trace = _trace()
    trace.sign(b"trace-key", key_id="k1")
    text = trace.to_json()
    return text, attest(text, [Ed25519Signer(private_pem)]), public_pem


@pytest.mark.parametrize("edit", [lambda d: d["signature"].update(value="0" * 64), lambda d: d.update(signature=None),
                                  lambda d: d["signature"].update(key_id="k2")],
                         ids=["zeroed", "removed", "key id"])
def test_the_traces_own_signature_block_is_covered(edit):
    text, envelope, public_pem = _signed_and_attested()
    assert verify_attestation(envelope, text, public_keys=[public_pem]).ok
    data = json.loads(text)
    edit(data)
    edited = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    check = verify_attestation(envelope, edited, public_keys=[public_pem])
    assert not check.ok and "not this trace's" in check.reason


def test_the_trace_file_subject_is_what_sha256sum_prints(tmp_path):
    text, envelope, _ = _signed_and_attested()
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    subjects = {s["name"]: s["digest"]["sha256"] for s in json.loads(base64.b64decode(envelope["payload"]))["subject"]}
    assert subjects["redgraph-trace-file"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("signatures", [[{"keyid": ["a"], "sig": "AA=="}], [{"keyid": {"a": 1}, "sig": "AA=="}],
                                        [{"keyid": "a", "sig": 7}], "not a list", [], [None]],
                         ids=["keyid list", "keyid object", "sig number", "string", "empty", "null entry"])
def test_a_malformed_envelope_is_refused_by_name(signatures):
    text, envelope, public_pem = _signed_and_attested()
    check = verify_attestation(dict(envelope, signatures=signatures), text, public_keys=[public_pem])
    assert not check.ok and "malformed" in check.reason


def test_an_attestation_from_before_the_file_subject_is_refused_with_what_to_do():
    from redgraph.trace.attest import pae

    private_pem, public_pem = generate_ed25519_key()
    text = _trace().to_json()
    old = statement(text)
    old["predicateType"] = "https://github.com/redgraph/redgraph/trace-attestation/v1"
    old["subject"] = old["subject"][1:]
    payload = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    signer = Ed25519Signer(private_pem)
    envelope = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
                "signatures": [{"keyid": signer.keyid,
                                "sig": base64.b64encode(signer.sign(pae(PAYLOAD_TYPE, payload))).decode()}]}
    check = verify_attestation(envelope, text, public_keys=[public_pem])
    assert not check.ok and "attest the trace again" in check.reason


def test_the_image_subject_is_the_files_sha256_with_the_pixels_as_an_annotation(tmp_path):
    """Issue 38: tools that match subjects to files (sha256sum, in-toto verifiers) find the image."""
    from redgraph.examples import example_path, load_examples
    from redgraph.graphs import ask, make_context

    example = load_examples()[0]
    result = ask(example_path(example), example["question"], make_context(None, rounds=1),
                 checkpoint="memory")
    made = statement(result.trace.to_json())
    [image] = [s for s in made["subject"] if s["name"] == "image"]
    assert image["digest"]["sha256"] == hashlib.sha256(example_path(example).read_bytes()).hexdigest()
    assert image["annotations"]["pixels_sha256"] == result.state["image"]["sha256"]
    from redgraph.trace.otel import span_records  # the same run's chat span says what the answerer read

    [chat] = [s for s in span_records(result.trace) if s["name"].startswith("chat ")]
    assert chat["attributes"]["gen_ai.usage.input_tokens"] >= result.state["answer"]["prompt_tokens"] > 0
