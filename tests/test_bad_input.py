"""Bad input to the decoder and the logits processor: clear errors that name the value."""

import pytest
import torch

from redgraph.decoding import RationaleEnhancedLogitsProcessor, REDDecoder, REDRequest
from redgraph.errors import ConfigError, ImageError, InputError, UnsupportedError
from tests.conftest import scene, tiny

QUESTION = "what color is the circle?"


@pytest.mark.parametrize(
    ("question", "rationales", "error", "message"),
    [
        ("", (), InputError, "question is empty"),
        ("   ", (), InputError, "question is empty"),
        (42, (), InputError, "question must be a string, got int"),
        (QUESTION, ("",), InputError, "rationale is empty"),
        (QUESTION, ("fine", "  "), InputError, "rationale 1 is empty"),
        (QUESTION, (7,), InputError, "rationale must be a string, got int"),
    ],
)
def test_bad_question_or_rationale(qwen, question, rationales, error, message):
    with pytest.raises(error, match=message):
        REDDecoder(qwen).decode(scene(), question, rationales)


def test_over_long_rationale_names_the_lengths(qwen):
    too_long = "the red circle is left of the blue square " * 600
    with pytest.raises(InputError, match=r"rationale 0 is \d+ tokens, above this model's limit of 2048 tokens"):
        REDDecoder(qwen).decode(scene(), QUESTION, [too_long])


def test_missing_and_corrupt_images(qwen, tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        REDDecoder(qwen).decode(tmp_path / "nope.png", QUESTION)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="bad.png"):
        REDDecoder(qwen).decode(tmp_path / "bad.png", QUESTION)


def test_wrong_types(qwen):
    with pytest.raises(InputError, match=r"requests\[0\] must be a REDRequest, got tuple"):
        REDDecoder(qwen).decode_batch([(scene(), QUESTION)])
    with pytest.raises(TypeError, match="config must be a REDConfig, got dict"):
        REDDecoder(qwen, {"rationale_weight": 0.5})
    with pytest.raises(ConfigError, match="got 1 rationale weights"):
        REDDecoder(qwen).decode(scene(), QUESTION, ["a", "b"], rationale_weights=(1.0,))
    assert REDDecoder(qwen).decode_batch([]) == []


def test_a_single_string_is_one_rationale_not_many(qwen):
    request = REDRequest(scene(), QUESTION, "one rationale")
    assert request.rationales == ("one rationale",)


def test_processor_refuses_beam_search(llava):
    inputs = llava.encode_image_branch(scene(), QUESTION)
    processor = RationaleEnhancedLogitsProcessor.from_rationales(llava, QUESTION, ["red"], rationale_weight=0.5)
    with pytest.raises(UnsupportedError, match="beam search"):
        llava.model.generate(**inputs, logits_processor=[processor], num_beams=2, max_new_tokens=3, do_sample=False)


def test_processor_reuse_needs_reset(llava):
    inputs = llava.encode_image_branch(scene(), QUESTION)
    processor = RationaleEnhancedLogitsProcessor.from_rationales(llava, QUESTION, ["red"], rationale_weight=0.5)
    first = llava.model.generate(**inputs, logits_processor=[processor], max_new_tokens=4, do_sample=False)
    with pytest.raises(UnsupportedError, match="reset"):
        llava.model.generate(**inputs, logits_processor=[processor], max_new_tokens=4, do_sample=False)
    processor.reset()
    again = llava.model.generate(**inputs, logits_processor=[processor], max_new_tokens=4, do_sample=False)
    assert torch.equal(first, again)


def test_processor_with_lambda_zero_is_the_identity(llava):
    processor = RationaleEnhancedLogitsProcessor.from_rationales(llava, QUESTION, ["red"], rationale_weight=0.0)
    scores = torch.randn(1, 10)
    assert processor(torch.zeros(1, 3, dtype=torch.long), scores) is scores


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rationale_weight": -1.0}, "-1.0"),
        ({"rationale_weight": float("nan")}, "nan"),
        ({"rationale_weight": 0.5, "rationale_weights": [(1.0, 2.0)]}, "got 2 rationale weights"),
    ],
)
def test_processor_validates_its_arguments(llava, kwargs, message):
    inputs = [llava.encode_rationale_branch("red", QUESTION)]
    with pytest.raises(ConfigError, match=message):
        RationaleEnhancedLogitsProcessor(llava.model, inputs, **kwargs)
    with pytest.raises(ConfigError, match="empty"):
        RationaleEnhancedLogitsProcessor(llava.model, [], rationale_weight=0.5)


def test_questions_and_rationales_longer_than_half_the_context_are_refused_before_model_work(tmp_path):
    """Issue 18: a 100,000-character question kept `ask` busy for minutes; now it is refused at once."""
    import time

    from redgraph.agents import LocalCritic, LocalReasoner
    from redgraph.decoding import REDDecoder
    from redgraph.graphs import ask, make_context

    lvlm = tiny("qwen2_vl")
    limit = lvlm.max_text_tokens
    long_text = "What colour is the circle? " * 20_000
    path = tmp_path / "scene.png"
    scene().save(path)
    started = time.perf_counter()
    with pytest.raises(InputError, match=f"question is {len(long_text)} characters, far above .* {limit} tokens"):
        ask(path, long_text, make_context(lvlm), checkpoint="memory")
    with pytest.raises(InputError, match=f"above this model's limit of {limit} tokens"):
        REDDecoder(lvlm).decode(scene(), "What colour?", ["red " * (limit + 10)])
    with pytest.raises(InputError, match="rationale 0 is"):
        LocalCritic(lvlm).review(scene(), "What colour?", ["red " * (limit + 10)])
    with pytest.raises(InputError, match="exceeds the model's context"):
        LocalReasoner(lvlm).write(scene(), "What colour is it? " * (limit // 4))
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("text", ["\x00", "\x00\x01 \n", "\u200b"])
def test_control_only_text_is_refused(text):
    from redgraph.errors import check_question, check_rationale

    with pytest.raises(InputError, match="only control characters|empty"):
        check_question(text)
    with pytest.raises(InputError, match="only control characters|empty"):
        check_rationale(text)


@pytest.mark.parametrize("weight", [1e308, 101.0])
def test_a_lambda_beyond_100_is_refused(weight):
    import re

    from redgraph.decoding import REDConfig
    from redgraph.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(f"at most 100, got {weight!r}")):
        REDConfig(rationale_weight=weight)


def test_text_that_is_not_valid_unicode_is_refused():
    """Found by benchmarks/fuzz.py: a lone surrogate (a JSON "\\ud800" escape) reached the tokenizer."""
    from redgraph.errors import check_question, check_rationale

    with pytest.raises(InputError, match="question is not valid Unicode"):
        check_question("What \ud800?")
    with pytest.raises(InputError, match="rationale 2 is not valid Unicode"):
        check_rationale("red \udfff", 2)
    with pytest.raises(InputError, match="rationale is not valid Unicode"):  # every text the tokenizer would read
        tiny("qwen2_vl").check_text_length("red \ud800", "rationale")


@pytest.mark.parametrize("where, message", [("/dev/null", "not a regular file"), ("folder", "is a folder"),
                                            ("garbage", "file is not a database"),
                                            ("/proc/version", "as a SQLite database")])
def test_a_checkpoint_path_that_cannot_hold_a_database_is_named_before_any_run(tmp_path, where, message):
    import os

    from redgraph.graphs.storage import open_checkpointer

    if where == "folder":
        where = str(tmp_path)
    elif where == "garbage":
        where = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("not a database, and kept as it is\n" * 10)
    elif not os.path.exists(where):
        pytest.skip(f"{where} does not exist here")
    with pytest.raises(ConfigError, match=message):
        open_checkpointer(where)
    if where.endswith("notes.txt"):
        assert (tmp_path / "notes.txt").read_text().startswith("not a database")
