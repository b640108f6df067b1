"""Atomic claims about a synthetic scene: one sentence each, rendered, parsed back and evaluated.

Rationales written for synthetic items are sequences of these sentences, so a rationale written
by any model can be split, parsed and checked against the scene (:func:`grade_rationale`): this
is how ``rationale_fact_acc`` and the claim labels are computed. A sentence outside the grammar
parses to ``None`` and counts as unsupported.

Example:
    >>> from redgraph.data.scenes import BarScene
    >>> claim = parse_claim("The red bar is 7.")
    >>> claim.holds(BarScene(bars=(("red", 7), ("blue", 3))))
    True
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from redgraph.data.scenes import SHAPES, BarScene, DocumentScene, Scene, ShapeScene, vocabulary_of
from redgraph.data.vocabulary import STANDARD, Vocabulary

RELATIONS = ("left of", "right of", "above", "below")
_S = "|".join(SHAPES)


@dataclass(frozen=True)
class Claim:
    """One atomic statement. ``kind`` picks the template; ``args`` fill it."""

    kind: str
    args: tuple

    @property
    def text(self) -> str:
        return _RENDER[self.kind](*self.args)

    def holds(self, scene: Scene) -> bool:
        """True when the statement is true of ``scene``; a claim about another kind of scene is false."""
        return bool(_EVALUATE[self.kind](scene, *self.args))


def _count(n: int, noun: str) -> str:
    return f"There is 1 {noun}." if n == 1 else f"There are {n} {noun}s."


_RENDER = {
    "count_colour": lambda colour, n: _count(n, f"{colour} shape"),
    "count_shape": lambda shape, n: _count(n, shape),
    "shape_colour": lambda shape, colour: f"The {shape} is {colour}.",
    "exists": lambda colour, shape, present: f"There is {'a' if present else 'no'} {colour} {shape}.",
    "relation": lambda c1, s1, rel, c2, s2: f"The {c1} {s1} is {rel} the {c2} {s2}.",
    "size": lambda c1, s1, rel, c2, s2: f"The {c1} {s1} is {rel} than the {c2} {s2}.",
    "bar_value": lambda colour, v: f"The {colour} bar is {v}.",
    "bar_extreme": lambda colour, which: f"The {colour} bar is the {which}.",
    "bar_compare": lambda c1, rel, c2: f"The {c1} bar is {rel} than the {c2} bar.",
    "title": lambda title: f"The title is {title}.",
    "field": lambda name, v: f"The {name} is {v}.",
}

@functools.cache
def _grammar(vocabulary: Vocabulary):
    """Each claim kind's compiled pattern in ``vocabulary``'s words, with what builds its arguments."""
    c = "|".join(vocabulary.colours)
    value = vocabulary.value_pattern()
    patterns = [
        ("count_colour", rf"There (?:is|are) (\d+) ({c}) shapes?", lambda n, c: (c, int(n))),
        ("count_shape", rf"There (?:is|are) (\d+) ({_S})s?", lambda n, s: (s, int(n))),
        ("shape_colour", rf"The ({_S}) is ({c})", lambda s, c: (s, c)),
        ("exists", rf"There is (a|no) ({c}) ({_S})", lambda a, c, s: (c, s, a == "a")),
        ("relation", rf"The ({c}) ({_S}) is (left of|right of|above|below) the ({c}) ({_S})", lambda *g: g),
        ("size", rf"The ({c}) ({_S}) is (bigger|smaller) than the ({c}) ({_S})", lambda *g: g),
        ("bar_value", rf"The ({c}) bar is (\d+)", lambda c, v: (c, int(v))),
        ("bar_extreme", rf"The ({c}) bar is the (tallest|shortest)", lambda c, w: (c, w)),
        ("bar_compare", rf"The ({c}) bar is (higher|lower) than the ({c}) bar", lambda *g: g),
        ("title", rf"The title is ({'|'.join(vocabulary.titles)})", lambda t: (t,)),
        ("field", rf"The ({'|'.join(vocabulary.fields)}) is ({value})", lambda f, v: (f, int(v) if v.isdigit() else v)),
    ]
    return [(kind, re.compile(pattern + r"\.?", re.IGNORECASE), build) for kind, pattern, build in patterns]


def parse_claim(sentence: str, vocabulary: Vocabulary = STANDARD) -> Claim | None:
    """The claim a sentence states in ``vocabulary``'s words, or None when it is outside the grammar."""
    sentence = " ".join(sentence.split())
    for kind, pattern, build in _grammar(vocabulary):
        match = pattern.fullmatch(sentence)
        if match:
            return Claim(kind, tuple(g.lower() if isinstance(g, str) else g for g in build(*match.groups())))
    return None


def split_sentences(text: str) -> list[str]:
    """Split a rationale into sentences at '.', '!' or '?' followed by space or the end."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


@dataclass(frozen=True)
class RationaleCheck:
    """How a rationale fares against its scene."""

    sentences: tuple[str, ...]
    verdicts: tuple[bool | None, ...]  # per sentence: true, false, or None (not a parsable claim)

    @property
    def all_true(self) -> bool:
        """Every sentence is a parsable claim that holds (and there is at least one)."""
        return bool(self.verdicts) and all(v is True for v in self.verdicts)


def grade_rationale(text: str, scene: Scene) -> RationaleCheck:
    """Grade each sentence of ``text`` against the scene record: true, false, or not a claim (in the
    grammar of the scene's vocabulary, :func:`redgraph.data.scenes.vocabulary_of`)."""
    sentences = tuple(split_sentences(text))
    vocabulary = vocabulary_of(scene)
    verdicts = []
    for sentence in sentences:
        claim = parse_claim(sentence, vocabulary)
        verdicts.append(None if claim is None else claim.holds(scene))
    return RationaleCheck(sentences, tuple(verdicts))


# --- evaluation against the scene record -------------------------------------------------------

def _shapes(scene: Scene) -> ShapeScene | None:
    return scene if isinstance(scene, ShapeScene) else None


def _count_colour(scene, colour, n):
    s = _shapes(scene)
    return s is not None and sum(o.colour == colour for o in s.objects) == n


def _count_shape(scene, shape, n):
    s = _shapes(scene)
    return s is not None and sum(o.shape == shape for o in s.objects) == n


def _shape_colour(scene, shape, colour):
    s = _shapes(scene)
    matches = [o for o in s.objects if o.shape == shape] if s else []
    return len(matches) == 1 and matches[0].colour == colour


def _exists(scene, colour, shape, present):
    s = _shapes(scene)
    return s is not None and (s.find(colour, shape) is not None) == present


def _pair(scene, c1, s1, c2, s2):
    s = _shapes(scene)
    if s is None:
        return None, None
    return s.find(c1, s1), s.find(c2, s2)


def _relation(scene, c1, s1, rel, c2, s2):
    a, b = _pair(scene, c1, s1, c2, s2)
    if a is None or b is None or a is b:
        return False
    return {"left of": a.x < b.x, "right of": a.x > b.x, "above": a.y < b.y, "below": a.y > b.y}[rel]


def _size(scene, c1, s1, rel, c2, s2):
    a, b = _pair(scene, c1, s1, c2, s2)
    if a is None or b is None:
        return False
    return a.radius > b.radius if rel == "bigger" else a.radius < b.radius


def _bar_value(scene, colour, v):
    return isinstance(scene, BarScene) and scene.value(colour) == v


def _bar_extreme(scene, colour, which):
    if not isinstance(scene, BarScene) or scene.value(colour) is None:
        return False
    values = [v for _, v in scene.bars]
    return scene.value(colour) == (max(values) if which == "tallest" else min(values))


def _bar_compare(scene, c1, rel, c2):
    if not isinstance(scene, BarScene) or scene.value(c1) is None or scene.value(c2) is None:
        return False
    return scene.value(c1) > scene.value(c2) if rel == "higher" else scene.value(c1) < scene.value(c2)


def _title(scene, title):
    return isinstance(scene, DocumentScene) and scene.title == title


def _field(scene, name, v):
    return isinstance(scene, DocumentScene) and dict(scene.fields).get(name) == v


_EVALUATE = {
    "count_colour": _count_colour,
    "count_shape": _count_shape,
    "shape_colour": _shape_colour,
    "exists": _exists,
    "relation": _relation,
    "size": _size,
    "bar_value": _bar_value,
    "bar_extreme": _bar_extreme,
    "bar_compare": _bar_compare,
    "title": _title,
    "field": _field,
}
