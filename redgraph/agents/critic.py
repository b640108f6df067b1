"""The critic: checks each rationale's claims against the image and decides accept or revise.

Each rationale is split into atomic claims (:func:`split_claims`). The local critic asks the image
about each claim (:mod:`redgraph.agents.decompose` turns a claim into *probes*: a question, the
answer the claim asserts, and the alternatives where the answer set is closed) and scores the
claimed answer by the image branch's own probability of it (:func:`redgraph.decoding.probes.score_probes`);
all probes of one image run in one batch that shares the image prefix. A claim's support is its
weakest probe's. A claim no decomposer handles is scored by P(yes) to "is this statement about the
image true?" and marked ``p_yes_fallback``, so the verdict says it was not asked. P(yes) alone
(``scoring="p_yes"``, which suits large LVLMs) and the mean of both (``"both"``) are options.

Text that tries to instruct the answerer is an injection finding and is never scored. A
rationale's *support* is its weakest claim's (0 with any injection, or with no claim at all): one
false claim is enough to make a rationale untrustworthy. A rationale is accepted when its support
reaches ``accept_at``; the round's verdict is ``accept`` when every rationale is, else ``revise``,
with a critique that says, for each unsupported claim, what the image answered.

Example:
    >>> critic = LocalCritic(lvlm)  # doctest: +SKIP
    >>> report = critic.review("chart.png", "Which bar is the tallest?", ["The blue bar is 2."])  # doctest: +SKIP
    >>> report.critique  # doctest: +SKIP
    'Rationale 1: "The blue bar is 2." is not supported by the image: asked "What is the value of the
    blue bar?", the image answers 9 (p 0.97).'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from redgraph.agents.decompose import Decomposer, GrammarDecomposer, decompose_all
from redgraph.agents.rationale_text import InjectionFinding, find_injections, split_claims
from redgraph.decoding.probes import ProbeResult
from redgraph.errors import ConfigError, check_question, check_rationale
from redgraph.models.images import ImageInput, ready_image

Verdict = Literal["accept", "revise"]


Scoring = Literal["probes", "p_yes", "both"]
SCORINGS: tuple[str, ...] = ("probes", "p_yes", "both")
# How a claim was checked: asked as probes; by P(yes) as chosen; by P(yes) because no decomposer
# could turn it into questions (flagged); the mean of probes and P(yes).
Method = Literal["probes", "p_yes", "p_yes_fallback", "both"]


@dataclass(frozen=True)
class ClaimCheck:
    """The critic's reading of one claim.

    Attributes:
        text: the claim.
        support: how far the image bears it out, from 0 to 1.
        supported: ``support`` reaches the critic's ``accept_at``.
        method: how it was checked (see ``Method``).
        probes: the questions asked and what the image answered (with ``probes`` or ``both``).
        p_yes: P(yes) / (P(yes) + P(no)) to "is this statement true?", where it was computed.
        decomposer: which decomposer made the probes.
    """

    text: str
    support: float
    supported: bool
    method: Method = "p_yes"
    probes: tuple[ProbeResult, ...] = ()
    p_yes: float | None = None
    decomposer: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready (lists, not tuples), as the graph's state and the trace hold it."""
        probes = [dict(asdict(p), alternatives=None if p.alternatives is None else list(p.alternatives))
                  for p in self.probes]
        return dict(asdict(self), probes=probes)

    @property
    def weakest_probe(self) -> ProbeResult | None:
        return min(self.probes, key=lambda p: p.support) if self.probes else None


@dataclass(frozen=True)
class _Score:
    support: float
    method: Method
    probes: tuple[ProbeResult, ...] = ()
    p_yes: float | None = None
    decomposer: str | None = None


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

    @property
    def unasked(self) -> tuple[str, ...]:
        """Claims no decomposer could turn into questions, so only P(yes) checked them."""
        return tuple(c.text for r in self.reviews for c in r.claims if c.method == "p_yes_fallback")


class Critic(Protocol):
    """What the graph needs of a critic: one round's verdict over the rationales."""

    def review(self, image: ImageInput, question: str, rationales: Sequence[str]) -> CriticReport: ...


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
        self._check_lengths(question, rationales)
        picture = self._load(image)
        injections = [tuple(find_injections(r)) for r in rationales]
        claims = [[] if found else split_claims(r) for r, found in zip(rationales, injections)]
        flat = [claim for group in claims for claim in group]
        checked = iter(self._checks(picture, flat))
        reviews = []
        for rationale, group, found in zip(rationales, claims, injections):
            checks = tuple(next(checked) for _ in group)
            support = 0.0 if found or not checks else min(c.support for c in checks)
            reviews.append(RationaleReview(rationale, checks, found, support, support >= self.accept_at))
        verdict: Verdict = "accept" if reviews and all(r.accepted for r in reviews) else "revise"
        return CriticReport(tuple(reviews), verdict, "" if verdict == "accept" else critique_text(reviews))

    def score_claims(self, image: ImageInput, claims: Sequence[str]) -> list[ClaimCheck]:
        """Each claim's check against ``image``, without the rationale-level verdict (for evaluation)."""
        return self._checks(self._load(image), list(claims))

    def _checks(self, picture, claims: list[str]) -> list[ClaimCheck]:
        scores = self._score(picture, claims) if claims else []
        return [ClaimCheck(c, s.support, s.support >= self.accept_at, s.method, s.probes, s.p_yes, s.decomposer)
                for c, s in zip(claims, scores)]

    def _check_lengths(self, question: str, rationales: list[str]) -> None:
        """Refuse text too long for the critic's model (a local model says how long; others do not)."""

    def _load(self, image: ImageInput):
        return ready_image(image)

    def _score(self, picture, claims: list[str]) -> list[_Score]:
        raise NotImplementedError


class LocalCritic(ClaimCritic):
    """A critic that asks a local LVLM about each claim (the embedded model by default in the graph).

    Args:
        lvlm: the model that looks at the image.
        accept_at: a claim (and a rationale, by its weakest claim) is supported from this support.
        scoring: ``"probes"`` (ask the image the claim's questions; P(yes) only for claims no
            decomposer handles, flagged), ``"p_yes"`` (P(yes) for every claim) or ``"both"`` (the
            mean of the two where a claim has probes).
        decomposers: turn claims into probes, tried in order; default: the synthetic claim grammar
            alone. Add a :class:`~redgraph.agents.decompose.ChatDecomposer` for free text.
    """

    def __init__(self, lvlm, *, accept_at: float = 0.5, scoring: Scoring = "probes",
                 decomposers: Sequence[Decomposer] | None = None) -> None:
        super().__init__(accept_at=accept_at)
        if scoring not in SCORINGS:
            raise ConfigError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        decomposers = (GrammarDecomposer(),) if decomposers is None else tuple(decomposers)
        for decomposer in decomposers:
            if not isinstance(decomposer, Decomposer):
                raise ConfigError(f"each decomposer needs a name and a decompose(claims) method, got "
                                  f"{type(decomposer).__name__}")
        self.lvlm = lvlm
        self.scoring = scoring
        self.decomposers = decomposers

    def _check_lengths(self, question: str, rationales: list[str]) -> None:
        self.lvlm.check_text_length(question, "question")
        for index, rationale in enumerate(rationales):
            self.lvlm.check_text_length(rationale, f"rationale {index}")

    def _load(self, image: ImageInput):
        return ready_image(image, max_pixels=self.lvlm.max_image_pixels)

    def _score(self, picture, claims: list[str]) -> list[_Score]:
        from redgraph.decoding.claim_scoring import claim_support
        from redgraph.decoding.probes import score_probes

        if self.scoring == "p_yes":
            return [_Score(p, "p_yes", p_yes=p) for p in claim_support(self.lvlm, picture, claims)]
        decomposed = decompose_all(self.decomposers, claims)
        asked = [i for i, (probes, _) in enumerate(decomposed) if probes]
        flat = [probe for i in asked for probe in decomposed[i][0]]
        answers = iter(score_probes(self.lvlm, picture, flat))
        results = {i: tuple(next(answers) for _ in decomposed[i][0]) for i in asked}
        need_p_yes = [i for i in range(len(claims)) if i not in results or self.scoring == "both"]
        p_yes = dict(zip(need_p_yes, claim_support(self.lvlm, picture, [claims[i] for i in need_p_yes])))
        scores = []
        for index, (_, decomposer) in enumerate(decomposed):
            if index not in results:
                scores.append(_Score(p_yes[index], "p_yes_fallback", p_yes=p_yes[index]))
                continue
            support = min(r.support for r in results[index])
            if self.scoring == "both":
                scores.append(_Score((support + p_yes[index]) / 2, "both", results[index], p_yes[index], decomposer))
            else:
                scores.append(_Score(support, "probes", results[index], decomposer=decomposer))
        return scores


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

    def _score(self, picture, claims: list[str]) -> list[_Score]:
        from redgraph.models.prompts import PromptFormat

        template = PromptFormat().claim_check
        replies = [self.backend.complete(template.format(claim=claim), picture) for claim in claims]
        return [_Score(1.0 if reply.strip().lower().startswith("yes") else 0.0, "p_yes") for reply in replies]


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
                lines.append(f'Rationale {index + 1}: "{claim.text}" is not supported by the image{_evidence(claim)}.')
    return "\n".join(lines)


def _evidence(claim: ClaimCheck) -> str:
    """What the image said about an unsupported claim, as the critique words it."""
    probe = claim.weakest_probe
    if probe is not None:
        asked = (f': asked "{probe.question}", the image answers {probe.image_answer or "nothing"} '
                 f"(p {probe.image_probability:.2f})")
        return asked + (f"; P(true) = {claim.p_yes:.2f}" if claim.method == "both" else "")
    if claim.method == "p_yes_fallback":
        return f" (P(true) = {claim.support:.2f}; no question could be asked of this claim, so only P(yes) checked it)"
    return f" (P(true) = {claim.support:.2f})"
