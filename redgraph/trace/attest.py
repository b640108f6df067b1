"""A finished trace as an in-toto attestation that anyone can check: an in-toto Statement v1 in a
DSSE envelope, signed with Ed25519 (a public key verifies it, no shared secret) and/or HMAC-SHA256.

The statement's subjects are what the run vouches for, each by sha256: the trace file's bytes (all
of it, its own signature block included, so ``sha256sum`` of the file matches), the trace's chain
head (the last event's hash, which covers every event before it), the image file's bytes (with the
digest of its decoded pixels as an annotation; ``image-pixels`` when the run was given pixels, not
a file), and the answer text.
Its predicate repeats the trace id, event count, question and answer. A verifier checks the
envelope's signatures over DSSE's pre-authentication encoding, then that the statement is the one
this trace file gives (so an envelope cannot be moved to another trace, nor the trace's signature
block zeroed or removed), and the trace's own chain.

Example:
    >>> private_pem, public_pem = generate_ed25519_key()  # doctest: +SKIP
    >>> envelope = attest(trace_text, [Ed25519Signer(private_pem)])  # doctest: +SKIP
    >>> verify_attestation(envelope, trace_text, public_keys=[public_pem]).ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redgraph.errors import ConfigError, InputError
from redgraph.trace.chain import Verification, verify_text
from redgraph.trace.schema import FORMAT, parse_trace, read_json

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# v2: the trace file's own bytes are a subject. A v1 statement left the trace's signature block out.
PREDICATE_TYPE = "https://github.com/redgraph/redgraph/trace-attestation/v2"
TRACE_FILE_SUBJECT = "redgraph-trace-file"


def _need_cryptography():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise ConfigError(f"Ed25519 signatures need the cryptography package ({exc}); "
                          "install it: pip install 'redgraph[attest]'") from exc
    return serialization, ed25519


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: what every signature of an envelope signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(text: str) -> dict[str, Any]:
    """The in-toto Statement a trace file's text gives: the file's bytes, its chain head, image and
    answer as subjects.

    Raises:
        InputError: the text is not a trace file (read strictly, :func:`~redgraph.trace.parse_trace`).
    """
    trace = parse_trace(read_json(text))
    if not trace.events:
        raise InputError(f"trace {trace.trace_id!r} has no event; an empty trace is not a run")
    last_hash = trace.events[-1].hash
    subjects = [{"name": TRACE_FILE_SUBJECT, "digest": {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}},
                {"name": f"{FORMAT}:{trace.trace_id}", "digest": {"sha256": last_hash}}]
    question = answer = None
    for event in trace.events:
        image = event.outputs.get("image") if event.kind == "input" else None
        if isinstance(image, dict) and isinstance(image.get("sha256"), str):
            if isinstance(image.get("file_sha256"), str):  # the file's bytes: sha256sum and verifiers match it
                annotations = {"pixels_sha256": image["sha256"]}
                document = image.get("document")
                if isinstance(document, dict):  # a PDF: the file, and the page that was read
                    annotations.update(page=document.get("page"), pages=document.get("pages"))
                subjects.append({"name": "image", "digest": {"sha256": image["file_sha256"]}, "annotations": annotations})
            else:  # given as decoded pixels (a PIL image): there is no file to match
                subjects.append({"name": "image-pixels", "digest": {"sha256": image["sha256"]}})
            question = event.outputs.get("question")
        if event.kind == "answer" and isinstance(event.outputs.get("text"), str):
            answer = event.outputs["text"]
    if answer is not None:
        subjects.append({"name": "answer", "digest": {"sha256": hashlib.sha256(answer.encode()).hexdigest()}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {"trace_id": trace.trace_id, "trace_format": FORMAT, "trace_version": trace.version,
                      "events": len(trace.events), "last_hash": last_hash, "question": question, "answer": answer},
    }


class Ed25519Signer:
    """Signs with an Ed25519 private key (PEM, PKCS#8, unencrypted); verified with its public key."""

    def __init__(self, private_pem: bytes | str) -> None:
        serialization, ed25519 = _need_cryptography()
        data = private_pem.encode() if isinstance(private_pem, str) else private_pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InputError(f"not an unencrypted PEM private key ({exc}); make one with `redgraph trace keygen`") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise InputError(f"the private key is {type(key).__name__}, not Ed25519; make one with `redgraph trace keygen`")
        self._key = key
        self.keyid = key_id(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class HmacSigner:
    """Signs with a shared secret (HMAC-SHA256): only holders of the secret can verify."""

    def __init__(self, key: bytes | str, keyid: str = "hmac") -> None:
        self._key = key.encode() if isinstance(key, str) else key
        if not self._key:
            raise ConfigError("the HMAC key is empty; pass a key")
        self.keyid = keyid

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()


def key_id(public_pem: bytes) -> str:
    """A public key's id: ``ed25519:`` and the first 16 hex digits of the sha256 of its PEM."""
    return "ed25519:" + hashlib.sha256(public_pem.strip()).hexdigest()[:16]


def generate_ed25519_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private PEM, public PEM)``."""
    serialization, ed25519 = _need_cryptography()
    private = ed25519.Ed25519PrivateKey.generate()
    return (
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )


def attest(text: str, signers: Sequence[Ed25519Signer | HmacSigner]) -> dict[str, Any]:
    """The DSSE envelope of the statement of a trace file's ``text``, signed by every signer."""
    if not signers:
        raise ConfigError("give at least one signer (an Ed25519 private key or an HMAC key)")
    payload = json.dumps(statement(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    message = pae(PAYLOAD_TYPE, payload)
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": signer.keyid, "sig": base64.b64encode(signer.sign(message)).decode()}
                       for signer in signers],
    }


@dataclass(frozen=True)
class AttestationCheck:
    """What :func:`verify_attestation` found: ``ok`` when at least one signature verified with a
    given key, the statement is this trace's, and the trace is intact."""

    ok: bool
    reason: str
    verified_keyids: tuple[str, ...] = ()
    trace: Verification | None = None


def verify_attestation(envelope: Any, trace_text: str, *, public_keys: Sequence[bytes | str] = (),
                       hmac_keys: dict[str, bytes | str] | None = None) -> AttestationCheck:
    """Check a DSSE envelope against the trace file's text.

    Args:
        envelope: the envelope (parsed JSON).
        trace_text: the trace file's text (its own chain and canonical form are checked too).
        public_keys: Ed25519 public keys (PEM) to accept signatures from.
        hmac_keys: ``{keyid: secret}`` to accept HMAC signatures from.
    """
    hmac_keys = dict(hmac_keys or {})
    if not public_keys and not hmac_keys:
        return AttestationCheck(False, "no key was given to check the signatures with")
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        return AttestationCheck(False, f"not a DSSE envelope of an in-toto statement (payloadType {PAYLOAD_TYPE})")
    listed = envelope.get("signatures")
    if not isinstance(envelope.get("payload"), str) or not isinstance(listed, list) or not listed or not all(
            isinstance(s, dict) and isinstance(s.get("keyid"), str) and isinstance(s.get("sig"), str) for s in listed):
        return AttestationCheck(False, "the envelope is malformed: DSSE needs a string payload and a non-empty list of "
                                       "signatures, each with a string keyid and a string sig")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [(s["keyid"], base64.b64decode(s["sig"], validate=True)) for s in listed]
    except ValueError as exc:
        return AttestationCheck(False, f"the envelope is malformed (not base64: {exc})")
    message = pae(PAYLOAD_TYPE, payload)
    verified = []
    accepted = {}
    if public_keys:
        serialization, ed25519 = _need_cryptography()
        from cryptography.exceptions import InvalidSignature
        for pem in public_keys:
            data = pem.encode() if isinstance(pem, str) else pem
            try:
                key = serialization.load_pem_public_key(data)
            except (ValueError, TypeError) as exc:
                raise InputError(f"not a PEM public key ({exc})") from exc
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise InputError(f"the public key is {type(key).__name__}, not Ed25519")
            accepted[key_id(data)] = key
    for keyid, sig in signatures:
        if keyid in accepted:
            try:
                accepted[keyid].verify(sig, message)
                verified.append(keyid)
            except InvalidSignature:
                return AttestationCheck(False, f"the signature of {keyid} does not match the envelope's payload")
        elif keyid in hmac_keys:
            expected = HmacSigner(hmac_keys[keyid], keyid).sign(message)
            if not hmac.compare_digest(expected, sig):
                return AttestationCheck(False, f"the HMAC signature {keyid} does not match (wrong key, or changed)")
            verified.append(keyid)
    if not verified:
        return AttestationCheck(False, "no signature was made by a given key (key ids in the envelope: "
                                       f"{', '.join(k for k, _ in signatures) or 'none'})")
    chain = verify_text(trace_text)
    if not chain.ok:
        return AttestationCheck(False, f"the trace itself does not verify: {chain.reason}", tuple(verified), chain)
    try:
        claimed = read_json(payload.decode("utf-8"))
        actual = statement(trace_text)
    except (UnicodeDecodeError, InputError) as exc:
        return AttestationCheck(False, f"the statement cannot be read ({exc})", tuple(verified), chain)
    if isinstance(claimed, dict) and claimed.get("predicateType") != PREDICATE_TYPE:
        return AttestationCheck(False, f"the statement's predicate is {str(claimed.get('predicateType'))[:100]!r}, not "
                                       f"{PREDICATE_TYPE}: an attestation made before the trace file itself was a "
                                       "subject does not cover the trace's signature block; attest the trace again",
                                tuple(verified), chain)
    if claimed != actual:
        return AttestationCheck(False, "the statement is not this trace's (another trace, or the trace changed "
                                       "and was re-chained)", tuple(verified), chain)
    return AttestationCheck(True, f"signed by {', '.join(verified)}; statement matches the trace; {chain.reason}",
                            tuple(verified), chain)
