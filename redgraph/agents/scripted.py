"""A reasoner that returns given rationales: for demos, tests, and planting lies in evaluations.

Example:
    >>> liar = ScriptedReasoner(["The blue bar is 5."])
    >>> [r.text for r in liar.write(None, "What is the value of the blue bar?")]
    ['The blue bar is 5.']
"""

from __future__ import annotations

from collections.abc import Sequence

from redgraph.agents.reasoner import Rationale
from redgraph.errors import ConfigError, check_question, check_rationale


class ScriptedReasoner:
    """Returns ``rationales`` (the first k of them, cycled) every round, whatever the critique.

    The image is not looked at, which is the point: it stands in for a reasoner that is wrong or lies.
    """

    def __init__(self, rationales: Sequence[str], *, name: str = "scripted") -> None:
        if isinstance(rationales, str) or not rationales:
            raise ConfigError(f"rationales must be a non-empty list of texts, got {rationales!r}")
        for index, text in enumerate(rationales):
            check_rationale(text, index)
        self.rationales = tuple(rationales)
        self.model_name = name
        self.critiques: list[str | None] = []

    def write(self, image, question: str, k: int = 1, *, critique: str | None = None) -> list[Rationale]:
        check_question(question)
        self.critiques.append(critique)
        return [Rationale(self.rationales[i % len(self.rationales)], "scripted", self.model_name) for i in range(k)]
