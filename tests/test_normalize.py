"""Normalisation of predictions after the VQA evaluation's rules."""

import pytest

from redgraph.eval import answers_match, normalize_answer


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [("The women", "women"), ("two", "2"), ("2.", "2"), ("Red!", "red"), ("  a   blue  ", "blue"), ("None", "0")],
)
def test_equivalent_answers_match(prediction, gold):
    assert answers_match(prediction, gold)


@pytest.mark.parametrize(("prediction", "gold"), [("3", "2"), ("left", "right"), ("red blue", "red"), ("", "no")])
def test_different_answers_do_not(prediction, gold):
    assert not answers_match(prediction, gold)


def test_normalize_keeps_digits_and_words():
    assert normalize_answer("The TITLE is: Receipt.") == "title is receipt"


@pytest.mark.parametrize(("text", "expected"), [
    ("3.5", "3.5"), ("1,000", "1000"), ("1,000 people", "1000 people"), ("It is 2.", "it is 2"),
    ("dont", "don't"), ("Don't", "don't"), ("isnt", "isn't"), ("left/right", "left right"),
    ("Yes, it is.", "yes it is"), ("$3.50", "3.50"), ("The man's hat", "man's hat"), ("none", "0"),
])
def test_vqa_rules(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(("prediction", "gold"), [("3.5", "35"), ("3.5", "3 5"), ("1,000", "1 000")])
def test_numbers_keep_their_value(prediction, gold):
    assert not answers_match(prediction, gold)
