"""With the embedded model as critic, a reasoner that lies (its rationale contradicts the image) is
caught: the loop revises, then applies the policy; honest rationales are accepted.

Expected to fail until the embedded model checks claims better than chance: strict, so that it
turns the suite red the day it starts passing and this note is updated."""

from __future__ import annotations

import pytest

from redgraph.agents import LocalCritic, ScriptedReasoner
from redgraph.data import generate_items
from redgraph.graphs import RunContext, ask
from redgraph.models.embedded import load_embedded

ITEMS = list(generate_items("test", 12, seed=0))


@pytest.fixture(scope="module")
def lvlm():
    return load_embedded()


def _run(lvlm, item, rationale, tmp_path):
    reasoner = ScriptedReasoner([rationale])
    context = RunContext(answerer=lvlm, reasoner=reasoner, critic=LocalCritic(lvlm), rounds=2,
                         on_exhausted="image_only", max_new_tokens=6)
    path = tmp_path / f"{item.question_id}.png"
    item.image().save(path)
    return ask(path, item.question, context, checkpoint="memory"), reasoner


@pytest.mark.xfail(strict=True, reason="the embedded model's claim checks are at chance (claim_verification_acc "
                   "0.50 held out, BENCHMARKS.md), so its critic cannot yet tell a lie from the truth")
def test_lies_are_caught_and_honest_rationales_accepted(lvlm, tmp_path):
    caught = accepted = 0
    for item in ITEMS:
        lie, liar = _run(lvlm, item, item.misleading_rationale, tmp_path)
        if lie.outcome == "image_only":
            caught += 1
            assert lie.flags == ["rationales_rejected_answered_from_image"]
            assert [h["verdict"] for h in lie.state["history"]] == ["revise", "revise"]
            assert liar.critiques[1] and "not supported by the image" in liar.critiques[1]
            assert lie.state["answer"]["rationales"] == []  # the lie never reaches the answerer
        honest, _ = _run(lvlm, item, item.gold_rationale, tmp_path)
        accepted += honest.outcome == "accepted"
    assert caught >= 10 and accepted >= 10, (caught, accepted)
