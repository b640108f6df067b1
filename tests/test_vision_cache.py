"""Each picture goes through the vision tower once per model (redgraph.models.vision_cache), and
nothing a user gets changes: the same log-probabilities, supports and answers as without the cache."""

import pytest
import torch

from redgraph.decoding.packing import prefill_packed
from redgraph.decoding.rows import prefill_row
from redgraph.models import build_tiny_lvlm
from redgraph.models.vision_cache import vision_cache_of
from tests.conftest import scene, tiny


def image_prompt(lvlm, picture, question="What colour is the circle?"):
    return lvlm.encode_image_branch(picture, question)


def counting_tower(model):
    """Counts vision-tower passes without a hook (a hook turns the cache off)."""
    visual = model.model.visual
    calls = []
    original = visual.forward

    def forward(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    visual.forward = forward
    return calls, lambda: vars(visual).pop("forward")


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_a_picture_seen_before_skips_the_vision_tower_and_gives_the_same_logprobs(family):
    lvlm = tiny(family)
    cache = vision_cache_of(lvlm.model)
    cache.clear()
    calls, restore = counting_tower(lvlm.model)
    try:
        cache.enabled = False
        plain = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"))).logprobs
        cache.enabled = True
        first = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"))).logprobs
        other_question = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"), "Is there a square?")).logprobs
        again = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"))).logprobs
    finally:
        restore()
    assert calls == [1, 1]  # without the cache, then once for the picture's three prompts
    assert torch.equal(plain, first) and torch.equal(first, again)
    assert not torch.equal(first, other_question)


def test_packed_rows_take_each_picture_computed_alone_and_match_rows_prefilled_alone(qwen):
    cache = vision_cache_of(qwen.model)
    pictures = [scene("red"), scene("green"), scene("red")]
    rows = [image_prompt(qwen, picture) for picture in pictures]
    cache.clear()
    cache.hits = cache.misses = 0
    packed = prefill_packed(qwen.model, rows, pack_tokens=4096)
    assert (cache.misses, cache.hits) == (2, 1)  # the third row's picture is the first's
    cache.enabled = False
    try:
        alone = [prefill_row(qwen.model, row) for row in rows]
    finally:
        cache.enabled = True
    for group, reference in zip(packed, alone):
        torch.testing.assert_close(group.logprobs, reference.logprobs, rtol=1e-5, atol=1e-5)


def test_the_cache_stays_out_of_forwards_with_gradients_and_of_a_watched_vision_tower(qwen):
    cache = vision_cache_of(qwen.model)
    cache.clear()
    passes = []
    handle = qwen.model.model.visual.register_forward_hook(lambda *_: passes.append(1))
    try:
        prefill_row(qwen.model, image_prompt(qwen, scene("red")))
        prefill_row(qwen.model, image_prompt(qwen, scene("red")))
    finally:
        handle.remove()
    assert passes == [1, 1]  # a hook (an SDRT adapter's) sees every pass
    with torch.no_grad():
        assert not cache.usable()  # only under inference_mode
    with torch.inference_mode():
        assert cache.usable()
        qwen.model.model.visual.train()
        try:
            assert not cache.usable()  # nor in training mode (dropout)
        finally:
            qwen.model.model.visual.eval()


def test_changed_vision_weights_drop_the_cached_features():
    lvlm = build_tiny_lvlm("qwen2_vl", seed=3)  # its own model: this test changes its weights
    cache = vision_cache_of(lvlm.model)
    before = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"))).logprobs
    with torch.no_grad():
        next(lvlm.model.model.visual.parameters()).mul_(1.5)  # as an optimiser step would, in place
    cache.hits = cache.misses = 0
    after = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"))).logprobs
    cache.enabled = False
    reference = prefill_row(lvlm.model, image_prompt(lvlm, scene("red"))).logprobs
    assert (cache.hits, cache.misses) == (0, 1)
    assert torch.equal(after, reference) and not torch.equal(before, after)


def test_families_it_does_not_serve_have_no_cache(llava):
    assert vision_cache_of(llava.model) is None


def test_a_graph_run_computes_its_picture_once_and_gives_what_it_gives_without_the_cache(qwen):
    from redgraph.graphs.run import run_graph

    cache = vision_cache_of(qwen.model)

    def run():
        cache.clear()
        cache.hits = cache.misses = 0
        result = run_graph(qwen, scene("red"), "What colour is the circle?", max_new_tokens=6)
        return result.answer, result.verdict, result.rationales, (result.state.get("answer") or {}).get("tokens")

    cached = run()
    use = (cache.hits, cache.misses)
    cache.enabled = False
    try:
        plain = run()
    finally:
        cache.enabled = True
    assert use[1] == 1 and use[0] >= 2  # reasoner prompt, probe prefix, RED's image branch: one pass
    assert cached == plain


# -- the critic's image prefix, once per picture and model (redgraph.decoding.prefix_cache) --------


def probes_of(lvlm, picture):
    from redgraph.decoding.probes import Probe, score_probes

    return score_probes(lvlm, picture, [Probe("What colour is the circle?", "red", ("red", "green", "blue")),
                                        Probe("How many shapes are there?", "2")], max_answer_tokens=3)


def test_a_second_review_of_a_picture_reuses_its_prefix_and_scores_the_same():
    from redgraph.decoding.prefix_cache import prefix_cache_of

    lvlm = tiny("qwen2_vl")
    cache = prefix_cache_of(lvlm.model)
    cache.clear()
    cache.hits = cache.misses = 0
    first = probes_of(lvlm, scene("red"))
    again = probes_of(lvlm, scene("red"))
    other = probes_of(lvlm, scene("green"))
    assert (cache.misses, cache.hits) == (2, 1)
    cache.enabled = False
    try:
        fresh = probes_of(lvlm, scene("red"))
    finally:
        cache.enabled = True
    assert first == again == fresh  # the very numbers of a fresh prefill
    assert other != first


def test_the_prefix_cache_stays_out_of_a_watched_model_and_forgets_changed_weights():
    from redgraph.decoding.prefix_cache import prefix_cache_of

    lvlm = build_tiny_lvlm("qwen2_vl", seed=4)  # its own model: this test changes its weights
    cache = prefix_cache_of(lvlm.model)
    before = probes_of(lvlm, scene("red"))
    layer = lvlm.model.model.language_model.layers[0]
    handle = layer.register_forward_hook(lambda *_: None)  # as an SDRT adapter's edit is hooked in
    try:
        cache.hits = cache.misses = 0
        probes_of(lvlm, scene("red"))
        assert (cache.hits, cache.misses) == (0, 0)  # prefilled, not asked of the cache
    finally:
        handle.remove()
    with torch.no_grad():
        layer.self_attn.q_proj.weight.mul_(3.0)  # in place, as an optimiser step
    after = probes_of(lvlm, scene("red"))
    assert cache.hits == 0 and cache.misses == 1 and after != before
