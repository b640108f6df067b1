"""Plain batched generation through ``generate`` from chat-rendered prompts (sampling; the families
whose rows cannot share a running batch). Greedy generation for the agents and the evaluation is
:func:`redgraph.decoding.generate.generate_text`."""

from __future__ import annotations

import torch


def encode_batch(lvlm, texts: list[str], images):
    """Left-padded model inputs for chat-rendered ``texts`` (with one image each, or none).

    The images go as one list per prompt: the processors of SmolVLM and Gemma 3 refuse a flat
    list of several (they take it as several images of one prompt)."""
    kwargs = {"images": [[image] for image in images]} if images is not None else {}
    return lvlm.processor(text=texts, return_tensors="pt", padding=True, padding_side="left", **kwargs).to(lvlm.device)


@torch.inference_mode()
def generate_with_hf(
    lvlm, texts: list[str], images, max_new_tokens: int, *, temperature: float | None = None, seed: int | None = None
) -> list[str]:
    """Answers to chat-rendered prompts in one left-padded batch through ``generate``: greedy, or
    sampled at ``temperature`` (seeded through its own generator state, ``seed``, leaving torch's
    global RNG as it was). :func:`redgraph.decoding.generate.generate_text` is the front door."""
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
