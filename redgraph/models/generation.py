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


class _StopRows:
    """A ``generate`` stopping criterion: row i ends once ``checks[i]()`` is True (None: never)."""

    def __init__(self, checks: list) -> None:
        self.checks = checks
        self.stopped = [False] * len(checks)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        for row, check in enumerate(self.checks):
            if not self.stopped[row] and check is not None and check():
                self.stopped[row] = True
        return torch.tensor(self.stopped, dtype=torch.bool, device=input_ids.device)  # (B,)


@torch.inference_mode()
def generate_with_hf(
    lvlm, texts: list[str], images, max_new_tokens: int, *, temperature: float | None = None, seed: int | None = None,
    should_stop: list | None = None,
) -> list[str | None]:
    """Answers to chat-rendered prompts in one left-padded batch through ``generate``: greedy, or
    sampled at ``temperature`` (seeded through its own generator state, ``seed``, leaving torch's
    global RNG as it was). ``should_stop``: a check per prompt (or None), asked after every token; a
    prompt whose check turned True ends there and its answer is None (its caller was cancelled).
    :func:`redgraph.decoding.generate.generate_text` is the front door."""
    tokenizer = lvlm.tokenizer
    inputs = encode_batch(lvlm, texts, images)
    lvlm.check_fits(inputs, max_new_tokens, "prompt")  # before the forward, not after minutes of it
    options: dict = {"do_sample": False}
    if temperature is not None:
        options = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    stops = _StopRows(list(should_stop)) if should_stop is not None and any(should_stop) else None
    if stops is not None:
        from transformers import StoppingCriteriaList

        options["stopping_criteria"] = StoppingCriteriaList([stops])
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        output = lvlm.model.generate(
            **inputs, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **options,
        )
    new = output[:, inputs["input_ids"].shape[1] :]
    texts_out = [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return texts_out if stops is None else [None if gone else text for text, gone in zip(texts_out, stops.stopped)]
