"""REDConfig validation: every bad value is refused with a message naming it."""

import math

import pytest

from redgraph.decoding import REDConfig
from redgraph.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rationale_weight": -0.1}, "-0.1"),
        ({"rationale_weight": math.nan}, "nan"),
        ({"rationale_weight": math.inf}, "inf"),
        ({"rationale_weight": "0.5"}, "'0.5'"),
        ({"rationale_weight": True}, "True"),
        ({"rationale_weights": (1.0, -2.0)}, "-2.0"),
        ({"rationale_weights": (0.0, 0.0)}, "all zero"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "2.5"),
        ({"temperature": -1.0}, "temperature"),
        ({"do_sample": True, "temperature": 0.0}, "temperature 0"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "1.5"),
        ({"top_p": 0}, "top_p"),
        ({"seed": "7"}, "'7'"),
        ({"stop_strings": "END"}, "'END'"),
        ({"stop_strings": ("",)}, "''"),
        ({"eos_token_ids": (-1,)}, "-1"),
        ({"do_sample": "yes"}, "'yes'"),
    ],
)
def test_bad_values_are_refused_and_named(kwargs, named):
    with pytest.raises(ConfigError) as info:
        REDConfig(**kwargs)
    assert named in str(info.value)


def test_config_is_frozen_and_normalises_sequences():
    config = REDConfig(rationale_weights=[1, 2], stop_strings=["\n"], eos_token_ids=[3])
    assert config.rationale_weights == (1, 2) and config.stop_strings == ("\n",) and config.eos_token_ids == (3,)
    assert config.greedy
    with pytest.raises(AttributeError):
        config.rationale_weight = 2.0


def test_top_logprobs_are_reds_most_likely_tokens_at_each_step():
    from redgraph.decoding import REDDecoder
    from tests.conftest import scene, tiny

    result = REDDecoder(tiny("qwen2_vl"), REDConfig(max_new_tokens=4, top_logprobs=5)).decode(
        scene(), "what color is the circle?", ["the circle is red"])
    for token in result.tokens:
        assert len(token.top_logprobs) == 5
        assert token.top_logprobs[0] == (token.token_id, pytest.approx(token.logprob, abs=1e-6))
        assert all(a[1] >= b[1] for a, b in zip(token.top_logprobs, token.top_logprobs[1:]))
    assert "top_logprobs" in result.to_dict()["tokens"][0]
    plain = REDDecoder(tiny("qwen2_vl"), REDConfig(max_new_tokens=2)).decode(scene(), "what color is the circle?")
    assert "top_logprobs" not in plain.to_dict()["tokens"][0]  # traces without them stay as they were
    for bad in (-1, 21, True, 2.0):
        with pytest.raises(ConfigError, match="top_logprobs"):
            REDConfig(top_logprobs=bad)
    with pytest.raises(ConfigError, match="record_attribution"):
        REDConfig(top_logprobs=2, record_attribution=False)
