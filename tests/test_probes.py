"""The question-answering critic: claims decomposed into probes, probes scored on the image branch
exactly as the full prompt would score them, and critiques that name what the image answered."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest
import torch

from redgraph.agents.critic import LocalCritic
from redgraph.agents.decompose import (
    ChatDecomposer,
    ClaimProbes,
    GrammarDecomposer,
    LVLMDecomposer,
    ProbeSpec,
    decompose_all,
    parse_probe_line,
)
from redgraph.data import generate_items
from redgraph.data.claims import Claim
from redgraph.decoding.probes import Probe, score_probes
from redgraph.errors import InputError, RemoteModelError
from redgraph.models import FAMILIES
from tests.conftest import scene, tiny
from tests.test_remote_reasoners import ChatCompletions

DIGITS = tuple(str(n) for n in range(10))
COLOURS = ("red", "green", "blue", "yellow", "purple")

# One claim of every kind in the grammar, and the probes it must become.
GRAMMAR_CASES = [
    (Claim("count_colour", ("red", 2)), [("How many red shapes are there?", "2", DIGITS)]),
    (Claim("count_shape", ("circle", 1)), [("How many circles are there?", "1", DIGITS)]),
    (Claim("shape_colour", ("square", "blue")), [("What colour is the square?", "blue", COLOURS)]),
    (Claim("exists", ("green", "triangle", False)), [("Is there a green triangle?", "no", ("yes", "no"))]),
    (Claim("relation", ("red", "circle", "right of", "blue", "square")), [
        ("Is the red circle left or right of the blue square?", "right", ("left", "right")),
        ("Is there a red circle?", "yes", ("yes", "no")), ("Is there a blue square?", "yes", ("yes", "no"))]),
    (Claim("relation", ("red", "circle", "below", "blue", "square")), [
        ("Is the red circle above or below the blue square?", "below", ("above", "below")),
        ("Is there a red circle?", "yes", ("yes", "no")), ("Is there a blue square?", "yes", ("yes", "no"))]),
    (Claim("size", ("red", "circle", "smaller", "blue", "square")), [
        ("Is the red circle bigger or smaller than the blue square?", "smaller", ("bigger", "smaller")),
        ("Is there a red circle?", "yes", ("yes", "no")), ("Is there a blue square?", "yes", ("yes", "no"))]),
    (Claim("bar_value", ("blue", 2)), [("What is the value of the blue bar?", "2", DIGITS[1:])]),
    (Claim("bar_extreme", ("red", "shortest")), [("Which bar is the shortest?", "red", COLOURS)]),
    (Claim("bar_compare", ("red", "lower", "blue")), [("Which bar is higher, the red bar or the blue bar?", "blue",
                                                       ("red", "blue"))]),
    (Claim("title", ("menu",)), [("What is the title?", "menu", ("receipt", "invoice", "menu", "report", "order",
                                                                  "budget", "sales", "ticket", "notes", "agenda"))]),
    (Claim("field", ("total", 42)), [("What is the total?", "42", None)]),
]


@pytest.mark.parametrize(("claim", "expected"), GRAMMAR_CASES, ids=lambda c: getattr(c, "kind", ""))
def test_every_grammar_kind_becomes_probes(claim, expected):
    [probes] = GrammarDecomposer().decompose([claim.text])
    assert [(p.question, p.claimed, p.alternatives) for p in probes] == expected


def test_grammar_probes_ask_the_datas_own_questions():
    """The misleading claim of an item asks the item's question and asserts the misleading answer."""
    seen = set()
    for item in generate_items("test", 60, seed=3):
        if item.category in ("tallest", "shortest", "bar_compare", "count_colour", "count_shape"):
            continue  # their misleading rationales hold several claims
        [probes] = GrammarDecomposer().decompose([item.misleading_rationale])
        assert probes[0].question == item.question and probes[0].claimed == item.misleading_answer
        seen.add(item.category)
    assert seen == {"shape_colour", "exists", "relation_lr", "relation_ab", "size", "bar_value", "title", "field"}


def test_claims_outside_the_grammar_are_left_to_the_next_decomposer():
    assert GrammarDecomposer().decompose(["The sky looks calm.", "The red bar is higher than the red bar."]) == [
        None, None]


def test_probe_validation_names_the_value():
    with pytest.raises(InputError, match="'purple' is not among"):
        Probe("What colour?", "purple", ("red", "blue"))
    with pytest.raises(InputError, match="question"):
        Probe(" ", "red")
    with pytest.raises(InputError, match="alternatives"):
        Probe("What colour?", "red", ("red",))
    with pytest.raises(InputError, match="probe 1"):
        score_probes(tiny("llava_clip"), scene(), [Probe("Q?", "a"), "not a probe"])


def _full_prompt_logprob(lvlm, image, question: str, answer: str) -> float:
    """log P(answer tokens + end) with the whole image-branch prompt run in one plain forward."""
    inputs = lvlm.encode_image_branch(image, question)
    answer_ids = lvlm.tokenizer(answer, add_special_tokens=False)["input_ids"] + [lvlm.tokenizer.eos_token_id]
    extra = torch.tensor([answer_ids])
    length = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    with torch.no_grad():
        logprobs = torch.log_softmax(lvlm.model(**inputs).logits[0].float(), dim=-1)
    return sum(float(logprobs[length - 1 + i, token]) for i, token in enumerate(answer_ids))


def _greedy(lvlm, image, question: str, max_new_tokens: int) -> str:
    inputs = lvlm.encode_image_branch(image, question)
    with torch.no_grad():
        output = lvlm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=lvlm.tokenizer.eos_token_id, pad_token_id=lvlm.tokenizer.pad_token_id)
    return lvlm.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


PROBES = [
    Probe("What colour is the circle?", "red", ("red", "blue", "green")),
    Probe("Is there a blue square?", "no", ("yes", "no")),
    Probe("How many shapes are there?", "12", None),
    Probe("Is the circle left or right of the square?", "left", ("left", "right")),
]


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_scores_equal_each_full_prompt(family, monkeypatch):
    from redgraph.decoding import probes as probe_module

    from redgraph.decoding import prefix_cache

    lvlm = tiny(family)
    prefix_cache.prefix_cache_of(lvlm.model).clear()
    prefills = []
    real = probe_module.prefill_row
    monkeypatch.setattr(probe_module, "prefill_row", lambda *a: prefills.append(1) or real(*a))
    monkeypatch.setattr(prefix_cache, "prefill_row", lambda *a: prefills.append(1) or real(*a))
    results = score_probes(lvlm, scene(), PROBES, max_answer_tokens=4)
    assert len(prefills) == 1  # the image prefix, once for every probe, candidate and greedy answer
    own = _greedy(lvlm, scene(), PROBES[2].question, 4)  # the open probe's candidates: claimed and own answer
    assert set(results[2].candidates) == ({"12", own} if own else {"12"})
    for probe, result in zip(PROBES, results):
        names = list(probe.alternatives or ([probe.claimed, own] if own and own != probe.claimed else [probe.claimed]))
        full = torch.tensor([_full_prompt_logprob(lvlm, scene(), probe.question, n) for n in names],
                            dtype=torch.float64)
        expected = dict(zip(names, torch.softmax(full, dim=0).tolist()))
        assert result.candidates == pytest.approx(expected, abs=1e-4)
        assert result.support == pytest.approx(expected[probe.claimed], abs=1e-4)
        best = max(expected, key=expected.get)
        assert result.image_answer == best and result.image_probability == pytest.approx(expected[best], abs=1e-4)


def test_the_image_changes_the_answer_probabilities():
    lvlm = tiny("qwen2_vl")
    red, green = (score_probes(lvlm, scene(c), PROBES[:1])[0].candidates for c in ("red", "green"))
    assert red != pytest.approx(green, abs=1e-6)


def _probe_results(answers: dict[str, tuple[str, float]]):
    """A stand-in for score_probes: each question's image answer and the probability of the claimed answer."""
    from redgraph.decoding.probes import ProbeResult

    def fake(lvlm, image, probes):
        out = []
        for p in probes:
            answer, support = answers[p.question]
            out.append(ProbeResult(p.question, p.claimed, p.alternatives, answer, 1 - support if answer != p.claimed
                                   else support, support, {}))
        return out
    return fake


def test_the_critique_names_what_the_image_answered(monkeypatch):
    from redgraph.decoding import probes as probe_module

    monkeypatch.setattr(probe_module, "score_probes", _probe_results({
        "What is the value of the blue bar?": ("9", 0.03), "Which bar is the tallest?": ("blue", 0.97)}))
    report = LocalCritic(tiny("llava_clip")).review(scene(), "Which bar is the tallest?",
                                                    ["The blue bar is 2. The blue bar is the tallest."])
    first, second = report.reviews[0].claims
    assert (first.method, first.support, first.decomposer) == ("probes", 0.03, "grammar")
    assert second.supported and report.verdict == "revise" and report.weights == (0.03,)
    assert report.critique == ('Rationale 1: "The blue bar is 2." is not supported by the image: asked '
                               '"What is the value of the blue bar?", the image answers 9 (p 0.97).')


def test_a_claim_with_several_probes_is_as_strong_as_its_weakest(monkeypatch):
    from redgraph.decoding import probes as probe_module

    monkeypatch.setattr(probe_module, "score_probes", _probe_results({
        "Is the red circle left or right of the blue square?": ("left", 0.9),
        "Is there a red circle?": ("yes", 0.8), "Is there a blue square?": ("no", 0.1)}))
    [check] = LocalCritic(tiny("llava_clip")).score_claims(scene(), ["The red circle is left of the blue square."])
    assert check.support == 0.1 and check.weakest_probe.question == "Is there a blue square?"


def test_an_undecomposable_claim_is_scored_by_p_yes_and_flagged():
    from redgraph.decoding.claim_scoring import claim_support

    lvlm = tiny("qwen2_vl")
    report = LocalCritic(lvlm).review(scene(), "What colour is the circle?",
                                      ["The picture feels calm. The circle is red."])
    vague, parsed = report.reviews[0].claims
    assert vague.method == "p_yes_fallback" and vague.probes == () and vague.decomposer is None
    assert vague.support == pytest.approx(claim_support(lvlm, scene(), ["The picture feels calm."])[0])
    assert parsed.method == "probes" and parsed.probes[0].question == "What colour is the circle?"
    assert report.unasked == ("The picture feels calm.",)
    if not vague.supported:
        assert "no question could be asked of this claim" in report.critique


def test_both_scorers_are_averaged_where_a_claim_has_probes():
    from redgraph.decoding.claim_scoring import claim_support

    lvlm = tiny("gemma3")
    claims = ["The circle is red.", "The picture feels calm."]
    both = LocalCritic(lvlm, scoring="both").score_claims(scene(), claims)
    probes = LocalCritic(lvlm).score_claims(scene(), claims)
    p_yes = claim_support(lvlm, scene(), claims)
    assert both[0].method == "both" and both[0].support == pytest.approx((probes[0].support + p_yes[0]) / 2)
    assert both[0].p_yes == pytest.approx(p_yes[0])
    assert both[1].method == "p_yes_fallback" and both[1].support == pytest.approx(p_yes[1])


class _ScriptedStructuredModel:
    """A LangChain-style chat model whose structured output is scripted per claim."""

    def __init__(self, replies: dict[str, ClaimProbes | dict | Exception]) -> None:
        self.replies, self.asked = replies, []

    def with_structured_output(self, schema):
        from langchain_core.runnables import RunnableLambda

        assert schema is ClaimProbes

        def answer(prompt: str):
            claim = prompt.rsplit("Statement: ", 1)[1]
            self.asked.append(claim)
            reply = self.replies[claim]
            if isinstance(reply, Exception):
                raise reply
            return reply
        return RunnableLambda(answer)


def test_free_text_claims_through_a_scripted_chat_model():
    model = _ScriptedStructuredModel({
        "The second bar from the left reaches 7.": ClaimProbes(checkable=True, probes=[
            ProbeSpec(question="What is the value of the second bar from the left?", claimed_answer="7",
                      alternatives=[str(n) for n in range(1, 10)])]),
        "The chart looks professional.": ClaimProbes(checkable=False, probes=[]),
        "Its title mentions sales.": {"checkable": True, "probes": [
            {"question": "Does the title mention sales?", "claimed_answer": "maybe", "alternatives": ["yes", "no"]}]},
        "The bars are tall.": {"checkable": "very", "probes": 3},
    })
    claims = ["The red bar is 7.", "The second bar from the left reaches 7.", "The chart looks professional.",
              "Its title mentions sales.", "The bars are tall."]
    found = decompose_all([GrammarDecomposer(), ChatDecomposer(model)], claims)
    assert model.asked == claims[1:]  # the grammar handled the first
    # not checkable; a claimed answer outside its alternatives; a reply that is not the schema
    assert [name for _, name in found] == ["grammar", "chat", None, None, None]
    probe = found[1][0][0]
    assert (probe.question, probe.claimed, len(probe.alternatives)) == (
        "What is the value of the second bar from the left?", "7", 9)
    with pytest.raises(RemoteModelError, match="could not decompose"):
        ChatDecomposer(_ScriptedStructuredModel({"x.": TimeoutError("slow")})).decompose(["x."])


class _StructuredCompletions(ChatCompletions):
    """POST /v1/chat/completions answering a json_schema response_format with a scripted ClaimProbes."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        content = ClaimProbes(checkable=True, probes=[ProbeSpec(
            question="What colour is the car?", claimed_answer="red", alternatives=["red", "blue"])]).model_dump_json()
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]})


def test_an_openai_compatible_model_decomposes_through_the_official_client():
    from redgraph.agents.remote import OpenAIReasoner

    server = ThreadingHTTPServer(("127.0.0.1", 0), _StructuredCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIReasoner("gpt-test", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="k")
        [probes] = ChatDecomposer(backend).decompose(["The car is red."])
        backend.client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert probes == (Probe("What colour is the car?", "red", ("red", "blue")),)
    request = _StructuredCompletions.requests[-1]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["name"] == "ClaimProbes"
    assert "The car is red." in request["messages"][0]["content"]


def test_the_local_lvlm_decomposes_where_its_reply_has_the_form():
    assert parse_probe_line("Is the bar blue? | Yes.") == (Probe("Is the bar blue?", "yes", ("yes", "no")),)
    assert parse_probe_line("What is the total? | 42\nmore") == (Probe("What is the total?", "42"),)
    assert parse_probe_line("the bar is blue") is None and parse_probe_line("") is None
    replies = LVLMDecomposer(tiny("llava_clip"), max_new_tokens=4).decompose(["The circle is red.", "x y z."])
    assert len(replies) == 2  # a random model's replies are not of the form, so they come back None
    assert all(r is None or isinstance(r[0], Probe) for r in replies)


def test_trace_and_report_show_every_probe(tmp_path):
    from redgraph.agents import ScriptedReasoner
    from redgraph.graphs import RunContext, ask
    from redgraph.trace.report import render_report

    lvlm = tiny("qwen2_vl")
    path = tmp_path / "scene.png"
    scene().save(path)
    context = RunContext(answerer=lvlm, reasoner=ScriptedReasoner(["The circle is red. The mood is calm."]),
                         critic=LocalCritic(lvlm), rounds=1, max_new_tokens=2)
    result = ask(path, "What colour is the circle?", context, checkpoint="memory")
    verdict = next(e for e in result.trace.events if e.kind == "verdict")
    [review] = verdict.outputs["reviews"]
    asked, vague = review["claims"]
    assert asked["method"] == "probes" and vague["method"] == "p_yes_fallback"
    [probe] = asked["probes"]
    assert probe["question"] == "What colour is the circle?" and probe["claimed"] == "red"
    assert set(probe["candidates"]) == set(COLOURS) and probe["image_answer"] in COLOURS
    assert "claims_checked_by_p_yes_only" in result.flags
    html = render_report(result.state, result.trace)
    assert "What colour is the circle?</td><td>red (p " in html
    assert f"{probe['image_answer']} (p {probe['image_probability']:.2f})" in html
    assert "no question could be asked of this claim" in html


def test_eval_refuses_an_unknown_critic_scoring():
    from redgraph.errors import ConfigError
    from redgraph.eval.plan import EvalConfig

    with pytest.raises(ConfigError, match="'yes'"):
        EvalConfig(dataset="d", critic_scoring="yes")


def test_make_context_sets_the_critics_scoring_and_decomposers(monkeypatch):
    from redgraph.agents.decompose import ChatDecomposer
    from redgraph.errors import ConfigError
    from redgraph.graphs import make_context
    from redgraph.graphs.context import resolve_context

    lvlm = tiny("llava_clip")
    context = make_context(lvlm, critic_scoring="both", decomposer="lvlm")
    assert context.critic.scoring == "both" and [d.name for d in context.critic.decomposers] == ["grammar", "lvlm"]
    assert context.settings()["critic_scoring"] == "both" and context.settings()["decomposers"] == ["grammar", "lvlm"]
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    chat = make_context(lvlm, decomposer="openai:gpt-test", base_url="http://127.0.0.1:9/v1")
    assert isinstance(chat.critic.decomposers[1], ChatDecomposer)
    with pytest.raises(ConfigError, match="'gpt'"):
        make_context(lvlm, decomposer="gpt")
    with pytest.raises(ConfigError, match="'maybe'"):
        make_context(lvlm, critic_scoring="maybe")
    with pytest.raises(ConfigError, match="set them on it instead"):
        make_context(lvlm, critic=LocalCritic(lvlm), critic_scoring="both")
    with pytest.raises(ConfigError, match="unknown context settings"):
        resolve_context({"critic": "x"})


def test_a_model_that_says_nothing_does_not_support_an_open_claim(monkeypatch):
    from redgraph.decoding import probes as probe_module

    lvlm = tiny("qwen2_vl")
    monkeypatch.setattr(probe_module._Asker, "greedy", lambda self, asked, questions, limit: ["" for _ in questions])
    probe = Probe("What is the total?", "42")
    [result] = score_probes(lvlm, scene(), [probe])
    full = torch.tensor([_full_prompt_logprob(lvlm, scene(), probe.question, a) for a in ("42", "")], dtype=torch.float64)
    expected = torch.softmax(full, dim=0).tolist()
    assert result.candidates == pytest.approx({"42": expected[0], "": expected[1]}, abs=1e-4)
    assert result.support < 1.0
