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
false claim is enough to make a rationale untrustworthy.

Each claim ends in one of four states: ``supported`` (its support reaches ``accept_at``),
``unsupported`` (a probe the image is sure of contradicts it), ``unsure`` (the image cannot tell:
a probe's own answer is less likely than the model's calibrated ``unsure_below``, or the picture
is out of the model's range, :class:`~redgraph.models.calibration.Calibration`) or, for a local
critic, ``unchecked`` when no decomposer could turn it into a question. With the model's
calibration, supports are calibrated probabilities. A rationale is ``accepted`` when every claim
is supported, ``rejected`` with an unsupported claim or an injection, ``unchecked`` when it states
nothing a question could check (it is never accepted), else ``unsure``. The round's verdict is
``accept`` when every rationale is accepted, ``revise`` when one is rejected or unchecked (with a
critique that says, for each, what the image answered), else ``unsure``: the graph does not spend
rounds on what the image cannot tell.

Experts beside the LVLM (``experts=``, :mod:`redgraph.agents.experts`): an OCR expert reads titles
and fields itself, and each probe it answers is decided by both readings (``combine``: agreement
decides, disagreement is ``unsure`` and names who disagreed). A reading counts only where its
expert is sure, so on a picture out of the model's range the OCR expert alone decides the text
probes. The claim's check keeps every reading with its evidence (the words read and their boxes),
which the trace and the HTML report show. What the critic found is in :mod:`redgraph.agents.verdicts`.

Example:
    >>> critic = LocalCritic(lvlm)  # doctest: +SKIP
    >>> report = critic.review("chart.png", "Which bar is the tallest?", ["The blue bar is 2."])  # doctest: +SKIP
    >>> report.critique  # doctest: +SKIP
    'Rationale 1: "The blue bar is 2." is not supported by the image: asked "What is the value of the
    blue bar?", the image answers 9 (p 0.97).'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

from redgraph.agents.decompose import (Decomposer, GrammarDecomposer, ReadingDecomposer, decompose_all,
                                      model_vocabulary)
from redgraph.agents.experts import Combine, Expert, ExpertReading, check_combine, combine
from redgraph.agents.rationale_text import find_injections, split_claims
from redgraph.agents.verdicts import (ClaimCheck, ClaimStatus, CriticReport, Method, RationaleReview, RationaleStatus,
                                      Verdict, critique_text)
from redgraph.decoding.probes import ProbeResult, answer_key
from redgraph.errors import ConfigError, check_question, check_rationale
from redgraph.models.images import ImageInput, ready_image

Scoring = Literal["probes", "p_yes", "both"]
SCORINGS: tuple[str, ...] = ("probes", "p_yes", "both")


@dataclass(frozen=True)
class _Score:
    support: float
    method: Method
    probes: tuple[ProbeResult, ...] = ()
    p_yes: float | None = None
    decomposer: str | None = None
    unsure: bool = False  # the image cannot tell (an unsure probe, or a picture out of range)
    status: ClaimStatus | None = None  # decided with experts beside the LVLM (None: from the above)
    experts: tuple[ExpertReading, ...] = ()
    disagreed: tuple[str, ...] = ()


class Critic(Protocol):
    """What the graph needs of a critic: one round's verdict over the rationales."""

    def review(self, image: ImageInput, question: str, rationales: Sequence[str]) -> CriticReport: ...


class ClaimCritic:
    """The review logic shared by every critic; subclasses score claims (``_score``)."""

    # A rationale none of whose claims a decomposer could turn into a question is unchecked.
    requires_probes = False

    def __init__(self, *, accept_at: float = 0.5) -> None:
        if not isinstance(accept_at, (int, float)) or not 0.0 < accept_at < 1.0:
            raise ConfigError(f"accept_at must be between 0 and 1 (exclusive), got {accept_at!r}")
        self.accept_at = float(accept_at)
        self._novelty: tuple[float | None, bool] = (None, False)
        # The readers that failed in this thread's current review (a critic serves concurrent runs).
        self._failures: ContextVar[list[str] | None] = ContextVar(f"redgraph_critic_failures_{id(self)}", default=None)

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
        novelty, novel = self._picture_range(picture)
        self._failures.set([])
        checked = iter(self._checks(picture, flat, novel=novel))
        reviews = []
        for rationale, group, found in zip(rationales, claims, injections):
            checks = tuple(next(checked) for _ in group)
            support = 0.0 if found or not checks else min(c.support for c in checks)
            status = self._rationale_status(checks, found)
            reviews.append(RationaleReview(rationale, checks, found, support, status == "accepted", status))
        statuses = {r.status for r in reviews}
        verdict: Verdict = ("revise" if not reviews or statuses & {"rejected", "unchecked"}
                            else "unsure" if "unsure" in statuses else "accept")
        return CriticReport(tuple(reviews), verdict, "" if verdict == "accept" else critique_text(reviews),
                            novelty, novel, tuple(self._failures.get() or ()))

    def _rationale_status(self, checks: tuple[ClaimCheck, ...], injections) -> RationaleStatus:
        if injections:
            return "rejected"
        if not checks or (self.requires_probes and all(c.status == "unchecked" for c in checks)):
            return "unchecked"
        # A claim no question could check, beside ones that could, still answers for its P(yes).
        if any(c.status == "unsupported" or (c.status == "unchecked" and not c.supported) for c in checks):
            return "rejected"
        return "unsure" if any(c.status == "unsure" for c in checks) else "accepted"

    def _picture_range(self, picture) -> tuple[float | None, bool]:
        """The picture's novelty score, and whether it is beyond the critic's eyes (not measured here)."""
        return None, False

    def score_claims(self, image: ImageInput, claims: Sequence[str]) -> list[ClaimCheck]:
        """Each claim's check against ``image``, without the rationale-level verdict (for evaluation)."""
        picture = self._load(image)
        return self._checks(picture, list(claims), novel=self._picture_range(picture)[1])

    def _checks(self, picture, claims: list[str], *, novel: bool = False) -> list[ClaimCheck]:
        scores = self._score(picture, claims, novel=novel) if claims else []
        checks = []
        for claim, score in zip(claims, scores):
            status = self._claim_status(score, novel)
            supported = score.support >= self.accept_at and status in ("supported", "unchecked")
            checks.append(ClaimCheck(claim, score.support, supported, score.method, score.probes, score.p_yes,
                                     score.decomposer, status, score.experts, score.disagreed))
        return checks

    def _claim_status(self, score: _Score, novel: bool) -> ClaimStatus:
        if score.method == "p_yes_fallback" and self.requires_probes:
            return "unchecked"
        if score.status is not None:  # the experts decided, the LVLM's range among their readings
            return score.status
        if novel or score.unsure:
            return "unsure"
        return "supported" if score.support >= self.accept_at else "unsupported"

    def _check_lengths(self, question: str, rationales: list[str]) -> None:
        """Refuse text too long for the critic's model (a local model says how long; others do not)."""

    def _load(self, image: ImageInput):
        return ready_image(image)

    def _score(self, picture, claims: list[str], *, novel: bool = False) -> list[_Score]:
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
        calibrated: use the model's fitted calibration (``lvlm.calibration``: temperatures per probe
            family, the ``unsure`` threshold, the picture-range check) where it has one. False reads
            raw supports and never says unsure.
        experts: experts beside the LVLM (:mod:`redgraph.agents.experts`, e.g. an
            :class:`~redgraph.agents.experts.OcrExpert`); each probe one of them answers is decided
            by all the readings, by ``combine`` (``"agree"`` or ``"veto"``). Needs ``scoring="probes"``.
        readers: experts asked only on pictures beyond the model's calibrated range, where its eyes
            are not evidence (:func:`~redgraph.agents.experts.make_readers`: the text reader,
            Tesseract where installed, the chart reader's two readings); there the claims' forms of
            the readers (:class:`~redgraph.agents.decompose.ReadingDecomposer`) are asked too. A reader
            that fails is named in the report (``failures``) and its probes stay unsure.

    A claim none of the decomposers handles is scored by P(yes) and flagged; a rationale none of
    whose claims they handle is ``unchecked``, never accepted (with ``scoring="p_yes"``, which asks
    P(yes) of every claim by choice, it is checked by P(yes)).
    """

    def __init__(self, lvlm, *, accept_at: float = 0.5, scoring: Scoring = "probes",
                 decomposers: Sequence[Decomposer] | None = None, calibrated: bool = True,
                 experts: Sequence[Expert] = (), combine: Combine = "agree", readers: Sequence[Expert] = ()) -> None:
        super().__init__(accept_at=accept_at)
        if scoring not in SCORINGS:
            raise ConfigError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        decomposers = (GrammarDecomposer(model_vocabulary(lvlm)),) if decomposers is None else tuple(decomposers)
        for decomposer in decomposers:
            if not isinstance(decomposer, Decomposer):
                raise ConfigError(f"each decomposer needs a name and a decompose(claims) method, got "
                                  f"{type(decomposer).__name__}")
        if not isinstance(calibrated, bool):
            raise ConfigError(f"calibrated must be True or False, got {calibrated!r}")
        experts, readers = tuple(experts), tuple(readers)
        for expert in (*experts, *readers):
            if not isinstance(expert, Expert):
                raise ConfigError(f"each expert needs a name and a read(picture, probes) method, got {type(expert).__name__}")
        if (experts or readers) and scoring != "probes":
            raise ConfigError(f"experts answer the claims' probes; scoring={scoring!r} asks none (use scoring='probes')")
        self.experts, self.readers = experts, readers
        self.combine = check_combine(combine)
        self.lvlm = lvlm
        self.scoring = scoring
        self.decomposers = decomposers
        self.requires_probes = scoring != "p_yes"
        self.calibration = getattr(lvlm, "calibration", None) if calibrated else None

    def _picture_range(self, picture) -> tuple[float | None, bool]:
        if self.calibration is None:
            return None, False
        score = self.calibration.novelty(self.lvlm, picture)
        return score, self.calibration.is_novel(score)

    def _calibrated(self, result: ProbeResult) -> tuple[ProbeResult, bool]:
        """The probe's result with the family's temperature, and whether the image is unsure of it."""
        calibration = self.calibration
        if calibration is None:
            return result, False
        family = result.family or ("closed" if result.alternatives is not None else "open")
        shares = calibration.temper(result.candidates, family)
        best = max(shares, key=shares.__getitem__)
        claimed = next(name for name in shares if answer_key(name) == answer_key(result.claimed))
        tempered = dataclasses.replace(result, candidates=shares, image_answer=best,
                                       image_probability=shares[best], support=shares[claimed])
        return tempered, result.answer_probability < calibration.unsure_below

    def _check_lengths(self, question: str, rationales: list[str]) -> None:
        self.lvlm.check_text_length(question, "question")
        for index, rationale in enumerate(rationales):
            self.lvlm.check_text_length(rationale, f"rationale {index}")

    def _load(self, image: ImageInput):
        return ready_image(image, max_pixels=self.lvlm.max_image_pixels)

    def _score(self, picture, claims: list[str], *, novel: bool = False) -> list[_Score]:
        from redgraph.decoding.claim_scoring import claim_support
        from redgraph.decoding.probes import score_probes

        if self.scoring == "p_yes":
            return [_Score(p, "p_yes", p_yes=p) for p in claim_support(self.lvlm, picture, claims)]
        readers = self.readers if novel else ()
        decomposers = (*self.decomposers, ReadingDecomposer()) if readers else self.decomposers
        decomposed = decompose_all(decomposers, claims)
        asked = [i for i, (probes, _) in enumerate(decomposed) if probes]
        flat = [probe for i in asked for probe in decomposed[i][0]]
        answers = iter([self._calibrated(r) for r in score_probes(self.lvlm, picture, flat)])
        others = [expert.read(picture, flat) for expert in self.experts]
        others += [self._read_or_fail(reader, picture, flat) for reader in readers]
        results, unsure, decided, offset = {}, {}, {}, 0
        for i in asked:
            pairs = [next(answers) for _ in decomposed[i][0]]
            results[i] = tuple(r for r, _ in pairs)
            unsure[i] = _unsure_claim([r for r, _ in pairs], [u for _, u in pairs], self.accept_at)
            if others:
                decided[i] = self._with_experts(pairs, [read[offset:offset + len(pairs)] for read in others], novel)
            offset += len(pairs)
        need_p_yes = [i for i in range(len(claims)) if i not in results or self.scoring == "both"]
        p_yes = dict(zip(need_p_yes, claim_support(self.lvlm, picture, [claims[i] for i in need_p_yes])))
        scores = []
        for index, (_, decomposer) in enumerate(decomposed):
            if index not in results:
                scores.append(_Score(p_yes[index], "p_yes_fallback", p_yes=p_yes[index]))
                continue
            support = min(r.support for r in results[index])
            if self.scoring == "both":
                scores.append(_Score((support + p_yes[index]) / 2, "both", results[index], p_yes[index], decomposer,
                                     unsure[index]))
            elif index in decided:
                status, support, readings, disagreed = decided[index]
                scores.append(_Score(support, "probes", results[index], decomposer=decomposer, status=status,
                                     experts=readings, disagreed=disagreed))
            else:
                scores.append(_Score(support, "probes", results[index], decomposer=decomposer, unsure=unsure[index]))
        return scores

    def _read_or_fail(self, reader: Expert, picture, probes) -> list[ExpertReading | None]:
        """A reader's readings; one that fails (or is missing) is named in the report, and reads
        nothing: its probes are decided by the others, or stay unsure."""
        try:
            return reader.read(picture, probes)
        except Exception as exc:  # noqa: BLE001 - a reader failing on a picture is recorded, never the run's end
            failures = self._failures.get()
            if failures is not None:  # None: claims scored outside a review (score_claims)
                failures.append(f"{reader.name}: {type(exc).__name__}: {exc}")
            return [None] * len(probes)

    @property
    def expert_names(self) -> tuple[str, ...]:
        """Who checks the claims: the LVLM, then the experts beside it (the readers, asked beyond the
        model's range, are :attr:`reader_names`)."""
        return ("lvlm", *(e.name for e in self.experts))

    @property
    def reader_names(self) -> tuple[str, ...]:
        """Who checks the claims on pictures beyond the model's range, beside the experts."""
        return tuple(r.name for r in self.readers)

    def _with_experts(self, pairs, readings_per_expert, novel: bool):
        """A claim's status, support, every expert's readings and who disagreed, probe by probe
        (:func:`redgraph.agents.experts.combine`); a claim is as good as its worst probe."""
        statuses, supports, kept, disagreed = [], [], [], []
        for j, (result, image_unsure) in enumerate(pairs):
            note = "the picture is out of the model's range" if novel else "the image is unsure" if image_unsure else ""
            own = ExpertReading("lvlm", j, result.image_answer, result.support, not (novel or image_unsure), note=note)
            theirs = [dataclasses.replace(read[j], probe=j) for read in readings_per_expert if read[j] is not None]
            status, support, who = combine([own, *theirs], self.accept_at, self.combine)
            statuses.append(status)
            supports.append(support)
            kept += [own, *theirs]
            disagreed += [name for name in who if name not in disagreed]
        status = "unsupported" if "unsupported" in statuses else "unsure" if "unsure" in statuses else "supported"
        return status, min(supports), tuple(kept), tuple(disagreed)


def _unsure_claim(results: list[ProbeResult], unsure: list[bool], accept_at: float) -> bool:
    """A claim is unsure when a probe the image is unsure of could decide it, and no probe the image
    is sure of already contradicts it."""
    sure_contradiction = any(r.support < accept_at and not u for r, u in zip(results, unsure))
    return any(unsure) and not sure_contradiction


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

    def _score(self, picture, claims: list[str], *, novel: bool = False) -> list[_Score]:
        from redgraph.models.prompts import PromptFormat

        template = PromptFormat().claim_check
        replies = [self.backend.complete(template.format(claim=claim), picture) for claim in claims]
        return [_Score(1.0 if reply.strip().lower().startswith("yes") else 0.0, "p_yes") for reply in replies]
