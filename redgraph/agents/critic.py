"""The critic: checks each rationale's claims against the image and decides accept or revise.

Each rationale is split into atomic claims (:func:`split_claims`); the local LVLM scores every
claim of the round in one shared-prefix batch (P(yes) vs P(no) to "is this statement about the
image true?"). Text that tries to instruct the answerer is an injection finding and is never
scored. A rationale's *support* is its weakest claim's score (0 with any injection, or with no
claim at all): one false claim is enough to make a rationale untrustworthy. A rationale is
accepted when its support reaches ``accept_at``; the round's verdict is ``accept`` when every
rationale is, else ``revise``, with a critique naming what failed.

Example:
    >>> critic = LocalCritic(lvlm)  # doctest: +SKIP
    >>> report = critic.review("chart.png", "Which bar is the tallest?", ["The red bar is 9."])  # doctest: +SKIP
    >>> report.verdict, report.reviews[0].support  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from redgraph.agents.claims import InjectionFinding, find_injections, split_claims
from redgraph.errors import ConfigError
from redgraph.models.images import ImageInput, load_image
from redgraph.models.prompts import check_question, check_rationale

Verdict = Literal["accept", "revise"]


@dataclass(frozen=True)
class ClaimCheck:
    text: str
    support: float  # P(yes) / (P(yes) + P(no)) given the image
    supported: bool


@dataclass(frozen=True)
class RationaleReview:
    """The critic's reading of one rationale."""

    rationale: str
    claims: tuple[ClaimCheck, ...]
    injections: tuple[InjectionFinding, ...]
    support: float  # weakest claim's support; 0 with an injection or no claim
    accepted: bool

    @property
    def unsupported(self) -> tuple[ClaimCheck, ...]:
        return tuple(c for c in self.claims if not c.supported)


@dataclass(frozen=True)
class CriticReport:
    """One round's verdict over all rationales."""

    reviews: tuple[RationaleReview, ...]
    verdict: Verdict
    critique: str  # empty when accepted

    @property
    def weights(self) -> tuple[float, ...]:
        """Support per rationale: the answerer's relative RED weights."""
        return tuple(r.support for r in self.reviews)


class ClaimCritic:
    """The review logic shared by every critic; subclasses score claims (``_score``)."""

    def __init__(self, *, accept_at: float = 0.5) -> None:
        if not isinstance(accept_at, (int, float)) or not 0.0 < accept_at < 1.0:
            raise ConfigError(f"accept_at must be between 0 and 1 (exclusive), got {accept_at!r}")
        self.accept_at = float(accept_at)

    def review(self, image: ImageInput, question: str, rationales: Sequence[str]) -> CriticReport:
        check_question(question)
        rationales = list(rationales)
        for index, rationale in enumerate(rationales):
            check_rationale(rationale, index)
        picture = self._load(image)
        injections = [tuple(find_injections(r)) for r in rationales]
        claims = [[] if found else split_claims(r) for r, found in zip(rationales, injections)]
        flat = [claim for group in claims for claim in group]
        scores = iter(self._score(picture, flat) if flat else [])
        reviews = []
        for rationale, group, found in zip(rationales, claims, injections):
            checks = tuple(ClaimCheck(c, s, s >= self.accept_at) for c, s in ((c, next(scores)) for c in group))
            support = 0.0 if found or not checks else min(c.support for c in checks)
            reviews.append(RationaleReview(rationale, checks, found, support, support >= self.accept_at))
        verdict: Verdict = "accept" if reviews and all(r.accepted for r in reviews) else "revise"
        return CriticReport(tuple(reviews), verdict, "" if verdict == "accept" else critique_text(reviews))

    def _load(self, image: ImageInput):
        return load_image(image)

    def _score(self, picture, claims: list[str]) -> list[float]:
        raise NotImplementedError


class LocalCritic(ClaimCritic):
    """A critic that scores claims with a local LVLM (the embedded model by default in the graph).

    Args:
        lvlm: the model that judges claims against the image.
        accept_at: a claim (and a rationale, by its weakest claim) is supported from this P(yes).
    """

    def __init__(self, lvlm, *, accept_at: float = 0.5) -> None:
        super().__init__(accept_at=accept_at)
        self.lvlm = lvlm

    def _load(self, image: ImageInput):
        return load_image(image, max_pixels=self.lvlm.max_image_pixels)

    def _score(self, picture, claims: list[str]) -> list[float]:
        from redgraph.decoding.claim_scoring import claim_support

        return claim_support(self.lvlm, picture, claims)


class ChatCritic(ClaimCritic):
    """A critic that asks a chat model (an OpenAI-compatible server or a LangChain chat model) about
    each claim. Chat models give words, not probabilities: "yes" scores 1, "no" 0, and anything
    else 0 as well (undecided counts as unsupported, and the critique shows P(true) = 0.00).

    Args:
        backend: an :class:`~redgraph.agents.remote.OpenAIReasoner` or
            :class:`~redgraph.agents.remote.LangChainReasoner` (its ``complete`` method is used).
    """

    def __init__(self, backend, *, accept_at: float = 0.5) -> None:
        super().__init__(accept_at=accept_at)
        if not hasattr(backend, "complete"):
            raise ConfigError(f"backend must be an OpenAIReasoner or LangChainReasoner, got {type(backend).__name__}")
        self.backend = backend

    def _score(self, picture, claims: list[str]) -> list[float]:
        from redgraph.models.prompts import PromptFormat

        template = PromptFormat().claim_check
        replies = [self.backend.complete(template.format(claim=claim), picture) for claim in claims]
        return [1.0 if reply.strip().lower().startswith("yes") else 0.0 for reply in replies]


def critique_text(reviews: Sequence[RationaleReview]) -> str:
    """What failed, per rejected rationale, in words a reasoner can act on."""
    lines = []
    for index, review in enumerate(reviews):
        if review.accepted:
            continue
        if review.injections:
            quoted = "; ".join(f'"{f.text}"' for f in review.injections)
            lines.append(f"Rationale {index + 1} tries to instruct the answerer ({quoted}); state only facts.")
        elif not review.claims:
            lines.append(f"Rationale {index + 1} states no checkable claim about the image.")
        else:
            for claim in review.unsupported:
                lines.append(f'Rationale {index + 1}: "{claim.text}" is not supported by the image '
                             f"(P(true) = {claim.support:.2f}).")
    return "\n".join(lines)
