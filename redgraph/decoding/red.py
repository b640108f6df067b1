"""RED, the formula: ``score = log_softmax(image branch) + sum_k lambda_k * log_softmax(rationale branch k)``.

This file is the method; the rest of :mod:`redgraph.decoding` is plumbing (branch rows and their
KV caches, batching, streaming, the ``LogitsProcessor``). No model is involved here.

Shapes, used throughout:
    N: questions decoded together; K: rationales of a question; V: vocabulary size.
"""

from __future__ import annotations

import torch

from redgraph.errors import ConfigError, check_rationale_weights


def rationale_lambdas(rationale_weight: float, weights: tuple[float, ...] | None, count: int) -> tuple[float, ...]:
    """Per-rationale lambda_k = rationale_weight * w_k / sum(w); equal shares when ``weights`` is None."""
    if weights is None:
        weights = (1.0,) * count
    weights = check_rationale_weights(weights)
    if len(weights) != count:
        raise ConfigError(
            f"got {len(weights)} rationale weights {weights!r} for {count} rationale(s); give one weight per rationale"
        )
    total = sum(weights)
    return tuple(rationale_weight * w / total for w in weights)


def red_scores(image_logprobs: torch.Tensor, rationale_logprobs: torch.Tensor, lambdas: torch.Tensor) -> torch.Tensor:
    """``log p_img + sum_k lambda_k log p_{r_k}``; a new tensor, inputs untouched.

    Args:
        image_logprobs: (N, V) log-probabilities of the image branch.
        rationale_logprobs: (N, K, V) log-probabilities of the rationale branches.
        lambdas: (N, K) weight of each rationale branch; K may be 0.

    Terms with lambda_k == 0 are skipped rather than multiplied, so a -inf log-probability in an
    ignored branch cannot turn the score into NaN, and lambda = 0 returns the image branch exactly.
    """
    scores = image_logprobs.clone()  # (N, V)
    if rationale_logprobs.shape[1] == 0:
        return scores
    weighted = lambdas[..., None].to(rationale_logprobs.dtype) * rationale_logprobs  # (N, K, V)
    weighted = torch.where(lambdas[..., None] == 0, torch.zeros_like(weighted), weighted)
    return scores + weighted.sum(dim=1)  # (N, V)


def sampling_logits(scores: torch.Tensor, *, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering of (N, V) scores; filtered entries are -inf."""
    logits = scores / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token once the mass before it already reaches top_p; the first token always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits
