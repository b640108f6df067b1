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


def test_the_wilson_interval_holds_the_share_and_stays_in_0_1():
    from redgraph.eval.report import wilson_interval

    assert wilson_interval(0, 0) == [0.0, 1.0]
    low, high = wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[0] > 0.6
