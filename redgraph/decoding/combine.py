"""Old name of :mod:`redgraph.decoding.red`, where RED's formula lives."""

from redgraph.decoding.red import rationale_lambdas, red_scores, sampling_logits

__all__ = ["rationale_lambdas", "red_scores", "sampling_logits"]
