"""Answer normalisation after the VQA evaluation's rules, applied to the *prediction* (the gold answer
goes through the same folding, which cannot change its meaning).

- case is folded, and articles (a, an, the) are dropped;
- number words up to ten become digits ("two" -> "2", "none" -> "0");
- numbers keep their form: a decimal point stays ("3.5"), a thousands comma goes ("1,000" -> "1000");
- a period ending a word, and other punctuation, go ("red!" -> "red", "left/right" -> "left right");
- contractions written without their apostrophe get it back ("dont" -> "don't"), and apostrophes
  inside words stay, so "don't" and "dont" match.

Example:
    >>> normalize_answer("The Two.")
    '2'
    >>> normalize_answer("3.5"), normalize_answer("1,000 people")
    ('3.5', '1000 people')
"""

from __future__ import annotations

import re

_NUMBER_WORDS = {
    "zero": "0", "none": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
# Contractions as answers are typed without the apostrophe, and what they mean.
_CONTRACTIONS = {
    "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't", "hes": "he's", "im": "i'm",
    "isnt": "isn't", "ive": "i've", "shes": "she's", "shouldnt": "shouldn't", "thats": "that's",
    "theres": "there's", "theyre": "they're", "wasnt": "wasn't", "werent": "weren't", "whats": "what's",
    "wont": "won't", "wouldnt": "wouldn't", "youre": "you're",
}
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
_PUNCTUATION = re.compile(r"[^\w\s\u0001\u0002]")


def normalize_answer(text: str) -> str:
    """The answer in the comparable form described in the module docstring."""
    text = _THOUSANDS_COMMA.sub("", text.lower())
    # Shield what must survive the punctuation pass, then restore it.
    text = _INNER_APOSTROPHE.sub("\u0001", _DECIMAL_POINT.sub("\u0002", text))
    words = _PUNCTUATION.sub(" ", text).replace("\u0001", "'").replace("\u0002", ".").split()
    words = [_CONTRACTIONS.get(w, _NUMBER_WORDS.get(w, w)) for w in words if w not in _ARTICLES]
    return " ".join(words)


def answers_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)
