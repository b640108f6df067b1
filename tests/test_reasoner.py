"""The local reasoner: styles in turn, two-step styles, critique passed back, seeded resampling."""

import pytest

from redgraph.agents.reasoner import LocalReasoner
from redgraph.errors import ConfigError, InputError
from redgraph.decoding import generate as generation
from tests.conftest import scene, tiny


@pytest.fixture
def prompts_seen(monkeypatch):
    seen = []
    real = generation.generate_text

    def spy(lvlm, texts, images, max_new_tokens, **options):
        seen.append((texts[0], options))
        return real(lvlm, texts, images, max_new_tokens, **options)

    monkeypatch.setattr(generation, "generate_text", spy)
    return seen


def test_styles_in_turn_with_two_step_analysis(prompts_seen):
    reasoner = LocalReasoner(tiny("qwen2_vl"), styles=("facts", "decompose"), max_new_tokens=4)
    rationales = reasoner.write(scene(), "What colour is the circle?", k=3)
    assert [(r.style, r.sampled, r.analysis is not None) for r in rationales] == [
        ("facts", False, False), ("decompose", False, True), ("facts", True, False)]
    assert len(prompts_seen) == 4  # facts; decompose analysis + rationale; facts again
    assert "List the objects and regions" in prompts_seen[1][0]
    assert "Analysis:" in prompts_seen[2][0]
    assert prompts_seen[3][1] == {"temperature": 0.7, "seed": 2}
    assert all(r.model == reasoner.lvlm.name for r in rationales)


def test_resampling_is_seeded():
    reasoner = LocalReasoner(tiny("llava_clip"), max_new_tokens=6)
    first = reasoner.write(scene(), "What colour is the circle?", k=3)
    again = reasoner.write(scene(), "What colour is the circle?", k=3)
    assert [r.text for r in first] == [r.text for r in again]


def test_a_critique_reaches_the_prompt(prompts_seen):
    LocalReasoner(tiny("llava_clip"), max_new_tokens=2).write(scene(), "Q?", critique='"The bar is 9." is false.')
    assert '"The bar is 9." is false.' in prompts_seen[0][0]


def test_bad_settings():
    lvlm = tiny("llava_clip")
    with pytest.raises(ConfigError, match="'haiku'"):
        LocalReasoner(lvlm, styles=("haiku",))
    with pytest.raises(ConfigError, match="non-empty list"):
        LocalReasoner(lvlm, styles="facts")
    with pytest.raises(ConfigError, match="k "):
        LocalReasoner(lvlm).write(scene(), "Q?", k=0)
    with pytest.raises(InputError, match="empty"):
        LocalReasoner(lvlm).write(scene(), "", k=1)
