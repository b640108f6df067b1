"""GQA-style answer normalisation, applied to the *prediction* (the gold answer is left as given,
apart from the same case, article and punctuation folding, which cannot change its meaning).

Example:
    >>> normalize_answer("The Two.")
    '2'
"""

from __future__ import annotations

import re

_NUMBER_WORDS = {
    "zero": "0", "none": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(r"[^\w\s]")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, write number words as digits, squeeze spaces."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def answers_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)
