"""How the synthetic data words its questions: one function per question form.

The generator poses its items with these, and the critic's grammar decomposer asks the image the
same questions about a claim, so a model trained on the data is asked in words it knows.
"""

from __future__ import annotations


def count_colour(colour: str) -> str:
    return f"How many {colour} shapes are there?"


def count_shape(shape: str) -> str:
    return f"How many {shape}s are there?"


def shape_colour(shape: str) -> str:
    return f"What colour is the {shape}?"


def exists(colour: str, shape: str) -> str:
    return f"Is there a {colour} {shape}?"


def left_right(first: str, second: str) -> str:
    """``first`` and ``second`` name shapes, e.g. "red circle"."""
    return f"Is the {first} left or right of the {second}?"


def above_below(first: str, second: str) -> str:
    return f"Is the {first} above or below the {second}?"


def size(first: str, second: str) -> str:
    return f"Is the {first} bigger or smaller than the {second}?"


def bar_extreme(which: str) -> str:
    """``which``: tallest or shortest."""
    return f"Which bar is the {which}?"


def bar_value(colour: str) -> str:
    return f"What is the value of the {colour} bar?"


def bar_compare(first: str, second: str) -> str:
    """``first`` and ``second`` are bar colours."""
    return f"Which bar is higher, the {first} bar or the {second} bar?"


def title() -> str:
    return "What is the title?"


def field(name: str) -> str:
    return f"What is the {name}?"
