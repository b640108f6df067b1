"""Packed prefill: every branch row of every request in one forward, equal to prefilling each alone."""

from __future__ import annotations

import pytest
import torch

from redgraph.decoding import REDConfig, REDDecoder, REDRequest
from redgraph.decoding.branches import BranchSet
from redgraph.decoding.packing import auto_pack_tokens, pack_blocker, prefill_packed
from redgraph.decoding.rows import prefill_row
from redgraph.errors import ConfigError
from tests.conftest import scene, tiny

QUESTION = "what color is the circle?"
RATIONALES = ("the circle is red so the answer is red", "a blue square is to the right of it")
PACKABLE = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_clip", "llava_siglip", "idefics3", "smolvlm"]


def _rows(lvlm):
    """Two requests' rows: image branches of two different pictures, rationale rows of other lengths."""
    return [
        lvlm.encode_image_branch(scene("red"), QUESTION),
        lvlm.encode_rationale_branch(RATIONALES[0], QUESTION),
        lvlm.encode_image_branch(scene("green", (80, 40)), "is there a square?"),
        lvlm.encode_rationale_branch(RATIONALES[1], "is there a square?"),
        lvlm.encode_rationale_branch("yes", "is there a square?"),
    ]


@pytest.mark.parametrize("family", PACKABLE)
@pytest.mark.parametrize("bin_tokens", [0, 10_000])  # bins of one row each (padded batch) / one bin for all
def test_a_packed_prefill_equals_each_row_alone(family, bin_tokens):
    lvlm = tiny(family)
    rows = _rows(lvlm)
    assert pack_blocker(lvlm.model, rows) is None
    packed = prefill_packed(lvlm.model, rows, pack_tokens=bin_tokens)
    for row, group in zip(rows, packed):
        alone = prefill_row(lvlm.model, row)
        assert group.lengths.tolist() == alone.lengths.tolist() == [row["input_ids"].shape[1]]
        assert (group.logprobs - alone.logprobs).abs().max() < 1e-4
        for mine, theirs in zip(group.cache.layers, alone.cache.layers):
            assert mine.keys.shape == theirs.keys.shape
            assert (mine.keys - theirs.keys).abs().max() < 1e-4
            assert (mine.values - theirs.values).abs().max() < 1e-4
        if alone.rope_deltas is None:
            assert group.rope_deltas is None
        else:
            assert torch.equal(group.rope_deltas, alone.rope_deltas)  # Qwen's 3-D positions, row by row


def test_rows_fill_bins_and_the_bins_pad_to_the_fullest():
    # Bins of 60 tokens: the rows do not fit one bin, so some bins are padded; results still exact.
    lvlm = tiny("qwen2_vl")
    rows = _rows(lvlm)
    lengths = [row["input_ids"].shape[1] for row in rows]
    assert max(lengths) < 60 < sum(lengths)
    for row, group in zip(rows, prefill_packed(lvlm.model, rows, pack_tokens=60)):
        assert (group.logprobs - prefill_row(lvlm.model, row).logprobs).abs().max() < 1e-4


def test_all_rows_of_a_batch_prefill_in_one_forward_and_long_rows_alone():
    lvlm = tiny("qwen2_vl")
    rows = [((q, k), inputs) for q, inputs in enumerate(_rows(lvlm)) for k in (-1,)]
    calls = []
    hook = lvlm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        assert BranchSet(lvlm.model, rows, batched=True, pack_tokens=4096).prefill_forwards == len(calls) == 1
        calls.clear()
        longest = max(inputs["input_ids"].shape[1] for _, inputs in rows)
        long_rows = sum(inputs["input_ids"].shape[1] > longest - 1 for _, inputs in rows)
        branches = BranchSet(lvlm.model, rows, batched=True, pack_tokens=longest - 1)
        assert branches.prefill_forwards == len(calls) == long_rows + 1  # the longest row runs alone
        calls.clear()
        assert BranchSet(lvlm.model, rows, batched=True, pack_tokens=0).prefill_forwards == len(calls) == len(rows)
        calls.clear()
        assert BranchSet(lvlm.model, rows, batched=False, pack_tokens=4096).prefill_forwards == len(rows)
    finally:
        hook.remove()


@pytest.mark.parametrize("family", PACKABLE)
def test_decoding_with_packed_prefill_equals_rows_prefilled_alone(family):
    lvlm = tiny(family)
    requests = [
        REDRequest(scene("red"), QUESTION, RATIONALES[:1]),
        REDRequest(scene("green", (80, 40)), "is there a square?", RATIONALES, rationale_weights=(2.0, 1.0)),
        REDRequest(scene("blue"), "which shape is left?"),
    ]
    results = {
        pack: REDDecoder(lvlm, REDConfig(rationale_weight=0.9, max_new_tokens=10, pack_tokens=pack)).decode_batch(requests)
        for pack in (0, 4096)
    }
    for packed, alone in zip(results[4096], results[0]):
        assert packed.token_ids == alone.token_ids
        for x, y in zip(packed.tokens, alone.tokens):
            assert abs(x.image_logprob - y.image_logprob) < 1e-4
            assert all(abs(p - q) < 1e-4 for p, q in zip(x.rationale_logprobs, y.rationale_logprobs))


def test_families_where_packing_is_not_exact_are_prefilled_row_by_row():
    gemma = tiny("gemma3")
    assert "sliding_attention" in pack_blocker(gemma.model, _rows(gemma))  # and bidirectional image tokens
    rows = [((0, -1), gemma.encode_image_branch(scene(), QUESTION)),
            ((0, 0), gemma.encode_rationale_branch(RATIONALES[0], QUESTION))]
    assert BranchSet(gemma.model, rows, batched=True, pack_tokens=4096).prefill_forwards == 2


def test_images_of_different_sizes_are_not_stacked():
    lvlm = tiny("llava_clip")
    small = lvlm.encode_image_branch(scene(), QUESTION)
    odd = dict(small, pixel_values=torch.zeros(1, 3, 32, 32))
    assert "different sizes" in pack_blocker(lvlm.model, [small, odd])


def test_the_bin_size_is_checked_and_chosen_by_device():
    assert auto_pack_tokens("cuda") == 4096 and auto_pack_tokens("cpu") == 256
    assert REDConfig().pack_tokens is None
    for bad in (-1, 1.5, True, "256"):
        with pytest.raises(ConfigError, match="pack_tokens"):
            REDConfig(pack_tokens=bad)
