"""The invariants of shared/DESIGN.md, on tiny random models of every supported family."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers.generation.logits_process import UnbatchedClassifierFreeGuidanceLogitsProcessor

from redgraph.decoding import RationaleEnhancedLogitsProcessor, REDConfig, REDDecoder, REDRequest
from tests.conftest import scene, tiny

QUESTION = "what color is the circle?"
RATIONALES = ("the circle is red so the answer is red", "a blue square is to the right of it")
STEPS = 12


def _decode(lvlm, rationales=RATIONALES[:1], **config):
    config.setdefault("max_new_tokens", STEPS)
    return REDDecoder(lvlm, REDConfig(**config)).decode(scene(), QUESTION, rationales)


def _generate(lvlm, **kwargs):
    inputs = lvlm.encode_image_branch(scene(), QUESTION)
    out = lvlm.model.generate(**inputs, max_new_tokens=STEPS, do_sample=False, **kwargs)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def _assert_same_steps(a, b, tol=1e-4):
    assert a.token_ids == b.token_ids
    for x, y in zip(a.tokens, b.tokens):
        assert abs(x.image_logprob - y.image_logprob) < tol
        assert abs(x.logprob - y.logprob) < tol
        assert all(abs(p - q) < tol for p, q in zip(x.rationale_logprobs, y.rationale_logprobs))


def test_the_image_reaches_every_model(family_lvlm):
    # Guards the other tests: a model that ignored its image would make them too easy.
    red = family_lvlm.encode_image_branch(scene("red"), QUESTION)
    green = family_lvlm.encode_image_branch(scene("green"), QUESTION)
    with torch.no_grad():
        diff = (family_lvlm.model(**red).logits[0, -1] - family_lvlm.model(**green).logits[0, -1]).abs().max()
    assert diff > 1e-3


def test_lambda_zero_is_plain_greedy_generate(family_lvlm):
    expected = _generate(family_lvlm)
    result = _decode(family_lvlm, RATIONALES, rationale_weight=0.0)
    assert len(expected) >= 4
    assert result.token_ids == expected
    assert len(result.tokens[0].rationale_logprobs) == 2  # the rationale branches did run
    assert not any(t.changed_by_rationale for t in result.tokens)


def test_batched_equals_serial(family_lvlm):
    requests = [
        REDRequest(scene("red"), QUESTION, RATIONALES[:1]),
        REDRequest(scene("green", (80, 40)), "is there a square?", RATIONALES, rationale_weights=(2.0, 1.0)),
        REDRequest(scene("blue"), "which shape is left?"),
    ]
    config = dict(rationale_weight=0.9, max_new_tokens=STEPS)
    batched = REDDecoder(family_lvlm, REDConfig(**config)).decode_batch(requests)
    serial = REDDecoder(family_lvlm, REDConfig(batch_branches=False, **config)).decode_batch(requests)
    for a, b in zip(batched, serial):
        _assert_same_steps(a, b)
    # ... and a question decoded in a batch equals it decoded alone.
    alone = REDDecoder(family_lvlm, REDConfig(**config)).decode_batch(requests[1:2])[0]
    _assert_same_steps(batched[1], alone)


def test_logits_processor_path_equals_fast_path(family_lvlm):
    inputs = family_lvlm.encode_image_branch(scene(), QUESTION)
    prompt = inputs["input_ids"].shape[1]
    for rationales in (RATIONALES[:1], RATIONALES):
        fast = _decode(family_lvlm, rationales, rationale_weight=0.8)
        processor = RationaleEnhancedLogitsProcessor.from_rationales(
            family_lvlm, QUESTION, rationales, rationale_weight=0.8
        )
        out = family_lvlm.model.generate(**inputs, logits_processor=[processor], max_new_tokens=STEPS, do_sample=False)
        assert out[0, prompt:].tolist() == fast.token_ids


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_clip", "gemma3"])
def test_one_rationale_through_the_multi_rationale_path_equals_the_single_path(family):
    lvlm = tiny(family)
    single = _decode(lvlm, RATIONALES[:1], rationale_weight=0.7)
    # Two rationale rows, the second with weight 0: the multi-rationale machinery, one rationale.
    multi = REDDecoder(lvlm, REDConfig(rationale_weight=0.7, max_new_tokens=STEPS)).decode(
        scene(), QUESTION, RATIONALES, rationale_weights=(1.0, 0.0)
    )
    assert multi.token_ids == single.token_ids
    for x, y in zip(multi.tokens, single.tokens):
        assert abs(x.score - y.score) < 1e-5


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "llava_siglip", "gemma3"])
def test_scores_match_the_closed_form_from_uncached_forwards(family):
    """Each step's branch log-probs equal full forwards of prompt + answer so far, without any cache."""
    lvlm = tiny(family)
    lam = (0.6, 0.3)
    result = REDDecoder(lvlm, REDConfig(rationale_weight=sum(lam), rationale_weights=lam, max_new_tokens=6)).decode(
        scene(), QUESTION, RATIONALES
    )
    image_inputs = lvlm.encode_image_branch(scene(), QUESTION)
    rationale_inputs = [lvlm.encode_rationale_branch(r, QUESTION) for r in RATIONALES]

    def next_logprobs(inputs, answer):
        extended = dict(inputs)
        extended["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([answer], dtype=torch.long)], dim=1)
        extended["attention_mask"] = torch.ones_like(extended["input_ids"])
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in inputs:
                extended[key] = torch.cat([inputs[key], torch.zeros(1, len(answer), dtype=inputs[key].dtype)], dim=1)
        with torch.no_grad():
            return lvlm.model(**extended).logits[0, -1].float().log_softmax(-1)

    for step, token in enumerate(result.tokens):
        answer = result.token_ids[:step]
        image = next_logprobs(image_inputs, answer)
        rationales = [next_logprobs(inputs, answer) for inputs in rationale_inputs]
        closed_form = image + lam[0] * rationales[0] + lam[1] * rationales[1]
        assert token.token_id == int(closed_form.argmax())
        assert token.image_logprob == pytest.approx(float(image[token.token_id]), abs=1e-4)
        assert token.rationale_logprobs == pytest.approx([float(r[token.token_id]) for r in rationales], abs=1e-4)
        assert token.score == pytest.approx(float(closed_form[token.token_id]), abs=1e-4)
        assert token.image_choice == int(image.argmax())
        red = closed_form.log_softmax(-1)
        assert token.rationale_shift == pytest.approx(float((red.exp() * (red - image)).sum()), abs=1e-4)


@pytest.mark.parametrize("family", ["llava_clip", "llava_siglip"])
@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_transformers_cfg_processor_is_an_independent_oracle(family, lam):
    # CFG computes g*log p_cond + (1-g)*log p_uncond; with the rationale prompt as the "negative"
    # prompt and g = 1/(1+lambda) that is RED / (1+lambda): the same greedy tokens.
    lvlm = tiny(family)
    rationale = lvlm.encode_rationale_branch(RATIONALES[0], QUESTION)
    oracle = UnbatchedClassifierFreeGuidanceLogitsProcessor(
        1 / (1 + lam), lvlm.model,
        unconditional_ids=rationale["input_ids"], unconditional_attention_mask=rationale["attention_mask"],
    )
    assert _generate(lvlm, logits_processor=[oracle]) == _decode(lvlm, rationale_weight=lam).token_ids


def test_rationale_changes_the_answer_when_weighted_heavily(qwen):
    plain = _decode(qwen, rationale_weight=0.0)
    heavy = _decode(qwen, rationale_weight=5.0)
    assert heavy.changed_tokens > 0
    assert heavy.token_ids != plain.token_ids
    assert plain.rationale_dependence < 1e-5 < heavy.rationale_dependence


def test_sampling_is_reproducible_by_seed_and_independent_of_batching(qwen):
    config = dict(rationale_weight=0.5, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, max_new_tokens=STEPS)
    first = _decode(qwen, seed=7, **config)
    again = _decode(qwen, seed=7, **config)
    other = _decode(qwen, seed=8, **config)
    assert first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids
    requests = [REDRequest(scene(), QUESTION, RATIONALES[:1]), REDRequest(scene("green"), QUESTION)]
    batched = REDDecoder(qwen, REDConfig(seed=7, **config)).decode_batch(requests)
    assert batched[0].token_ids == first.token_ids


def test_two_decoders_in_two_threads_match_each_alone(qwen):
    jobs = {
        "plain": (REDConfig(rationale_weight=0.0, max_new_tokens=STEPS), scene("red"), RATIONALES[:1]),
        "red": (REDConfig(rationale_weight=2.0, max_new_tokens=STEPS), scene("green"), RATIONALES),
    }
    alone = {name: REDDecoder(qwen, cfg).decode(img, QUESTION, rs).token_ids for name, (cfg, img, rs) in jobs.items()}
    together: dict[str, list] = {name: [] for name in jobs}
    errors = []

    def run(name):
        cfg, img, rs = jobs[name]
        try:
            for _ in range(4):
                together[name].append(REDDecoder(qwen, cfg).decode(img, QUESTION, rs).token_ids)
        except Exception as exc:  # surfaced below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for name in jobs:
        assert together[name] == [alone[name]] * 4
    assert alone["plain"] != alone["red"]


def test_streaming_callback_sees_every_token_in_order(qwen):
    requests = [REDRequest(scene(), QUESTION, RATIONALES[:1]), REDRequest(scene("green"), "is it big?")]
    seen: list[tuple[int, int]] = []
    results = REDDecoder(qwen, REDConfig(max_new_tokens=STEPS)).decode_batch(
        requests, on_token=lambda index, token: seen.append((index, token.token_id))
    )
    for index, result in enumerate(results):
        assert [t for i, t in seen if i == index] == result.token_ids


def test_eos_and_stop_strings_end_the_answer(llava):
    full = _decode(llava)
    assert full.finish_reason == "length" and len(full.token_ids) == STEPS
    eos = full.token_ids[3]
    ended = _decode(llava, eos_token_ids=(eos,))
    assert ended.finish_reason == "eos"
    assert ended.token_ids == full.token_ids[: full.token_ids.index(eos) + 1]
    stop = next(t.text.strip() for t in full.tokens[2:] if t.text.strip() and "\ufffd" not in t.text)
    stopped = _decode(llava, stop_strings=(stop,))
    assert stopped.finish_reason == "stop"
    assert stopped.text == full.text[: full.text.index(stop)]
    assert len(stopped.token_ids) < STEPS
