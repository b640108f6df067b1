"""Claims scored in one shared-prefix batch equal each claim's full prompt run alone."""

import pytest
import torch

from redgraph.decoding.claim_scoring import claim_support, yes_no_token_ids
from redgraph.errors import InputError
from tests.conftest import scene, tiny

CLAIMS = ["There is a red circle.", "The square is blue.", "The red circle is left of the blue square.",
          "There are 2 shapes.", "no"]


def _alone(lvlm, claim):
    yes_id, no_id = yes_no_token_ids(lvlm.tokenizer)
    inputs = lvlm.encode_claim_check(scene(), claim)
    with torch.no_grad():
        logits = lvlm.model(**inputs).logits[0, -1].float()
    return float(torch.softmax(logits[[yes_id, no_id]], dim=-1)[0])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "llava_clip", "idefics3", "gemma3"])
def test_shared_prefix_equals_each_claim_alone(family, monkeypatch):
    from redgraph.decoding import claim_scoring

    lvlm = tiny(family)
    prefills = []
    real = claim_scoring.prefill_row
    monkeypatch.setattr(claim_scoring, "prefill_row", lambda *a: prefills.append(1) or real(*a))
    batched = claim_support(lvlm, scene(), CLAIMS)
    assert len(prefills) == 1  # one image prefill for all five claims
    assert batched == pytest.approx([_alone(lvlm, c) for c in CLAIMS], abs=1e-5)
    assert claim_support(lvlm, scene(), CLAIMS[1:2]) == pytest.approx(batched[1:2], abs=1e-5)


def test_the_image_matters():
    lvlm = tiny("qwen2_vl")
    assert claim_support(lvlm, scene("red"), CLAIMS[:1]) != claim_support(lvlm, scene("green"), CLAIMS[:1])


def test_bad_claims_are_named():
    lvlm = tiny("llava_clip")
    assert claim_support(lvlm, scene(), []) == []
    with pytest.raises(InputError, match="claim 1"):
        claim_support(lvlm, scene(), ["ok.", "  "])
