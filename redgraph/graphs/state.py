"""The rationale graph's state (TypedDicts, checkpointed) and run context (a frozen dataclass, not).

The state holds references and JSON data only: the image as sha256 + path, never bytes. Models
and settings live in the context, passed again with every invoke or resume.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypedDict

from redgraph.errors import ConfigError, check_whole_number

OnExhausted = Literal["image_only", "best_supported", "human_review"]
POLICIES: tuple[str, ...] = ("image_only", "best_supported", "human_review")


class ImageRef(TypedDict):
    sha256: str
    path: str


class Chosen(TypedDict):
    rationales: list[str]
    weights: list[float]


class GraphState(TypedDict, total=False):
    trace_id: str
    question: str
    image: ImageRef
    round: int  # reasoning rounds done
    rationales: list[dict[str, Any]]  # this round's: text, style, model, analysis, sampled
    reviews: list[dict[str, Any]]  # the critic's, one per rationale: support, accepted, claims, injections
    verdict: Literal["accept", "revise"]
    critique: str
    history: Annotated[list[dict[str, Any]], operator.add]  # one entry per round
    outcome: Literal["accepted", "image_only", "best_supported", "human_review"]
    flags: list[str]
    chosen: Chosen  # what the answerer decodes with
    answer: dict[str, Any]
    trace: Annotated[list[dict[str, Any]], operator.add]  # hash-chained events


class Reasoner(Protocol):
    def write(self, image, question: str, k: int = 1, *, critique: str | None = None) -> list: ...


class Critic(Protocol):
    def review(self, image, question: str, rationales: list[str]): ...


@dataclass(frozen=True)
class RunContext:
    """One run's models and settings.

    Attributes:
        answerer: the local LVLM that decodes with RED.
        reasoner: writes rationales (:class:`redgraph.agents.LocalReasoner` or another).
        critic: reviews them (:class:`redgraph.agents.LocalCritic` or another).
        rationale_weight: RED's lambda, shared among accepted rationales by support.
        rationales: K, rationales per round.
        rounds: most reasoning rounds (the first included) before ``on_exhausted`` applies.
        on_exhausted: when the last round is still rejected: answer from the image alone (flagged),
            with the best-supported rationale (flagged), or pause for a person (``interrupt``).
        max_new_tokens: longest answer.
    """

    answerer: Any
    reasoner: Reasoner
    critic: Critic
    rationale_weight: float = 1.0
    rationales: int = 1
    rounds: int = 2
    on_exhausted: OnExhausted = "best_supported"
    max_new_tokens: int = 16

    def __post_init__(self) -> None:
        for name in ("rationales", "rounds", "max_new_tokens"):
            check_whole_number(name, getattr(self, name))
        weight = self.rationale_weight
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0 or weight == float("inf"):
            raise ConfigError(f"rationale_weight (lambda) must be a finite number >= 0, got {weight!r}")
        if self.on_exhausted not in POLICIES:
            raise ConfigError(f"on_exhausted must be one of {', '.join(POLICIES)}, got {self.on_exhausted!r}")

    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings recorded in the trace."""
        return {
            "rationale_weight": self.rationale_weight, "rationales": self.rationales, "rounds": self.rounds,
            "on_exhausted": self.on_exhausted, "max_new_tokens": self.max_new_tokens,
            "answerer": getattr(self.answerer, "name", type(self.answerer).__name__),
            "reasoner": type(self.reasoner).__name__, "critic": type(self.critic).__name__,
            # How a local critic checks claims, and what turns them into questions.
            "critic_scoring": getattr(self.critic, "scoring", None),
            "decomposers": [d.name for d in getattr(self.critic, "decomposers", ())],
        }


# What a JSON context (LangGraph server, Studio) may set: the model and reasoner, and RunContext's settings.
CONTEXT_SETTINGS = ("model", "reasoner", "base_url", "styles", "critic_scoring", "decomposer", "rationale_weight",
                    "rationales", "rounds", "on_exhausted", "max_new_tokens")


def resolve_context(context: Any) -> RunContext:
    """The run context of a graph call: a :class:`RunContext` as given, or one built from JSON
    settings (see ``CONTEXT_SETTINGS``; None means all defaults, the embedded model), as the
    LangGraph server passes them. Models are loaded once per model name."""
    if isinstance(context, RunContext):
        return context
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise ConfigError(f"the graph's context must be a RunContext or a JSON object of settings, got {type(context).__name__}")
    unknown = sorted(set(context) - set(CONTEXT_SETTINGS))
    if unknown:
        raise ConfigError(f"unknown context settings {unknown}; use any of {', '.join(CONTEXT_SETTINGS)}")
    return _context_from_settings(json.dumps(dict(context), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _context_from_settings(key: str) -> RunContext:
    from redgraph.graphs.run import make_context

    settings = json.loads(key)
    model = _served_model(settings.pop("model", None))
    styles = settings.pop("styles", None)
    return make_context(model, reasoner=settings.pop("reasoner", "local"), base_url=settings.pop("base_url", None),
                        styles=tuple(styles) if styles else None, **settings)


@functools.lru_cache(maxsize=4)
def _served_model(model: str | None):
    from redgraph.models.loading import load_lvlm

    return load_lvlm(model)
