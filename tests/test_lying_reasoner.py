"""A reasoner that lies (its rationale contradicts the image) is caught through the graph: the
critic asks the image the questions behind each claim, the loop revises, then answers from the
image alone; honest rationales are accepted.

The critic is as good as the model's eyes. The shipped embedded model reads bar values (1.00 held
out, BENCHMARKS.md): it catches all 12 lies about bars and accepts all 12 honest rationales. The
reference checkpoint in ``../shared/checkpoints/embedded-gpu-570k`` (a development aid, not shipped)
reads them too."""

from __future__ import annotations

import pytest

from redgraph.agents import LocalCritic, ScriptedReasoner
from redgraph.data import generate_items
from redgraph.graphs import RunContext, ask
from redgraph.models.embedded import load_embedded
from tests.conftest import NO_REFERENCE, reference_checkpoint

REFERENCE = reference_checkpoint()
BAR_ITEMS = [item for item in generate_items("test", 36, seed=0) if item.kind == "bars"]


def _run(lvlm, item, rationale, tmp_path):
    reasoner = ScriptedReasoner([rationale])
    context = RunContext(answerer=lvlm, reasoner=reasoner, critic=LocalCritic(lvlm), rounds=2, max_new_tokens=6)
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


@pytest.mark.skipif(REFERENCE is None, reason=NO_REFERENCE)
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


def test_the_shipped_model_catches_lies_and_accepts_honest_rationales(tmp_path):
    caught, accepted = _caught_and_accepted(load_embedded(), tmp_path)
    assert caught >= 11 and accepted >= 11, (caught, accepted)  # measured: 12 and 12 of 12
