"""Honest answers: calibrated support, the "unsure" verdict, unchecked rationales, support as an
absolute RED weight, the defaults every surface shares, and answers free of special tokens."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from redgraph.agents import ScriptedReasoner
from redgraph.agents.critic import LocalCritic
from redgraph.decoding.probes import ProbeResult
from redgraph.errors import ModelLoadError
from redgraph.models.calibration import Calibration, load_calibration
from tests.conftest import scene, tiny


def _probe_results(answers: dict[str, tuple[str, float, float]]):
    """A stand-in for score_probes: per question, (image answer, support of the claim, the answer's
    own probability)."""
    def fake(lvlm, image, probes, **_):
        out = []
        for p in probes:
            answer, support, own = answers[p.question]
            other = next(a for a in (p.alternatives or ("x", "y")) if a != p.claimed)
            candidates = {p.claimed: support, other: 1 - support}
            out.append(ProbeResult(p.question, p.claimed, p.alternatives, answer, max(support, 1 - support), support,
                                   candidates, answer_probability=own, family=p.family))
        return out
    return fake


@pytest.fixture
def fake_probes(monkeypatch):
    from redgraph.decoding import probes as probe_module

    def install(answers):
        monkeypatch.setattr(probe_module, "score_probes", _probe_results(answers))
    return install


def _critic(calibration: Calibration | None) -> LocalCritic:
    critic = LocalCritic(tiny("llava_clip"))
    critic.calibration = calibration
    return critic


def test_temperature_tempers_shares_as_a_softmax_of_scaled_log_probabilities():
    calibration = Calibration({"bar_value": 2.0})
    tempered = calibration.temper({"7": 0.9, "3": 0.1}, "bar_value")
    expected = torch.softmax(torch.log(torch.tensor([0.9, 0.1], dtype=torch.float64)) / 2.0, dim=0).tolist()
    assert list(tempered.values()) == pytest.approx(expected)
    assert calibration.temper({"7": 0.9, "3": 0.1}, "title") == {"7": 0.9, "3": 0.1}  # not fitted: unchanged


def test_calibration_round_trips_and_a_broken_file_is_refused_by_name(tmp_path):
    bank = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    Calibration({"title": 0.5}, 0.7, 0.2, bank=bank, fitted={"seed": 0}).save(tmp_path)
    loaded = load_calibration(tmp_path)
    assert loaded.temperatures == {"title": 0.5} and loaded.unsure_below == 0.7 and loaded.novelty_above == 0.2
    assert torch.allclose(loaded.bank, bank, atol=1e-3)  # stored as float16
    assert load_calibration(tmp_path / "elsewhere") is None
    (tmp_path / "calibration.json").write_text(json.dumps({"version": 1, "temperatures": {"title": -1}}))
    with pytest.raises(ModelLoadError, match="calibration.json"):
        load_calibration(tmp_path)


def test_a_probe_the_image_is_unsure_of_makes_the_verdict_unsure_without_a_revision(fake_probes):
    fake_probes({"What is the value of the blue bar?": ("7", 0.8, 0.45)})
    report = _critic(Calibration({}, unsure_below=0.6)).review(scene(), "Q?", ["The blue bar is 7."])
    [review] = report.reviews
    assert review.claims[0].status == "unsure" and not review.claims[0].supported
    assert review.status == "unsure" and not review.accepted and report.verdict == "unsure"
    assert "the image cannot tell whether" in report.critique
    # Without the calibration the same answer is taken on trust, as before.
    assert _critic(None).review(scene(), "Q?", ["The blue bar is 7."]).verdict == "accept"


def test_a_sure_contradiction_rejects_even_beside_an_unsure_probe(fake_probes):
    fake_probes({"Is the red circle left or right of the blue square?": ("left", 0.6, 0.3),
                 "Is there a red circle?": ("yes", 0.9, 0.95), "Is there a blue square?": ("no", 0.05, 0.97)})
    report = _critic(Calibration({}, unsure_below=0.6)).review(
        scene(), "Q?", ["The red circle is left of the blue square."])
    assert report.reviews[0].claims[0].status == "unsupported" and report.verdict == "revise"


def test_a_picture_out_of_the_models_range_makes_every_claim_unsure(fake_probes):
    fake_probes({"What is the value of the blue bar?": ("7", 0.99, 0.99)})
    lvlm = tiny("qwen2_vl")
    far = -torch.nn.functional.normalize(torch.ones(4, lvlm.model.config.text_config.hidden_size), dim=-1)
    critic = LocalCritic(lvlm)
    critic.calibration = Calibration({}, 0.0, novelty_above=0.5, bank=far)
    report = critic.review(scene(), "Q?", ["The blue bar is 7."])
    assert report.novel and report.novelty > 0.5
    assert report.reviews[0].claims[0].status == "unsure" and report.verdict == "unsure"
    critic.calibration = Calibration({}, 0.0, novelty_above=5.0, bank=far)  # the same picture within range
    assert critic.review(scene(), "Q?", ["The blue bar is 7."]).verdict == "accept"


@pytest.mark.parametrize("rationale", ["no", "blue", "The square.", "91"])
def test_a_rationale_with_no_checkable_claim_is_unchecked_never_accepted(rationale, monkeypatch):
    from redgraph.decoding import claim_scoring

    monkeypatch.setattr(claim_scoring, "claim_support", lambda lvlm, image, claims: [0.99] * len(claims))
    report = LocalCritic(tiny("llava_clip")).review(scene(), "What colour is the circle?", [rationale])
    [review] = report.reviews
    assert review.status == "unchecked" and not review.accepted and report.verdict == "revise"
    assert "states no checkable claim" in report.critique
    # P(yes) for every claim was the user's choice: then it is checked that way.
    chosen = LocalCritic(tiny("llava_clip"), scoring="p_yes").review(scene(), "Q?", [rationale])
    assert chosen.verdict == ("accept" if chosen.reviews[0].claims else "revise")


def test_an_answer_weighs_a_rationale_by_its_support_not_by_its_share():
    from redgraph.agents.answerer import answer_with_red

    lvlm = tiny("qwen2_vl")
    alone = answer_with_red(lvlm, scene(), "What colour is the circle?", ["The circle is red."], [0.2],
                            rationale_weight=0.5, max_new_tokens=2)
    assert alone.result.rationale_lambdas == pytest.approx((0.1,))
    pair = answer_with_red(lvlm, scene(), "What colour is the circle?", ["The circle is red.", "It is round."],
                           [0.2, 0.6], rationale_weight=0.5, max_new_tokens=2)
    assert pair.result.rationale_lambdas == pytest.approx((0.1, 0.3))


def test_every_surface_shares_the_graphs_defaults():
    import inspect

    from redgraph.cli.answer import ask as cli_ask
    from redgraph.graphs import RunContext
    from redgraph.serve.schemas import AskRequest

    defaults = {f.name: f.default for f in dataclasses.fields(RunContext)}
    assert defaults["on_exhausted"] == "image_only" and defaults["on_unsure"] == "image_only"
    request = AskRequest(image="data:,", question="Q?")
    assert (request.on_exhausted, request.on_unsure) == (defaults["on_exhausted"], defaults["on_unsure"])
    options = inspect.signature(cli_ask).parameters
    assert (options["on_exhausted"].default, options["on_unsure"].default) == ("image_only", "image_only")


class _UnsureCritic:
    """Every rationale unsure (the image cannot tell)."""

    def review(self, image, question, rationales):
        from redgraph.agents.critic import ClaimCheck, CriticReport, RationaleReview

        reviews = tuple(RationaleReview(r, (ClaimCheck(r, 0.7, False, status="unsure"),), (), 0.7, False, "unsure")
                        for r in rationales)
        return CriticReport(reviews, "unsure", "the image cannot tell")


@pytest.mark.parametrize("policy,rationales,flags", [
    ("image_only", [], ["image_unsure"]),
    ("rationale", ["The circle is blue."], ["image_unsure", "answered_with_unsure_rationale"]),
])
def test_an_unsure_run_is_answered_by_its_policy_and_says_so(tmp_path, policy, rationales, flags):
    from redgraph.graphs import RunContext, ask
    from redgraph.trace.report import render_report

    path = tmp_path / "scene.png"
    scene().save(path)
    reasoner = ScriptedReasoner(["The circle is blue."])
    context = RunContext(answerer=tiny("qwen2_vl"), reasoner=reasoner, critic=_UnsureCritic(), rounds=3,
                         on_unsure=policy, max_new_tokens=3)
    result = ask(path, "What colour is the circle?", context, checkpoint="memory")
    assert result.outcome == "unsure" and result.flags == flags and result.unsure
    assert len(reasoner.critiques) == 1  # no rounds spent on what the image cannot tell
    assert result.state["answer"]["rationales"] == rationales
    if rationales:
        assert result.state["answer"]["rationale_lambdas"] == [pytest.approx(0.7)]  # lambda 1 x support 0.7
    assert result.summary()["unsure"] is True and result.to_dict()["unsure"] is True
    html = render_report(result.state, result.trace)
    assert "Unsure:" in html


def test_the_answer_text_and_the_report_carry_no_special_tokens(tmp_path):
    from redgraph.graphs import ask, make_context
    from redgraph.models.embedded import load_embedded
    from redgraph.trace.report import render_report

    lvlm = load_embedded()
    path = tmp_path / "scene.png"
    from redgraph.data import generate_items

    item = next(i for i in generate_items("test", 6) if i.kind == "bars")
    item.image().save(path)
    result = ask(path, item.question, make_context(lvlm, reasoner=ScriptedReasoner([item.gold_rationale])),
                 checkpoint="memory")
    tokens = result.state["answer"]["tokens"]
    assert result.state["answer"]["finish_reason"] == "eos" and tokens[-1]["special"] is True
    assert all("special" not in t for t in tokens[:-1])
    assert "<|" not in result.answer and "<|im_end|>" not in render_report(result.state, result.trace)


def test_the_shipped_model_knows_its_range():
    """The embedded model's calibration ships with it: its own pictures are in range, a chart drawn by
    matplotlib and a document in a DejaVu font are not (measured: 1.5% of test pictures flagged,
    all of 60 matplotlib charts, 59 of 60 font documents; BENCHMARKS.md)."""
    from redgraph.data import generate_items
    from redgraph.data.tools import tool_items
    from redgraph.models.embedded import load_embedded

    lvlm = load_embedded()
    calibration = lvlm.calibration
    assert calibration is not None and calibration.bank is not None and 0 < calibration.unsure_below < 1
    own = [calibration.is_novel(calibration.novelty(lvlm, i.image())) for i in generate_items("test", 12)]
    assert sum(own) <= 1
    for tool in ("matplotlib", "fonts"):
        pictures = [p for _, p in tool_items(tool, 4)]
        assert sum(calibration.is_novel(calibration.novelty(lvlm, p)) for p in pictures) >= 3, tool


def test_a_lying_reasoner_never_decides_the_answer_with_the_defaults(tmp_path):
    """Through make_context's defaults, a reasoner that repeats a lie every round is caught, and the
    answer is the image's own (before: the lie decided 0.97 of such answers)."""
    from redgraph.data import generate_items
    from redgraph.eval.normalize import answers_match
    from redgraph.graphs import ask, make_context
    from redgraph.models.embedded import load_embedded

    lvlm = load_embedded()
    items = [i for i in generate_items("test", 18) if i.kind == "bars"][:4]
    for item in items:
        path = tmp_path / f"{item.question_id}.png"
        item.image().save(path)
        result = ask(path, item.question, make_context(lvlm, reasoner=ScriptedReasoner([item.misleading_rationale])),
                     checkpoint="memory")
        assert result.outcome in ("image_only", "unsure") and result.state["answer"]["rationales"] == []
        assert answers_match(result.answer, item.answer), (item.question, result.answer, item.answer)


def test_every_number_a_run_takes_is_bounded_in_one_place():
    from redgraph.decoding import REDConfig
    from redgraph.errors import ConfigError, InputError
    from redgraph.graphs import RunContext

    for name, value in (("rationales", 1_000_000), ("rounds", 100_000), ("max_new_tokens", 10**9)):
        with pytest.raises(ConfigError, match=f"{name} must be a whole number from 1 to"):
            RunContext(answerer=None, reasoner=None, critic=None, **{name: value})
    with pytest.raises(ConfigError, match="seed must be"):
        REDConfig(do_sample=True, seed=2**64)
    with pytest.raises(ConfigError, match="temperature must be"):
        REDConfig(do_sample=True, temperature=1e-300)
    lvlm = tiny("qwen2_vl")
    with pytest.raises(InputError, match="question contains the model's special token '<|image_pad|>'"):
        lvlm.check_text_length("What is <|image_pad|>?", "question")


@pytest.mark.parametrize("device,words", [("meta", "holds no weights"), ("cuda:7", "not available"),
                                          ("quantum", "not understood")])
def test_a_device_this_machine_cannot_run_on_is_refused_by_name(device, words):
    import torch

    from redgraph.errors import ConfigError
    from redgraph.models.loading import check_device

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    with pytest.raises(ConfigError, match=words):
        check_device(device)
    assert check_device("cpu").type == "cpu"


def test_an_unsure_run_can_pause_for_a_person(tmp_path):
    from redgraph.graphs import RunContext, ask

    path = tmp_path / "scene.png"
    scene().save(path)
    context = RunContext(answerer=tiny("qwen2_vl"), reasoner=ScriptedReasoner(["The circle is blue."]),
                         critic=_UnsureCritic(), on_unsure="human_review", max_new_tokens=2)
    store = tmp_path / "runs.sqlite"
    paused = ask(path, "What colour is the circle?", context, checkpoint=store, thread_id="u")
    assert paused.answer is None and paused.pending_review["unsure"] is True
    assert paused.pending_review["rationales"] == ["The circle is blue."]
    done = ask(path, "What colour is the circle?", context, checkpoint=store, thread_id="u", resume={"use": [0]})
    assert done.outcome == "unsure" and done.flags == ["image_unsure", "human_reviewed"]
    assert done.state["answer"]["rationale_lambdas"] == [pytest.approx(1.0)]  # a person's choice weighs 1


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_clip", "gemma3", "idefics3"])
def test_the_picture_range_reads_the_visual_tokens_of_every_family(family):
    from redgraph.models.calibration import visual_tokens

    tokens = visual_tokens(tiny(family), scene())
    assert tokens.ndim == 2 and tokens.shape[0] >= 16
    assert torch.allclose(tokens.norm(dim=-1), torch.ones(tokens.shape[0]), atol=1e-5)


def test_expected_calibration_error_and_reliability_on_hand_made_pairs():
    from redgraph.lab.calibrate import expected_calibration_error, reliability

    pairs = [(0.95, True)] * 9 + [(0.95, False)] + [(0.15, False)] * 8 + [(0.15, True)] * 2
    # Bin 0.9-1.0: confidence 0.95, 0.9 true; bin 0.1-0.2: confidence 0.15, 0.2 true -> ECE 0.5*0.05 + 0.5*0.05.
    assert expected_calibration_error(pairs) == pytest.approx(0.05)
    assert reliability(pairs) == [{"bin": [0.1, 0.2], "count": 10, "confidence": 0.15, "true": 0.2},
                                  {"bin": [0.9, 1.0], "count": 10, "confidence": 0.95, "true": 0.9}]
    assert expected_calibration_error([(1.0, True)]) == 0.0
