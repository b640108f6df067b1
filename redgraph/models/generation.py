"""Plain batched generation from chat-rendered prompts (the reasoner, the evaluation)."""

from __future__ import annotations

import itertools

import torch


def encode_batch(lvlm, texts: list[str], images):
    """Left-padded model inputs for chat-rendered ``texts`` (with one image each, or none)."""
    kwargs = {"images": images} if images is not None else {}
    return lvlm.processor(text=texts, return_tensors="pt", padding=True, padding_side="left", **kwargs).to(lvlm.device)


def generate_text(
    lvlm, texts: list[str], images, max_new_tokens: int, *, temperature: float | None = None, seed: int | None = None
) -> list[str]:
    """Answers to chat-rendered prompts in one left-padded batch: greedy, or sampled at ``temperature``.

    Sampling is seeded through its own generator state (``seed``), leaving torch's global RNG as it was.
    Greedy calls made at the same time from several threads (concurrent graph runs) share one
    batch (:mod:`redgraph.models.combining`); a call alone runs as it is.
    """
    if temperature is not None:
        return _generate(lvlm, texts, images, max_new_tokens, temperature=temperature, seed=seed)
    from redgraph.models.combining import combiner_of

    def together(items: list, _note) -> list[list[str]]:
        merged = _generate(lvlm, [t for texts_, _ in items for t in texts_],
                           None if images is None else [i for _, images_ in items for i in images_], max_new_tokens)
        ends = list(itertools.accumulate(len(texts_) for texts_, _ in items))
        return [merged[end - len(texts_):end] for end, (texts_, _) in zip(ends, items)]

    return combiner_of(lvlm).run(("generate", max_new_tokens, images is None), (list(texts), images), together)


@torch.inference_mode()
def _generate(
    lvlm, texts: list[str], images, max_new_tokens: int, *, temperature: float | None = None, seed: int | None = None
) -> list[str]:
    tokenizer = lvlm.tokenizer
    inputs = encode_batch(lvlm, texts, images)
    lvlm.check_fits(inputs, max_new_tokens, "prompt")  # before the forward, not after minutes of it
    sampling = {"do_sample": False}
    if temperature is not None:
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        output = lvlm.model.generate(
            **inputs, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **sampling,
        )
    new = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
