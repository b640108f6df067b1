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
    made = statement(trace.to_file())
    assert made["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in made["subject"]}
    assert subjects == {"redgraph-trace:run-1": trace.last_hash, "image": "ab" * 32,
                        "answer": hashlib.sha256(b"red").hexdigest()}
    assert made["predicate"]["events"] == 2 and made["predicate"]["answer"] == "red"


def test_dsse_pae_is_the_specs_encoding():
    # DSSE v1: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_a_third_party_verifies_with_the_public_key_alone():
    private_pem, public_pem = generate_ed25519_key()
    trace = _trace()
    envelope = attest(trace.to_file(), [Ed25519Signer(private_pem)])
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert json.loads(base64.b64decode(envelope["payload"])) == statement(trace.to_file())
    check = verify_attestation(envelope, trace.to_json(), public_keys=[public_pem])
    assert check.ok and check.verified_keyids == (envelope["signatures"][0]["keyid"],)


def test_what_does_not_verify():
    private_pem, public_pem = generate_ed25519_key()
    _, stranger_pem = generate_ed25519_key()
    trace = _trace()
    envelope = attest(trace.to_file(), [Ed25519Signer(private_pem)])
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
    forged = dict(envelope, payload=base64.b64encode(json.dumps(statement(other.to_file())).encode()).decode())
    assert "does not match" in verify_attestation(forged, other.to_json(), public_keys=[public_pem]).reason
    assert "no key" in verify_attestation(envelope, trace.to_json()).reason


def test_hmac_is_one_signer_beside_ed25519():
    private_pem, public_pem = generate_ed25519_key()
    trace = _trace()
    envelope = attest(trace.to_file(), [Ed25519Signer(private_pem), HmacSigner("secret")])
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
