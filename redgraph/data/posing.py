"""The questions, answers and rationales the generator poses about a scene: each category's poser
(a question, its answer, the gold claims behind it, and a misleading rationale with its wrong
answer), the facts a scene makes true, and false claims made from true ones."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

from redgraph.data import questions
from redgraph.data.claims import Claim
from redgraph.data.scenes import SHAPES, BarScene, DocumentScene, Scene, ShapeScene, vocabulary_of
from redgraph.data.vocabulary import STANDARD, Vocabulary
from redgraph.errors import InputError, RedgraphError

CATEGORIES = {
    "shapes": ("count_colour", "count_shape", "shape_colour", "exists", "relation_lr", "relation_ab", "size"),
    "bars": ("tallest", "shortest", "bar_value", "bar_compare"),
    "document": ("title", "field"),
}
ALL_CATEGORIES = tuple(category for kind in CATEGORIES.values() for category in kind)
CLEAR = 16  # pixels: relations are only asked about (or claimed at random) when this clear

Posed = tuple[str, str, str, list[Claim], list[Claim], str]  # category, q, a, gold, misleading, misleading a


def check_categories(names: Iterable[str], error: type[RedgraphError] = InputError) -> list[str]:
    """``names`` (at least one), each a question category of ALL_CATEGORIES; else ``error`` naming the others."""
    names = list(names)
    unknown = sorted(set(names) - set(ALL_CATEGORIES))
    if unknown or not names:
        raise error(f"unknown question categories {', '.join(map(repr, unknown)) or '(none given)'}; "
                    f"choose from {', '.join(ALL_CATEGORIES)}")
    return names


def check_category_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """``weights`` completed to every category (not named: 1); raises InputError naming a bad entry."""
    if weights:
        check_categories(weights)
    full = {category: weights.get(category, 1.0) for category in ALL_CATEGORIES}
    for category, weight in full.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise InputError(f"the weight of category {category} must be a number of at least 0, got {weight!r}")
    if not any(full.values()):
        raise InputError("category weights are all 0; give at least one category a positive weight")
    return {category: float(weight) for category, weight in full.items()}


def _weighted_order(categories: list[str], weights: Mapping[str, float], rng: random.Random) -> list[str]:
    """The categories of positive weight, each next one drawn with probability by weight."""
    pool = [c for c in categories if weights[c] > 0]
    order = []
    while pool:
        pick = rng.random() * sum(weights[c] for c in pool)
        for j, category in enumerate(pool):
            pick -= weights[category]
            if pick < 0 or j == len(pool) - 1:
                order.append(pool.pop(j))
                break
    return order


def pose(scene: Scene, rng: random.Random, weights: Mapping[str, float] | None = None) -> Posed | None:
    categories = list(CATEGORIES[scene.kind])
    if weights is None:
        rng.shuffle(categories)
    else:
        categories = _weighted_order(categories, weights, rng)
    for category in categories:
        posed = _POSERS[category](scene, rng)
        if posed is not None:
            return (category, *posed)
    return None


def _other(values, value, rng: random.Random):
    return rng.choice([v for v in values if v != value])


def _other_count(n: int, rng: random.Random) -> int:
    return n + 1 if n == 0 or rng.random() < 0.5 else n - 1


def _count_colour(scene: ShapeScene, rng):
    present = sorted({o.colour for o in scene.objects})
    colour = rng.choice(present) if rng.random() < 0.8 else rng.choice(vocabulary_of(scene).colours)
    members = [o for o in scene.objects if o.colour == colour]
    fake = [Claim("exists", (colour, s, True)) for s in SHAPES if scene.find(colour, s) is None]
    return _count(members, fake, Claim("count_colour", (colour, 0)), questions.count_colour(colour), rng)


def _count_shape(scene: ShapeScene, rng):
    shape = rng.choice(SHAPES)
    members = [o for o in scene.objects if o.shape == shape]
    fake = [Claim("exists", (c, shape, True)) for c in vocabulary_of(scene).colours if scene.find(c, shape) is None]
    return _count(members, fake, Claim("count_shape", (shape, 0)), questions.count_shape(shape), rng)


def _count(members, fake: list[Claim], count: Claim, question: str, rng):
    """A counting question: gold lists the members; misleading drops some or invents ``fake`` ones."""
    n, wrong = len(members), _other_count(len(members), rng)
    gold = [Claim("exists", (o.colour, o.shape, True)) for o in members] + [Claim(count.kind, (count.args[0], n))]
    shown = members[:wrong] if wrong < n else members
    misleading = [Claim("exists", (o.colour, o.shape, True)) for o in shown] + fake[: max(0, wrong - n)]
    misleading.append(Claim(count.kind, (count.args[0], wrong)))
    return question, str(n), gold, misleading, str(wrong)


def _shape_colour(scene: ShapeScene, rng):
    unique = [s for s in SHAPES if sum(o.shape == s for o in scene.objects) == 1]
    if not unique:
        return None
    shape = rng.choice(unique)
    colour = next(o.colour for o in scene.objects if o.shape == shape)
    wrong = _other(vocabulary_of(scene).colours, colour, rng)
    return (questions.shape_colour(shape), colour, [Claim("shape_colour", (shape, colour))],
            [Claim("shape_colour", (shape, wrong))], wrong)


def _exists(scene: ShapeScene, rng):
    if rng.random() < 0.5:
        target = rng.choice(scene.objects)
        colour, shape = target.colour, target.shape
    else:
        absent = [(c, s) for c in vocabulary_of(scene).colours for s in SHAPES if scene.find(c, s) is None]
        colour, shape = rng.choice(absent)
    present = scene.find(colour, shape) is not None
    answer, wrong = ("yes", "no") if present else ("no", "yes")
    return (questions.exists(colour, shape), answer, [Claim("exists", (colour, shape, present))],
            [Claim("exists", (colour, shape, not present))], wrong)


def _clear_pairs(scene: ShapeScene, axis: str):
    return [(a, b) for a in scene.objects for b in scene.objects
            if a is not b and abs(getattr(a, axis) - getattr(b, axis)) >= CLEAR]


def _relation(scene: ShapeScene, rng, axis: str, words: tuple[str, str]):
    pairs = _clear_pairs(scene, axis)
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    first = getattr(a, axis) < getattr(b, axis)
    answer, wrong = words if first else words[::-1]
    rel = {"left": "left of", "right": "right of"}.get(answer, answer)
    wrong_rel = {"left": "left of", "right": "right of"}.get(wrong, wrong)
    gold = [Claim("relation", (a.colour, a.shape, rel, b.colour, b.shape))]
    misleading = [Claim("relation", (a.colour, a.shape, wrong_rel, b.colour, b.shape))]
    question = (questions.left_right if axis == "x" else questions.above_below)(a.name, b.name)
    return question, answer, gold, misleading, wrong


def _size(scene: ShapeScene, rng):
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a.size != b.size]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    answer, wrong = ("bigger", "smaller") if a.radius > b.radius else ("smaller", "bigger")
    return (questions.size(a.name, b.name), answer,
            [Claim("size", (a.colour, a.shape, answer, b.colour, b.shape))],
            [Claim("size", (a.colour, a.shape, wrong, b.colour, b.shape))], wrong)


def _extreme(scene: BarScene, rng, which: str):
    pick = max if which == "tallest" else min
    colour, value = pick(scene.bars, key=lambda bar: bar[1])
    wrong, wrong_value = _other(scene.bars, (colour, value), rng)
    return (questions.bar_extreme(which), colour,
            [Claim("bar_value", (colour, value)), Claim("bar_extreme", (colour, which))],
            [Claim("bar_value", (wrong, wrong_value)), Claim("bar_extreme", (wrong, which))], wrong)


def _bar_value(scene: BarScene, rng):
    colour, value = rng.choice(scene.bars)
    wrong = _other(vocabulary_of(scene).bar_values, value, rng)
    return (questions.bar_value(colour), str(value), [Claim("bar_value", (colour, value))],
            [Claim("bar_value", (colour, wrong))], str(wrong))


def _bar_compare(scene: BarScene, rng):
    (c1, v1), (c2, v2) = rng.sample(scene.bars, 2)
    high, low = (c1, c2) if v1 > v2 else (c2, c1)
    gold = [Claim("bar_value", (c1, v1)), Claim("bar_value", (c2, v2)), Claim("bar_compare", (high, "higher", low))]
    misleading = [Claim("bar_value", (c1, v2)), Claim("bar_value", (c2, v1)), Claim("bar_compare", (low, "higher", high))]
    return questions.bar_compare(c1, c2), high, gold, misleading, low


def _title(scene: DocumentScene, rng):
    wrong = _other(vocabulary_of(scene).titles, scene.title, rng)
    return (questions.title(), scene.title, [Claim("title", (scene.title,))], [Claim("title", (wrong,))], wrong)


def _field(scene: DocumentScene, rng):
    name, value = rng.choice(scene.fields)
    wrong = vocabulary_of(scene).other_field_value(value, rng)
    return (questions.field(name), str(value), [Claim("field", (name, value))],
            [Claim("field", (name, wrong))], str(wrong))


_POSERS = {
    "count_colour": _count_colour,
    "count_shape": _count_shape,
    "shape_colour": _shape_colour,
    "exists": _exists,
    "relation_lr": lambda scene, rng: _relation(scene, rng, "x", ("left", "right")),
    "relation_ab": lambda scene, rng: _relation(scene, rng, "y", ("above", "below")),
    "size": _size,
    "tallest": lambda scene, rng: _extreme(scene, rng, "tallest"),
    "shortest": lambda scene, rng: _extreme(scene, rng, "shortest"),
    "bar_value": _bar_value,
    "bar_compare": _bar_compare,
    "title": _title,
    "field": _field,
}


# --- random claims ------------------------------------------------------------------------------

def scene_facts(scene: Scene) -> list[Claim]:
    """True claims about ``scene`` (relations only where clear by at least 16 pixels)."""
    if isinstance(scene, ShapeScene):
        objs = scene.objects
        colours = vocabulary_of(scene).colours
        facts = [Claim("count_colour", (c, sum(o.colour == c for o in objs))) for c in colours]
        facts += [Claim("count_shape", (s, sum(o.shape == s for o in objs))) for s in SHAPES]
        facts += [Claim("shape_colour", (o.shape, o.colour)) for o in objs
                  if sum(p.shape == o.shape for p in objs) == 1]
        facts += [Claim("exists", (c, s, scene.find(c, s) is not None)) for c in colours for s in SHAPES]
        for axis, (before, after) in (("x", ("left of", "right of")), ("y", ("above", "below"))):
            for a, b in _clear_pairs(scene, axis):
                rel = before if getattr(a, axis) < getattr(b, axis) else after
                facts.append(Claim("relation", (a.colour, a.shape, rel, b.colour, b.shape)))
        facts += [Claim("size", (a.colour, a.shape, "bigger" if a.radius > b.radius else "smaller", b.colour, b.shape))
                  for a in objs for b in objs if a.size != b.size]
        return facts
    if isinstance(scene, BarScene):
        values = [v for _, v in scene.bars]
        facts = [Claim("bar_value", bar) for bar in scene.bars]
        facts += [Claim("bar_extreme", (c, "tallest")) for c, v in scene.bars if v == max(values)]
        facts += [Claim("bar_extreme", (c, "shortest")) for c, v in scene.bars if v == min(values)]
        facts += [Claim("bar_compare", (c1, "higher" if v1 > v2 else "lower", c2))
                  for c1, v1 in scene.bars for c2, v2 in scene.bars if c1 != c2]
        return facts
    return [Claim("title", (scene.title,))] + [Claim("field", f) for f in scene.fields]


_FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above",
         "bigger": "smaller", "smaller": "bigger", "higher": "lower", "lower": "higher",
         "tallest": "shortest", "shortest": "tallest"}


def falsify(claim: Claim, rng: random.Random, vocabulary: Vocabulary = STANDARD) -> Claim:
    """A claim of the same kind that says something else (false whenever ``claim`` is a fact), its
    other words and numbers from ``vocabulary``."""
    kind, args = claim.kind, claim.args
    if kind in ("count_colour", "count_shape"):
        return Claim(kind, (args[0], _other_count(args[1], rng)))
    if kind == "shape_colour":
        return Claim(kind, (args[0], _other(vocabulary.colours, args[1], rng)))
    if kind == "exists":
        return Claim(kind, (args[0], args[1], not args[2]))
    if kind in ("relation", "size"):
        return Claim(kind, (args[0], args[1], _FLIP[args[2]], args[3], args[4]))
    if kind == "bar_value":
        return Claim(kind, (args[0], _other(vocabulary.bar_values, args[1], rng)))
    if kind == "bar_extreme":
        return Claim(kind, (args[0], _FLIP[args[1]]))
    if kind == "bar_compare":
        return Claim(kind, (args[0], _FLIP[args[1]], args[2]))
    if kind == "title":
        return Claim(kind, (_other(vocabulary.titles, args[0], rng),))
    return Claim(kind, (args[0], vocabulary.other_field_value(args[1], rng)))


def random_claims(scene: Scene, rng: random.Random, count: int = 4) -> list[Claim]:
    """``count`` claims about ``scene``, half true and half false, in random order."""
    facts = scene_facts(scene)
    picked = [rng.choice(facts) for _ in range(count)]
    vocabulary = vocabulary_of(scene)
    return [falsify(claim, rng, vocabulary) if index % 2 else claim for index, claim in enumerate(picked)]
