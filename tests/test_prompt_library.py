"""The reasoner's prompt library."""

import pytest

from redgraph.agents import STYLES, get_style
from redgraph.errors import ConfigError, InputError
from redgraph.models.prompts import PromptFormat


def test_library_has_the_plain_scene_graph_and_three_two_step_sdrt_styles():
    assert {"step_by_step", "scene_graph", "decompose", "plan", "text_layout"} <= set(STYLES)
    assert [s.name for s in STYLES.values() if s.two_step] == ["decompose", "plan", "text_layout"]
    assert STYLES["facts"].rationale_prompt("How many bars?") == PromptFormat().rationale_request.format(
        question="How many bars?")


@pytest.mark.parametrize("name", ["decompose", "plan", "text_layout"])
def test_two_step_styles_feed_the_analysis_into_the_rationale(name):
    style = get_style(name)
    first = style.analysis_prompt("What is the total?")
    assert "What is the total?" in first and "Do not give the final answer." in first
    second = style.rationale_prompt("What is the total?", analysis="Total: 42 at the bottom.")
    assert "Total: 42 at the bottom." in second and "What is the total?" in second
    with pytest.raises(ConfigError, match="two-step"):
        style.rationale_prompt("What is the total?")


def test_a_critique_asks_for_a_revision():
    text = get_style("step_by_step").rationale_prompt("Q?", critique="'The bar is 9.' is not supported.")
    assert "'The bar is 9.' is not supported." in text and "again" in text


def test_bad_names_and_questions():
    with pytest.raises(ConfigError, match="'poetic'"):
        get_style("poetic")
    with pytest.raises(InputError, match="empty"):
        get_style("plan").analysis_prompt("  ")
    with pytest.raises(ConfigError, match="one step"):
        get_style("scene_graph").analysis_prompt("Q?")
