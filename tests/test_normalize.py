"""GQA-style normalisation of predictions."""

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
