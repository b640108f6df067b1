"""A reasoner that lies (its rationale contradicts the image) is caught through the graph: the
critic asks the image the questions behind each claim, the loop revises, then answers from the
image alone; honest rationales are accepted.

The critic is as good as the model's eyes. With the reference checkpoint in
``../shared/checkpoints/embedded-gpu-570k`` (a development aid, not shipped), which reads bar charts
(image answers 1.00 held out), lies about bars are caught. The shipped embedded model compares bars
(0.98 held out) but reads only half their values (bar values 0.49): it catches all 12 lies but
accepts 4 of 12 honest rationales, so that test is a strict xfail, to turn the suite red the day the
shipped model sees and this note must change."""

from __future__ import annotations

from pathlib import Path

import pytest

from redgraph.agents import LocalCritic, ScriptedReasoner
from redgraph.data import generate_items
from redgraph.graphs import RunContext, ask
from redgraph.models.embedded import load_embedded

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "checkpoints" / "embedded-gpu-570k"
BAR_ITEMS = [item for item in generate_items("test", 36, seed=0) if item.kind == "bars"]


def _run(lvlm, item, rationale, tmp_path):
    reasoner = ScriptedReasoner([rationale])
    context = RunContext(answerer=lvlm, reasoner=reasoner, critic=LocalCritic(lvlm), rounds=2,
                         on_exhausted="image_only", max_new_tokens=6)
    path = tmp_path / f"{item.question_id}.png"
    item.image().save(path)
    return ask(path, item.question, context, checkpoint="memory"), reasoner


def _caught_and_accepted(lvlm, tmp_path) -> tuple[int, int]:
    caught = accepted = 0
    for item in BAR_ITEMS:
        lie, liar = _run(lvlm, item, item.misleading_rationale, tmp_path)
        if lie.outcome == "image_only":
            caught += 1
            assert lie.flags == ["rationales_rejected_answered_from_image"]
            assert [h["verdict"] for h in lie.state["history"]] == ["revise", "revise"]
            assert "not supported by the image: asked" in liar.critiques[1]
            assert lie.state["answer"]["rationales"] == []  # the lie never reaches the answerer
        honest, _ = _run(lvlm, item, item.gold_rationale, tmp_path)
        accepted += honest.outcome == "accepted"
    return caught, accepted


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"the reference checkpoint is not at {REFERENCE}")
def test_lies_about_bar_charts_are_caught_with_a_model_that_reads_them(tmp_path):
    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(REFERENCE)
    assert len(BAR_ITEMS) == 12
    caught, accepted = _caught_and_accepted(lvlm, tmp_path)
    assert caught >= 11 and accepted >= 10, (caught, accepted)  # measured: 12 and 11 of 12
    # The critique names what the image answered: here, the bar's true value.
    item = next(i for i in BAR_ITEMS if i.category == "bar_value")
    _, liar = _run(lvlm, item, item.misleading_rationale, tmp_path)
    assert f'asked "{item.question}", the image answers {item.answer} (p ' in liar.critiques[1]


@pytest.mark.xfail(strict=True, reason="the shipped embedded model reads half the bar values (0.49 held out, "
                   "BENCHMARKS.md), so its critic rejects most honest rationales about them (8 of 12)")
def test_the_shipped_model_catches_lies_and_accepts_honest_rationales(tmp_path):
    caught, accepted = _caught_and_accepted(load_embedded(), tmp_path)
    assert caught >= 10 and accepted >= 10, (caught, accepted)
