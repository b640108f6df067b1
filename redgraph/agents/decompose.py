"""Turning a claim into probes: questions the image can answer, with the answer the claim asserts.

Decomposers share one interface, :class:`Decomposer`: ``decompose(claims)`` gives, per claim, its
probes, or None when this decomposer cannot handle that claim. The critic tries its decomposers in
order; a claim none handles is scored by P(yes) and flagged as such, never silently accepted.

- :class:`GrammarDecomposer`: claims in the synthetic claim grammar (every kind it has), asked in
  the data's own question wording, with closed answer sets where the kind has one.
- :class:`ChatDecomposer`: a chat model (OpenAI-compatible or any LangChain chat model) returns the
  probes as structured output (:class:`ClaimProbes`), for free text such as GPT-4 rationales.
- :class:`LVLMDecomposer`: the local LVLM, asked with a decomposition prompt (text only).

Example:
    >>> [probes] = GrammarDecomposer().decompose(["The blue bar is 2."])
    >>> probes[0].question, probes[0].claimed
    ('What is the value of the blue bar?', '2')
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field, ValidationError

from redgraph.data import questions
from redgraph.data.claims import Claim, parse_claim
from redgraph.data.vocabulary import STANDARD, VOCABULARIES, Vocabulary
from redgraph.decoding.probes import Probe
from redgraph.errors import ConfigError, InputError, RemoteModelError, check_whole_number

Probes = tuple[Probe, ...]
_YES_NO = ("yes", "no")
_COUNTS = tuple(str(n) for n in range(10))


@runtime_checkable
class Decomposer(Protocol):
    """Turns claims into probes; None for a claim it cannot handle."""

    name: str

    def decompose(self, claims: Sequence[str]) -> list[Probes | None]: ...


class GrammarDecomposer:
    """Probes for claims the synthetic claim grammar parses (:func:`redgraph.data.claims.parse_claim`),
    in ``vocabulary``'s words (the model's: :func:`model_vocabulary`), whose colours, titles and bar
    values are also the candidate answers of the probes.

    A relation or size claim also asks whether both shapes are there: the claim is false when
    either is missing, whatever the relation.
    """

    name = "grammar"

    def __init__(self, vocabulary: Vocabulary = STANDARD) -> None:
        self.vocabulary = vocabulary

    def decompose(self, claims: Sequence[str]) -> list[Probes | None]:
        return [None if (claim := parse_claim(text, self.vocabulary)) is None else grammar_probes(claim, self.vocabulary)
                for text in claims]


def model_vocabulary(lvlm) -> Vocabulary:
    """The vocabulary ``lvlm`` was trained on: the one its training manifest (beside its weights, as
    ``redgraph embedded train`` saves it) names; the standard one for a model without a manifest.

    Raises:
        ConfigError: the manifest cannot be read or names no known vocabulary.
    """
    path = getattr(lvlm, "path", None)
    if path is None:
        return STANDARD
    from redgraph.models.embedded import MANIFEST_FILE, manifest

    try:
        name = manifest(path).get("config", {}).get("vocabulary", STANDARD.name)
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"the training manifest {path}/{MANIFEST_FILE} cannot be read ({exc}); repair or remove "
                          "it (without it the model is taken to know the standard vocabulary)") from None
    if name not in VOCABULARIES:
        raise ConfigError(f"the training manifest {path}/{MANIFEST_FILE} names the vocabulary {name!r}, which this "
                          f"redgraph does not know ({', '.join(VOCABULARIES)})")
    return VOCABULARIES[name]


def grammar_probes(claim: Claim, vocabulary: Vocabulary = STANDARD) -> Probes | None:
    """The probes of one parsed claim, each of the claim's kind as its family, their candidate answers
    from ``vocabulary``; None for one that compares a thing with itself (no question about the image
    can check it)."""
    probes = _grammar_probes(claim, vocabulary)
    return None if probes is None else tuple(dataclasses.replace(p, family=claim.kind) for p in probes)


def _grammar_probes(claim: Claim, vocabulary: Vocabulary) -> Probes | None:
    kind, args = claim.kind, claim.args
    if kind in ("count_colour", "count_shape"):
        ask = questions.count_colour if kind == "count_colour" else questions.count_shape
        return (Probe(ask(args[0]), str(args[1]), _with(_COUNTS, str(args[1]))),)
    if kind == "shape_colour":
        return (Probe(questions.shape_colour(args[0]), args[1], vocabulary.colours),)
    if kind == "exists":
        return (Probe(questions.exists(args[0], args[1]), "yes" if args[2] else "no", _YES_NO),)
    if kind in ("relation", "size"):
        c1, s1, rel, c2, s2 = args
        if (c1, s1) == (c2, s2):
            return None
        first, second = f"{c1} {s1}", f"{c2} {s2}"
        if kind == "size":
            asked = Probe(questions.size(first, second), rel, ("bigger", "smaller"))
        elif rel in ("left of", "right of"):
            asked = Probe(questions.left_right(first, second), rel.removesuffix(" of"), ("left", "right"))
        else:
            asked = Probe(questions.above_below(first, second), rel, ("above", "below"))
        there = tuple(Probe(questions.exists(c, s), "yes", _YES_NO) for c, s in ((c1, s1), (c2, s2)))
        return (asked, *there)
    if kind == "bar_value":
        values = tuple(str(n) for n in vocabulary.bar_values)
        return (Probe(questions.bar_value(args[0]), str(args[1]), _with(values, str(args[1]))),)
    if kind == "bar_extreme":
        return (Probe(questions.bar_extreme(args[1]), args[0], vocabulary.colours),)
    if kind == "bar_compare":
        c1, rel, c2 = args
        if c1 == c2:
            return None
        return (Probe(questions.bar_compare(c1, c2), c1 if rel == "higher" else c2, (c1, c2)),)
    if kind == "title":
        return (Probe(questions.title(), args[0], vocabulary.titles),)
    if kind == "field":
        return (Probe(questions.field(args[0]), str(args[1]), None),)
    raise InputError(f"no probes are defined for claims of kind {kind!r}")


def _with(alternatives: tuple[str, ...], claimed: str) -> tuple[str, ...]:
    return alternatives if claimed in alternatives else (*alternatives, claimed)


# --- chat models -------------------------------------------------------------------------------

class ProbeSpec(BaseModel):
    """One question that checks a claim (the wire format a chat model fills in)."""

    question: str = Field(description="A short question about the image whose answer checks the claim.")
    claimed_answer: str = Field(description="The answer the claim asserts, in one to three words.")
    alternatives: list[str] = Field(
        default_factory=list,
        description="When the answer comes from a small closed set (yes/no, colours, left/right, small numbers): "
                    "every possible answer, the claimed one included. Empty for an open answer.",
    )


class ClaimProbes(BaseModel):
    """A claim decomposed into probes."""

    checkable: bool = Field(description="False when the claim says nothing an image could confirm or refute.")
    probes: list[ProbeSpec] = Field(default_factory=list, description="Questions that together check the claim.")


DECOMPOSE_INSTRUCTION = (
    "Turn a statement about an image into short questions that someone looking at the image could answer, "
    "each with the answer the statement asserts. Use yes/no questions only when nothing more specific fits. "
    "For answers from a small closed set, list every possible answer.\nStatement: {claim}"
)


class ChatDecomposer:
    """Probes written by a chat model as structured output (:class:`ClaimProbes`); text only, no image.

    Args:
        backend: an :class:`~redgraph.agents.remote.OpenAIReasoner` (its client and model are used
            with the ``openai`` package's ``chat.completions.parse``), a
            :class:`~redgraph.agents.remote.LangChainReasoner`, or any LangChain chat model
            (through ``with_structured_output``).
        max_probes: most probes kept per claim.

    A claim the model marks as not checkable, or whose probes do not validate (an empty question, a
    claimed answer outside its own alternatives), is left undecomposed.
    """

    name = "chat"

    def __init__(self, backend, *, max_probes: int = 3) -> None:
        self.max_probes = check_whole_number("max_probes", max_probes)
        if hasattr(backend, "client") and hasattr(backend, "model"):
            self._ask = self._openai(backend.client, backend.model)
            self.model_name = getattr(backend, "model_name", backend.model)
        else:
            chat_model = getattr(backend, "chat_model", backend)
            if not hasattr(chat_model, "with_structured_output"):
                raise ConfigError(f"backend must be an OpenAIReasoner, a LangChainReasoner or a LangChain chat model "
                                  f"with structured output, got {type(backend).__name__}")
            self._ask = self._langchain(chat_model)
            self.model_name = getattr(backend, "model_name", None) or type(chat_model).__name__

    @staticmethod
    def _openai(client, model: str):
        def ask(claim: str) -> ClaimProbes | None:
            messages = [{"role": "user", "content": DECOMPOSE_INSTRUCTION.format(claim=claim)}]
            try:
                response = client.chat.completions.parse(model=model, messages=messages, response_format=ClaimProbes,
                                                         temperature=0)
            except Exception as exc:  # the client's own errors, or a reply that is not the schema
                raise RemoteModelError(f"{model!r} could not decompose the claim {claim!r:.80}: "
                                       f"{type(exc).__name__}: {exc}") from exc
            return response.choices[0].message.parsed if response.choices else None
        return ask

    @staticmethod
    def _langchain(chat_model):
        structured = chat_model.with_structured_output(ClaimProbes)

        def ask(claim: str) -> ClaimProbes | None:
            try:
                reply = structured.invoke(DECOMPOSE_INSTRUCTION.format(claim=claim))
            except Exception as exc:  # providers raise their own types
                raise RemoteModelError(f"the chat model {type(chat_model).__name__} could not decompose the claim "
                                       f"{claim!r:.80}: {type(exc).__name__}: {exc}") from exc
            if isinstance(reply, dict):
                try:
                    return ClaimProbes.model_validate(reply)
                except ValidationError:
                    return None  # not the schema: the claim stays undecomposed (and is flagged)
            return reply
        return ask

    def decompose(self, claims: Sequence[str]) -> list[Probes | None]:
        return [self._probes(self._ask(claim)) for claim in claims]

    def _probes(self, reply: ClaimProbes | None) -> Probes | None:
        if not isinstance(reply, ClaimProbes) or not reply.checkable or not reply.probes:
            return None
        try:
            return tuple(Probe(spec.question.strip(), spec.claimed_answer.strip(),
                               tuple(a.strip() for a in spec.alternatives) or None)
                         for spec in reply.probes[: self.max_probes])
        except InputError:
            return None


# --- the local LVLM -----------------------------------------------------------------------------

LVLM_DECOMPOSE_PROMPT = ("Write a question about the image that checks the statement, then the answer the "
                         "statement gives, as: question | answer\nStatement: {claim}")
_LINE = re.compile(r"^\s*(?P<question>[^|\n]{3,}\?)\s*\|\s*(?P<answer>[^|\n]{1,40}?)\s*$")


class LVLMDecomposer:
    """Probes written by the local LVLM from a decomposition prompt (text only, greedy).

    Works where the model follows the prompt; a reply that is not ``question? | answer`` leaves the
    claim undecomposed (the embedded model was not trained for this, so it rarely can).
    """

    name = "lvlm"

    def __init__(self, lvlm, *, max_new_tokens: int = 32) -> None:
        self.lvlm = lvlm
        self.max_new_tokens = max_new_tokens

    def decompose(self, claims: Sequence[str]) -> list[Probes | None]:
        from redgraph.decoding.generate import generate_text
        from redgraph.models.prompts import render

        if not claims:
            return []
        texts = [render(self.lvlm.processor, LVLM_DECOMPOSE_PROMPT.format(claim=c), with_image=False) for c in claims]
        return [parse_probe_line(reply) for reply in generate_text(self.lvlm, texts, None, self.max_new_tokens)]


def parse_probe_line(reply: str) -> Probes | None:
    """``"Is the bar blue? | yes"`` as a probe (yes/no answers get their closed set), else None."""
    match = _LINE.match(reply.strip().splitlines()[0] if reply.strip() else "")
    if match is None:
        return None
    answer = match["answer"].strip().rstrip(".")
    alternatives = _YES_NO if answer.lower() in _YES_NO else None
    return (Probe(match["question"].strip(), answer.lower() if alternatives else answer, alternatives),)


def decompose_all(decomposers: Sequence[Decomposer], claims: Sequence[str]) -> list[tuple[Probes | None, str | None]]:
    """Each claim's probes and the name of the decomposer that made them, trying ``decomposers`` in
    order; (None, None) for a claim none handles."""
    found: list[tuple[Probes | None, str | None]] = [(None, None)] * len(claims)
    for decomposer in decomposers:
        missing = [i for i, (probes, _) in enumerate(found) if probes is None]
        if not missing:
            break
        for index, probes in zip(missing, decomposer.decompose([claims[i] for i in missing])):
            if probes:
                found[index] = (tuple(probes), decomposer.name)
    return found


# --- the readers' claims ------------------------------------------------------------------------

COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "grey", "gray", "black",
                "white", "cyan", "teal", "olive", "navy", "violet", "magenta", "gold", "beige", "maroon", "lime")
_READING_FORMS: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(r"The title is (?P<v>.+?)\.?", re.IGNORECASE),
     lambda m: Probe("What is the title?", m["v"], family="title")),
    (re.compile(r"There (?:is|are) (?P<n>\d+) bars?\.?", re.IGNORECASE),
     lambda m: Probe("How many bars are there?", m["n"], family="bar_count")),
    (re.compile(r"The (?P<bar>.+?) bar is the (?P<which>tallest|shortest)\.?", re.IGNORECASE),
     lambda m: Probe(f"Which bar is the {m['which'].lower()}?", m["bar"], family="bar_extreme")),
    (re.compile(rf"The (?P<bar>.+?) bar is (?P<c>{'|'.join(COLOUR_NAMES)})\.?", re.IGNORECASE),
     lambda m: Probe(f"What colour is the {m['bar']} bar?", m["c"].lower(), family="bar_colour")),
    (re.compile(r"The (?P<bar>.+?) bar is (?P<v>[-−$€£]?\s?\d(?:[\d.,]*\d)?\s?%?)\.?", re.IGNORECASE),
     lambda m: Probe(f"What is the value of the {m['bar']} bar?", m["v"], family="bar_value")),
    (re.compile(r"The (?P<name>[^.]{1,60}?) is (?P<v>.+?)\.?", re.IGNORECASE),
     lambda m: Probe(f"What is the {m['name']}?", m["v"], family="field")),
)


class ReadingDecomposer:
    """Probes for the claims the reading reasoner writes (:mod:`redgraph.agents.reading`) and claims
    of the same forms about users' pictures: a title, a field or item's value (``The total is
    $11.25.``), a bar's value, colour or rank, and the number of bars, with open answers as written.

    The critic uses it on pictures beyond the model's calibrated range, after the grammar, so the
    readers (its experts there) can check what any reasoner claims about a user's picture.
    """

    name = "reading"

    def decompose(self, claims: Sequence[str]) -> list[Probes | None]:
        found: list[Probes | None] = []
        for claim in claims:
            text = " ".join(claim.split())
            probes = None
            for pattern, build in _READING_FORMS:
                if (match := pattern.fullmatch(text)) and all(part.strip() for part in match.groups()):
                    probes = (build(match),)
                    break
            found.append(probes)
        return found
