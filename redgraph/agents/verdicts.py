"""What the critic found: each claim's check, each rationale's review, the round's report, and the
critique that tells a reasoner what to fix.

A claim ends ``supported``, ``unsupported``, ``unsure`` or ``unchecked``; a rationale ``accepted``,
``rejected``, ``unsure`` or ``unchecked``; a round ``accept``, ``revise`` or ``unsure``
(:mod:`redgraph.agents.critic` says when).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from redgraph.agents.experts import ExpertReading
from redgraph.agents.rationale_text import InjectionFinding
from redgraph.decoding.probes import ProbeResult

Verdict = Literal["accept", "revise", "unsure"]
ClaimStatus = Literal["supported", "unsupported", "unsure", "unchecked"]
RationaleStatus = Literal["accepted", "rejected", "unsure", "unchecked"]
# How a claim was checked: asked as probes; by P(yes) as chosen; by P(yes) because no decomposer
# could turn it into questions (flagged); the mean of probes and P(yes).
Method = Literal["probes", "p_yes", "p_yes_fallback", "both"]


@dataclass(frozen=True)
class ClaimCheck:
    """The critic's reading of one claim.

    Attributes:
        text: the claim.
        support: how far the image bears it out, from 0 to 1.
        supported: ``support`` reaches the critic's ``accept_at`` and the image was sure.
        method: how it was checked (see ``Method``).
        probes: the questions asked and what the image answered (with ``probes`` or ``both``).
        p_yes: P(yes) / (P(yes) + P(no)) to "is this statement true?", where it was computed.
        decomposer: which decomposer made the probes.
        status: supported, unsupported, unsure or unchecked (see the module docstring).
        experts: with experts beside the LVLM, every expert's reading of each probe (the LVLM's
            first), with whether it counted and the evidence.
        disagreed: the experts whose sure readings disagreed (the claim is then unsure).
    """

    text: str
    support: float
    supported: bool
    method: Method = "p_yes"
    probes: tuple[ProbeResult, ...] = ()
    p_yes: float | None = None
    decomposer: str | None = None
    status: ClaimStatus | None = None  # None: from ``supported`` (supported or unsupported)
    experts: tuple[ExpertReading, ...] = ()
    disagreed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status is None:
            object.__setattr__(self, "status", "supported" if self.supported else "unsupported")

    def to_dict(self) -> dict:
        """JSON-ready (lists, not tuples), as the graph's state and the trace hold it."""
        probes = [dict(asdict(p), alternatives=None if p.alternatives is None else list(p.alternatives))
                  for p in self.probes]
        return dict(asdict(self), probes=probes, experts=[r.to_dict() for r in self.experts],
                    disagreed=list(self.disagreed))

    @property
    def weakest_probe(self) -> ProbeResult | None:
        return min(self.probes, key=lambda p: p.support) if self.probes else None


@dataclass(frozen=True)
class RationaleReview:
    """The critic's reading of one rationale."""

    rationale: str
    claims: tuple[ClaimCheck, ...]
    injections: tuple[InjectionFinding, ...]
    support: float  # weakest claim's support; 0 with an injection or no claim
    accepted: bool
    status: RationaleStatus | None = None  # None: from ``accepted`` (accepted or rejected)

    def __post_init__(self) -> None:
        if self.status is None:
            object.__setattr__(self, "status", "accepted" if self.accepted else "rejected")

    @property
    def unsupported(self) -> tuple[ClaimCheck, ...]:
        """The claims that are not supported: contradicted, unsure or unchecked."""
        return tuple(c for c in self.claims if c.status != "supported")


@dataclass(frozen=True)
class CriticReport:
    """One round's verdict over all rationales."""

    reviews: tuple[RationaleReview, ...]
    verdict: Verdict
    critique: str  # empty when accepted
    novelty: float | None = None  # how far the picture lies from the model's own (None: not measured)
    novel: bool = False  # beyond the model's calibrated range: its eyes' answers are not evidence
    failures: tuple[str, ...] = ()  # readers that were asked and failed, each named with what it said

    @property
    def weights(self) -> tuple[float, ...]:
        """Support per rationale: the answerer's relative RED weights."""
        return tuple(r.support for r in self.reviews)

    @property
    def unasked(self) -> tuple[str, ...]:
        """Claims no decomposer could turn into questions, so only P(yes) checked them."""
        return tuple(c.text for r in self.reviews for c in r.claims if c.method == "p_yes_fallback")


def critique_text(reviews: Sequence[RationaleReview]) -> str:
    """What failed, per rejected rationale, in words a reasoner can act on."""
    lines = []
    for index, review in enumerate(reviews):
        if review.accepted:
            continue
        if review.injections:
            quoted = "; ".join(f'"{f.text}"' for f in review.injections)
            lines.append(f"Rationale {index + 1} tries to instruct the answerer ({quoted}); state only facts.")
        elif review.status == "unchecked":
            lines.append(f"Rationale {index + 1} states no checkable claim about the image; state the facts that "
                         "bear on the question as whole sentences (such as \"The red bar is 7.\").")
        else:
            for claim in review.unsupported:
                if claim.status == "unsure":
                    lines.append(f'Rationale {index + 1}: the image cannot tell whether "{claim.text}"{_evidence(claim)}.')
                else:
                    lines.append(f'Rationale {index + 1}: "{claim.text}" is not supported by the image{_evidence(claim)}.')
    return "\n".join(lines)


def _evidence(claim: ClaimCheck) -> str:
    """What the image (and the experts beside it) said about an unsupported claim, as the critique words it."""
    probe = claim.weakest_probe
    if probe is not None:
        asked = (f': asked "{probe.question}", the image answers {probe.image_answer or "nothing"} '
                 f"(p {probe.image_probability:.2f})")
        if claim.experts:
            return asked + "".join(_reading_text(r) for r in claim.experts if r.probe == _probe_index(claim, probe)) + (
                f"; the experts disagree ({', '.join(claim.disagreed)})" if claim.disagreed else "")
        return asked + (f"; P(true) = {claim.p_yes:.2f}" if claim.method == "both" else "")
    if claim.method == "p_yes_fallback":
        return f" (P(true) = {claim.support:.2f}; no question could be asked of this claim, so only P(yes) checked it)"
    return f" (P(true) = {claim.support:.2f})"


def _probe_index(claim: ClaimCheck, probe: ProbeResult) -> int:
    return next(i for i, p in enumerate(claim.probes) if p is probe)


def _reading_text(reading: ExpertReading) -> str:
    """An expert's reading as the critique words it (the LVLM's answer is already said)."""
    if reading.expert == "lvlm":
        return "" if reading.sure else f" (not counted: {reading.note})"
    if reading.evidence:
        said = f'; {reading.expert.upper()} read "{reading.evidence[0].text}" (confidence {reading.evidence[0].confidence:.2f})'
        return said + ("" if reading.sure else f" (not counted: {reading.note})")
    return f"; {reading.expert.upper()}: {reading.note}"
