"""The rationale graph's nodes: plain functions from state (and the run context) to a partial state.

Every node appends one hash-chained trace event to ``state["trace"]``. Nodes never hold image
bytes in the state: they take the pixels ``ask`` loaded (in the run context, by sha256), or, in a
run resumed elsewhere or served, reload the image from its path and check its sha256 first.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from typing import Any

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from redgraph.errors import Cancelled, InputError
from redgraph.graphs.context import RUN_SETTINGS, RunContext, callers_config, resolve_context, run_setting
from redgraph.graphs.state import GraphState
from redgraph.models.images import load_image_file
from redgraph.trace.chain import chain_event
from redgraph.trace.schema import ModelRef


def _event(state: GraphState, node: str, kind: str, *, inputs: Any, outputs: dict, model: ModelRef | None = None,
           config: dict | None = None, started: float | None = None) -> dict:
    events = state.get("trace", [])
    timings = {"seconds": round(time.perf_counter() - started, 6)} if started is not None else None
    return chain_event(state["trace_id"], events[-1]["hash"] if events else None, len(events), node, kind,
                       inputs=inputs, outputs=outputs, model=model, config=config, timings=timings)


def _model_ref(agent) -> ModelRef | None:
    """The model behind an agent: a local LVLM (id and weights digest), else a remote model's name
    (``model_name`` of a reasoner, or of the chat backend a critic uses)."""
    lvlm = getattr(agent, "lvlm", agent)
    if getattr(lvlm, "name", None) is not None:
        return ModelRef(id=lvlm.name, weights_digest=getattr(lvlm, "weights_digest", None))
    remote = getattr(agent, "model_name", None) or getattr(getattr(agent, "backend", None), "model_name", None)
    return ModelRef(id=remote) if remote else None


def _runtime_of(lvlm) -> dict:
    """What besides the weights changes an answer: library versions, dtype, attention implementation."""
    import torch
    import transformers

    model = getattr(lvlm, "model", None)
    return {
        "transformers": transformers.__version__, "torch": torch.__version__,
        "dtype": str(getattr(model, "dtype", None)).removeprefix("torch."),
        "attention": getattr(getattr(model, "config", None), "_attn_implementation", None),
        "device": str(getattr(lvlm, "device", None)),
        "adapter": getattr(lvlm, "adapter_path", None),
    }


def _image(state: GraphState, ctx: RunContext):
    """The run's image: as the entry point loaded it, else (a resumed or served run) from its file,
    which must still hold the same pixels."""
    ref = state["image"]
    loaded = (ctx.images or {}).get(ref["sha256"])
    if loaded is not None:
        return loaded
    picture, digest = load_image_file(ref["path"])
    if digest != ref["sha256"]:
        raise InputError(f"the image {ref['path']} changed since this run started (sha256 differs); "
                         "start a new run for the new image")
    return picture


def _live_context(runtime: Runtime[RunContext]) -> RunContext:
    """The run's context, unless the run should stop (its caller went away, or its deadline passed)."""
    ctx = resolve_context(runtime.context)
    if ctx.should_stop is not None and ctx.should_stop():
        raise Cancelled("the run was stopped between steps: its caller went away or its deadline passed")
    return ctx


def receive(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Check the image and question and record the run's inputs and settings."""
    started = time.perf_counter()
    ctx = resolve_context(runtime.context)
    _image(state, ctx)
    event = _event(state, "receive", "input", inputs={"question": state["question"], "image": state["image"]},
                   outputs={"question": state["question"], "image": dict(state["image"])},
                   config=ctx.settings(), started=started)
    # Recorded in the state, so that a run resumed with another context (or none, through a
    # server) keeps the settings it started with.
    settings = {name: getattr(ctx, name) for name in RUN_SETTINGS}
    return {"round": 0, "history": [], "flags": [], "settings": settings, "trace": [event]}


def reason(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    ctx = _live_context(runtime)
    started = time.perf_counter()
    critique = (state.get("critique") or None) if state.get("round", 0) > 0 else None
    from redgraph.decoding.generate import stopping

    with stopping(ctx.should_stop), callers_config():  # a local reasoner stops mid-rationale when asked
        written = ctx.reasoner.write(_image(state, ctx), state["question"], run_setting(state, ctx, "rationales"),
                                     critique=critique)
    rationales = [asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r) for r in written]
    round_number = state.get("round", 0) + 1
    event = _event(state, "reason", "rationales", inputs={"round": round_number, "critique": critique},
                   outputs={"round": round_number, "rationales": rationales}, model=_model_ref(ctx.reasoner),
                   started=started)
    return {"rationales": rationales, "round": round_number, "trace": [event]}


EMPTY_RATIONALE = "the reasoner wrote nothing"


def critique(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    ctx = _live_context(runtime)
    started = time.perf_counter()
    texts = [r["text"] for r in state["rationales"]]
    # A rationale the reasoner left empty (or none at all) is the reasoner's failure: recorded and
    # revised, never the caller's error and never sent to the critic.
    written = [i for i, text in enumerate(texts) if text.strip()]
    from redgraph.decoding.generate import stopping

    report = None
    if written:
        with stopping(ctx.should_stop), callers_config():  # a decomposer generating locally stops too
            report = ctx.critic.review(_image(state, ctx), state["question"], [texts[i] for i in written])
    reviews = [{"support": 0.0, "accepted": False, "status": "unchecked", "claims": [], "injections": [],
                "note": EMPTY_RATIONALE} for _ in texts]
    # Whose eyes a local critic asks (its "lvlm" expert); a chat critic checks by its model's name.
    eyes = getattr(getattr(ctx.critic, "lvlm", None), "name", None)
    own = "lvlm" if eyes is not None else getattr(_model_ref(ctx.critic), "id", None) or type(ctx.critic).__name__
    for i, r in zip(written, report.reviews if report else ()):
        claims = [_with_checkers(c.to_dict(), state["rationales"][i], eyes, own) for c in r.claims]
        reviews[i] = {"support": r.support, "accepted": r.accepted, "status": r.status, "claims": claims,
                      "injections": [asdict(f) for f in r.injections]}
    if report is not None and len(written) == len(texts):
        verdict, critique_text = report.verdict, report.critique
    else:
        empty = "; ".join(f"Rationale {i + 1}: {EMPTY_RATIONALE}." for i in range(len(texts)) if i not in written)
        verdict = "revise"
        critique_text = " ".join(part for part in (report.critique if report else "", empty or
                                                   "The reasoner wrote no rationale.") if part)
    entry = {"round": state["round"], "rationales": state["rationales"], "reviews": reviews,
             "verdict": verdict, "critique": critique_text, "unasked": list(report.unasked) if report else [],
             "picture": {"novelty": report.novelty if report else None, "novel": report.novel if report else None,
                         "calibration": _calibration_of(ctx.critic)},
             "reader_failures": list(report.failures) if report else []}
    event = _event(state, "critique", "verdict", inputs={"rationales": texts}, outputs=entry,
                   model=_model_ref(ctx.critic), started=started)
    return {"reviews": reviews, "verdict": verdict, "critique": critique_text, "history": [entry],
            "trace": [event]}


def _writer_of(claim: str, rationale: dict, eyes: str | None) -> str:
    """Who wrote ``claim``: the reader behind a reading rationale's claim (the text engine, or the
    chart reader's axis or printed-label reading), else the rationale's model, named ``lvlm`` when
    it is the model whose eyes the critic asks (``eyes``)."""
    for item in rationale.get("evidence") or ():
        if " ".join(item.get("claim", "").split()) != " ".join(claim.split()):
            continue
        if item.get("reader") != "chart":
            return item.get("reader") or "readers"
        if item.get("kind") == "title":
            return item.get("text_reader") or "readers"
        return "chart_label" if item.get("value_source") == "label" and item.get("kind") == "bar_value" else "chart_axis"
    model = rationale.get("model") or "reasoner"
    return "lvlm" if model == eyes else model


def _with_checkers(claim: dict, rationale: dict, eyes: str | None, critic: str) -> dict:
    """A claim's check, with who wrote it, who checked it (the experts sure of it, else the critic's
    own model where its reading decided: ``critic``) and whether a checker other than its writer
    supports it: a claim checked only by the engine that wrote it is never shown as independently
    supported."""
    writer = _writer_of(claim["text"], rationale, eyes)
    readings = claim.get("experts") or []
    if readings:
        checkers = sorted({r["expert"] for r in readings if r.get("sure")})
        supporting = {r["expert"] for r in readings if r.get("sure") and r.get("support", 0) >= 0.5}
    else:  # the critic's own model alone, where it could tell
        checkers = [critic] if claim.get("status") in ("supported", "unsupported") else []
        supporting = {critic} if claim.get("status") == "supported" else set()
    return {**claim, "written_by": writer, "checked_by": checkers, "independent": bool(supporting - {writer})}


def _calibration_of(critic) -> dict | None:
    """The calibration a critic used, as the trace records it (None: raw supports)."""
    calibration = getattr(critic, "calibration", None)
    return None if calibration is None else calibration.summary()


def decide(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Choose what the answerer decodes with: the accepted rationales; where the image cannot tell,
    the unsure policy; after the last round still rejected, the exhausted-rounds policy."""
    ctx = _live_context(runtime)
    texts = [r["text"] for r in state["rationales"]]
    supports = [r["support"] for r in state["reviews"]]
    flags = list(state.get("flags", []))
    if any(c.get("method") == "p_yes_fallback" for r in state["reviews"] for c in r["claims"]):
        flags.append("claims_checked_by_p_yes_only")  # no question could be asked of them
    if any(r.get("status") == "unchecked" for r in state["reviews"]):
        flags.append("rationale_unchecked")  # it said nothing a question could check
    last = (state.get("history") or [{}])[-1]
    from redgraph.agents.reading import READERS_FAILED

    if last.get("reader_failures") or any(note.startswith(READERS_FAILED) for r in state["rationales"]
                                          for note in r.get("notes") or ()):
        flags.append("reader_failed")  # named in the trace: the critic's entry, the rationale's notes
    if state["verdict"] == "accept":
        outcome = "accepted"
        chosen = {"rationales": texts, "weights": supports}
    elif state["verdict"] == "unsure":
        outcome, chosen = "unsure", _unsure_choice(state, ctx, texts, supports, flags)
    elif (policy := run_setting(state, ctx, "on_exhausted")) == "image_only":
        # The rejected rationales are left out; those the critic accepted beside them (another
        # reasoner's: the readers' beside a model that lies) still speak, at their support.
        accepted = [i for i, review in enumerate(state["reviews"]) if review.get("status") == "accepted"]
        outcome = "image_only"
        chosen = {"rationales": [texts[i] for i in accepted], "weights": [supports[i] for i in accepted]}
        flags.append("rationales_rejected_answered_with_accepted" if accepted
                     else "rationales_rejected_answered_from_image")
    elif policy == "best_supported":
        outcome = "best_supported"
        best = max(range(len(texts)), key=supports.__getitem__)
        if supports[best] > 0:
            chosen = {"rationales": [texts[best]], "weights": [1.0]}
            flags.append("answered_with_unaccepted_rationale")
        else:
            chosen = {"rationales": [], "weights": []}
            flags.append("no_rationale_had_support_answered_from_image")
    else:
        outcome = "human_review"
        chosen = _ask_a_person(state, texts, supports)
        flags.append("human_reviewed")
    if (last.get("picture") or {}).get("novel") and not any(w > 0 for w in chosen["weights"]):
        # The model's eyes cannot read this picture, and nothing accepted speaks for the answer.
        flags.append("picture_out_of_range_answered_from_image")
    event = _event(state, "decide", "decision", inputs={"verdict": state["verdict"], "supports": supports},
                   outputs={"outcome": outcome, "chosen": chosen, "flags": flags})
    return {"outcome": outcome, "chosen": chosen, "flags": flags, "trace": [event]}


def _unsure_choice(state: GraphState, ctx: RunContext, texts: list[str], supports: list[float],
                   flags: list[str]) -> dict:
    """What to decode with when no rationale was rejected but the image could not tell of some: the
    accepted ones, and the unsure ones as ``on_unsure`` says (the image alone, the rationales at
    their support, or a person)."""
    flags.append("image_unsure")
    statuses = [r.get("status") for r in state["reviews"]]
    accepted = [i for i, status in enumerate(statuses) if status == "accepted"]
    policy = run_setting(state, ctx, "on_unsure")
    if policy == "rationale":
        flags.append("answered_with_unsure_rationale")
        return {"rationales": texts, "weights": supports}
    if policy == "human_review":
        flags.append("human_reviewed")
        return _ask_a_person(state, texts, supports, unsure=True)
    return {"rationales": [texts[i] for i in accepted], "weights": [supports[i] for i in accepted]}


def _ask_a_person(state: GraphState, texts: list[str], supports: list[float], **extra: Any) -> dict:
    """Pause the run for a person (LangGraph ``interrupt``) and return their validated choice."""
    decision = interrupt({"question": state["question"], "rationales": texts, "supports": supports,
                          "critique": state.get("critique", ""), **extra,
                          "resume_with": '{"use": [indices]} or {"rationales": [texts], "weights": [..]} '
                                         'or {"image_only": true}'})
    return human_choice(decision, texts)


def human_choice(decision: Any, texts: list[str]) -> dict:
    """Validate a person's resume value for the human-review policy."""
    if not isinstance(decision, dict):
        raise InputError(f"resume with a dict such as {{'use': [0]}}, got {decision!r:.120}")
    if decision.get("image_only") is True:
        return {"rationales": [], "weights": []}
    if "use" in decision:
        use = decision["use"]
        if not isinstance(use, list) or not all(isinstance(i, int) and 0 <= i < len(texts) for i in use):
            raise InputError(f"'use' must list rationale indices from 0 to {len(texts) - 1}, got {use!r}")
        return {"rationales": [texts[i] for i in use], "weights": [1.0] * len(use)}
    if "rationales" in decision:
        given = decision["rationales"]
        weights = decision.get("weights", [1.0] * len(given) if isinstance(given, list) else None)
        if (not isinstance(given, list) or not all(isinstance(t, str) and t.strip() for t in given)
                or not isinstance(weights, list) or len(weights) != len(given)
                or not all(isinstance(w, (int, float)) and w >= 0 for w in weights)):
            raise InputError(f"'rationales' must be non-empty strings with as many weights >= 0, got {decision!r:.200}")
        return {"rationales": list(given), "weights": [float(w) for w in weights]}
    raise InputError(f"resume value {decision!r:.120} has none of 'use', 'rationales' or 'image_only'")


def answer(state: GraphState, runtime: Runtime[RunContext]) -> dict:
    """Decode with RED; each token is streamed through LangGraph's custom stream mode."""
    from redgraph.agents.answerer import answer_with_red

    ctx = _live_context(runtime)
    started = time.perf_counter()
    write = get_stream_writer()

    def stream(token) -> None:
        if not token.special:  # the end-of-turn token that ends the answer is not part of its text
            write({"token": token.text, "changed_by_rationale": token.changed_by_rationale,
                   "rationale_shift": token.rationale_shift})

    chosen = state["chosen"]
    result = answer_with_red(
        ctx.answerer, _image(state, ctx), state["question"], chosen["rationales"], chosen["weights"],
        rationale_weight=run_setting(state, ctx, "rationale_weight"),
        max_new_tokens=run_setting(state, ctx, "max_new_tokens"),
        on_token=stream,
        should_stop=ctx.should_stop,
    )
    if result.result.finish_reason == "cancelled":
        raise Cancelled("the answer was stopped mid-way: the run's caller went away or its deadline passed")
    record = result.to_dict()
    record["decoded_text"], record["text"] = record["text"], clean_answer(record["text"])
    flags = list(state.get("flags", []))
    if not record["text"]:
        flags.append("empty_answer")  # the model said nothing: shown as such, never as a blank
    readings = [r["reading"] for r in state["rationales"] if r.get("reading") and r["text"] in chosen["rationales"]]
    if readings:
        record["readings"] = readings
        if not any(same_reading(record["text"], reading) for reading in readings):
            flags.append("answer_differs_from_reading")  # RED did not write what the readers read
    event = _event(state, "answer", "answer", inputs=chosen, outputs={**record, "flags": flags},
                   model=_model_ref(ctx.answerer), config=_runtime_of(ctx.answerer), started=started)
    return {"answer": record, "flags": flags, "trace": [event]}


_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|<pad>|<unk>")


def clean_answer(text: str) -> str:
    """An answer as a user reads it: no special tokens, no spaces around it, no trailing period
    (a decimal point inside a number stays)."""
    text = " ".join(_SPECIAL.sub(" ", text).split())
    return text[:-1].rstrip() if text.endswith(".") else text


def same_reading(answer: str, reading: str) -> bool:
    """Whether an answer writes what a reader read (case, spacing, thousands commas and edge
    punctuation aside)."""
    from redgraph.agents.experts import reading_key

    return bool(answer) and reading_key(answer) == reading_key(reading)
