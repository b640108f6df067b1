"""The answerer: RED over the image and the accepted rationales, weighted by the critic's support.

Example:
    >>> answer = answer_with_red(lvlm, "chart.png", "Which bar is the tallest?",
    ...                          ["The red bar is 9."], [0.93], rationale_weight=1.0)  # doctest: +SKIP
    >>> answer.result.text, answer.result.rationale_dependence  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redgraph.decoding.config import REDConfig
from redgraph.decoding.decoder import REDDecoder, REDResult, TokenAttribution
from redgraph.models.images import ImageInput


@dataclass(frozen=True)
class Answer:
    """The decoded answer and the rationales (with relative weights) it was decoded with."""

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

    ``weights`` are relative (the critic's support); RED gives rationale k the weight
    ``rationale_weight * w_k / sum(w)``. Rationales of weight 0 are left out.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rationales)
    kept = [(r, float(w)) for r, w in zip(rationales, weights, strict=True) if w > 0]
    config = REDConfig(rationale_weight=rationale_weight if kept else 0.0, max_new_tokens=max_new_tokens)
    callback = None if on_token is None else (lambda _index, token: on_token(token))
    result = REDDecoder(lvlm, config).decode(
        image, question, [r for r, _ in kept], rationale_weights=[w for _, w in kept] if kept else None,
        on_token=callback, should_stop=should_stop,
    )
    return Answer(result, tuple(r for r, _ in kept), tuple(w for _, w in kept))
