"""The held-out set's answer matching and the scorer's arithmetic (no fonts, drawing tools or model)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


pictures = _load("heldout_pictures")


@pytest.mark.parametrize("answer, gold, rule, right", [
    ("1204.00", "$1,204.00", "money", True),
    ("$1,204", "$1,204.00", "money", True),
    ("1,204.00 USD", "$1,204.00", "money", True),
    ("€1,204.00", "$1,204.00", "money", False),
    ("32", "$11.25", "money", False),
    ("11.25", "11.25 EUR", "money", True),
    ("11,25 €", "11.25 EUR", "money", True),
    ("the total is 11.25 EUR", "11.25 EUR", "money", False),
    ("11.25 EUR 12.00 EUR", "11.25 EUR", "money", False),
    (" Invoice. ", "INVOICE", "text", True),
    ("Invoices", "INVOICE", "text", False),
    ("", "INVOICE", "text", False),
    (None, "INVOICE", "text", False),
    ("15 mar 2024", "15 Mar 2024", "date", True),
    ("2024-03-15", "15 Mar 2024", "date", False),
    ("five", "5", "number", True),
    ("3 4", "34", "number", False),
    ("1 204.00", "$1,204.00", "money", True),
    ("12.50", "12.5", "number", True),
    ("13", "12.5", "number", False),
    ("1,030", "1000", "within5", True),
    ("1060", "1000", "within5", False),
    ("blue", "1000", "within5", False),
])
def test_match_answer(answer, gold, rule, right):
    assert pictures.match_answer(answer, gold, rule) is right


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError):
        pictures.match_answer("1", "1", "approx")


def test_questions_have_a_lie_and_the_truth_in_the_same_form():
    import random

    questions = []
    for seed in range(20):
        rng = random.Random(seed)
        chart = pictures.random_chart(rng)
        doc, facts = pictures.random_document(rng)
        questions += pictures.chart_questions(chart, rng) + pictures.document_questions(doc, facts, rng)
    for question in questions:
        assert pictures.match_answer(question["gold"], question["gold"], question["match"])
        assert not pictures.match_answer(question["lie_answer"], question["gold"], question["match"])
        assert question["truth"] != question["lie"]


def test_wilson_interval_and_picking_in_turn():
    scorer = _load("reading_heldout")
    low, high = scorer.wilson(0, 10)
    assert low == 0 and 0.27 < high < 0.29
    low, high = scorer.wilson(5, 10)
    assert 0.23 < low < 0.24 and 0.76 < high < 0.77
    chosen = scorer.pick_pictures([{"tool": t, "i": i} for t in "ab" for i in range(3)], 3)
    assert [p["tool"] for p in chosen] == ["a", "b", "a"]
