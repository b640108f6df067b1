"""The answerer: RED over the image and the accepted rationales, weighted by the critic's support.

Support is an absolute weight: rationale k gets ``lambda_k = rationale_weight * s_k``, with ``s_k``
its (calibrated) support, the probability that its claims hold. A weakly supported rationale
weighs little even when it is the only one; the decoder records each ``lambda_k`` it used
(``rationale_lambdas``), and the graph's trace keeps that record.

Example:
    >>> answer = answer_with_red(lvlm, "chart.png", "Which bar is the tallest?",
    ...                          ["The red bar is 9."], [0.93], rationale_weight=1.0)  # doctest: +SKIP
    >>> answer.result.text, answer.result.rationale_dependence  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redgraph.decoding.config import REDConfig
from redgraph.decoding.decoder import REDDecoder, REDRequest, REDResult, TokenAttribution
from redgraph.decoding.combining import combiner_of
from redgraph.models.images import ImageInput


@dataclass(frozen=True)
class Answer:
    """The decoded answer and the rationales (with the critic's weights) it was decoded with."""

    result: REDResult
    rationales: tuple[str, ...]
    weights: tuple[float, ...]

    def to_dict(self) -> dict:
        """JSON-ready record: the RED result's (text, how it ended, per-token attribution, rationale
        dependence) with the rationales and weights it was decoded with."""
        return {**self.result.to_dict(), "rationales": list(self.rationales), "weights": list(self.weights)}


def answer_with_red(
    lvlm,
    image: ImageInput,
    question: str,
    rationales: Sequence[str],
    weights: Sequence[float] | None,
    *,
    rationale_weight: float,
    max_new_tokens: int = 16,
    on_token: Callable[[TokenAttribution], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Answer:
    """Decode the answer; with no rationale of positive weight it is the image branch's greedy answer.

    ``weights`` are absolute (the critic's support, from 0 to 1; None: 1 each): RED gives rationale
    k the weight ``rationale_weight * w_k``, not a share of ``rationale_weight``. Rationales of
    weight 0 are left out.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rationales)
    kept = [(r, float(w)) for r, w in zip(rationales, weights, strict=True) if w > 0]
    lambdas = [rationale_weight * w for _, w in kept]
    # The decoder splits a total by relative weights: a total of sum(lambda_k), split by lambda_k,
    # gives each rationale its own lambda_k.
    # Concurrent answers (graph runs in threads) share the model's running batch: each request
    # carries its own total, so runs of different supports decode together
    # (redgraph.decoding.combining).
    config = REDConfig(rationale_weight=0.0, max_new_tokens=max_new_tokens)
    request = REDRequest(image, question, tuple(r for r, _ in kept),
                         tuple(lambdas) if kept and sum(lambdas) > 0 else None, should_stop,
                         rationale_weight=sum(lambdas))

    combiner = combiner_of(lvlm)
    if combiner.steps:
        [result] = combiner.run_steps(REDDecoder(lvlm, config).steps([request]), on_note=on_token)
    else:  # a family whose rows cannot join a running batch: concurrent answers share one decode_batch

        def together(requests: list[REDRequest], note) -> list[REDResult]:
            return REDDecoder(lvlm, config).decode_batch(requests, on_token=note)

        result = combiner.run(("red", config), request, together, on_note=on_token)
    return Answer(result, tuple(r for r, _ in kept), tuple(w for _, w in kept))
