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
