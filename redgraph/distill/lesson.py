"""One training example of a distillation run before tensors (:class:`Lesson`), shared by the
lessons drawn from traces (:mod:`redgraph.distill.student`) and keep lessons (:mod:`redgraph.distill.keep`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    """One training example before tensors: what the student reads and what it should write."""

    task: str
    instruction: str
    target: str
    ref: dict  # the item's image reference
    weight: float
