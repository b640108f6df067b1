"""Evaluation: answer normalisation and metrics (the full harness is built on these)."""

from redgraph.eval.normalize import answers_match, normalize_answer

__all__ = ["answers_match", "normalize_answer"]
