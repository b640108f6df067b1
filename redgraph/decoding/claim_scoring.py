"""Checking many claims against one image in one batch that shares the image prefix.

The claim-check prompt is split just before the claim: the prefix (image + instruction) is
prefilled once, its cache is repeated for every claim, and all claim suffixes run in one forward,
right-padded; each claim is read at its own last token. Causal attention makes this exact: a
claim's tokens see the prefix and themselves only, so every score equals that of the claim's
full prompt run alone (tests check this on several families).

Shapes: N claims; S longest suffix; V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from redgraph.decoding.rows import prefill_row
from redgraph.errors import InputError
from redgraph.models import prompts
from redgraph.models.images import ImageInput, ready_image

_SENTINEL = "\u2063CLAIM\u2063"


def split_prompt(processor, fmt: prompts.PromptFormat) -> tuple[str, str]:
    """The claim-check prompt as (text before the claim, text after it), split before any space."""
    text = prompts.claim_check_text(processor, _SENTINEL, fmt)
    before, after = text.split(_SENTINEL)
    stripped = before.rstrip(" ")
    return stripped, before[len(stripped) :] + "{claim}" + after


def yes_no_token_ids(tokenizer) -> tuple[int, int]:
    """The first token of "yes" and of "no" as an answer begins."""
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in ("yes", "no")]
    if not ids[0] or not ids[1] or ids[0][0] == ids[1][0]:
        raise InputError("this tokenizer cannot tell 'yes' from 'no' by their first token; claim scoring needs it")
    return ids[0][0], ids[1][0]


@torch.inference_mode()
def claim_support(lvlm, image: ImageInput, claims: Sequence[str]) -> list[float]:
    """P(yes) / (P(yes) + P(no)) for each claim about ``image``, as the answer's first token.

    Raises:
        InputError: a claim is not a non-empty string, or the image cannot be read.
    """
    claims = list(claims)
    for index, claim in enumerate(claims):
        if not isinstance(claim, str) or not claim.strip():
            raise InputError(f"claim {index} must be a non-empty string, got {claim!r:.80}")
    if not claims:
        return []
    picture = ready_image(image, max_pixels=lvlm.max_image_pixels)
    tokenizer = lvlm.tokenizer
    yes_id, no_id = yes_no_token_ids(tokenizer)
    prefix_text, suffix_template = split_prompt(lvlm.processor, lvlm.prompt_format)
    prefix_ids = tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
    suffixes = []
    for claim in claims:
        suffix_ids = tokenizer(suffix_template.format(claim=claim), add_special_tokens=False)["input_ids"]
        whole = tokenizer(prefix_text + suffix_template.format(claim=claim), add_special_tokens=False)["input_ids"]
        # Exact only where the split does not change how the text tokenises; else the claim runs alone.
        suffixes.append(suffix_ids if whole == prefix_ids + suffix_ids else None)
    scores: list[float | None] = [None] * len(claims)
    shared = [i for i, s in enumerate(suffixes) if s is not None]
    if shared:
        prefix = lvlm.processor(text=[prefix_text], images=[picture], return_tensors="pt").to(lvlm.device)
        logprobs = _score_suffixes(lvlm.model, prefix, [suffixes[i] for i in shared])  # (n, V)
        for row, index in enumerate(shared):
            scores[index] = _support(logprobs[row], yes_id, no_id)
    for index, suffix in enumerate(suffixes):
        if suffix is None:
            alone = prefill_row(lvlm.model, lvlm.encode_claim_check(picture, claims[index]))
            scores[index] = _support(alone.logprobs[0], yes_id, no_id)
    return [float(s) for s in scores]


def _support(logprobs: torch.Tensor, yes_id: int, no_id: int) -> float:
    pair = logprobs[[yes_id, no_id]]
    return float(torch.softmax(pair, dim=-1)[0])


def _score_suffixes(model, prefix_inputs, suffixes: list[list[int]]) -> torch.Tensor:
    """(N, V) next-token log-probs after prefix + each suffix, the prefix computed once."""
    rows = prefill_row(model, prefix_inputs).repeated([0] * len(suffixes))  # the prefix cache, once per claim
    rows.extend(suffixes)
    return rows.logprobs
