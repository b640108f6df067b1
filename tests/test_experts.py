"""Experts beside the critic's eyes: how readings combine, the OCR expert's reading of titles and
fields, and the critic, graph, report and surfaces with an OCR expert (Tesseract)."""

import json
import os
import shutil

import pytest

import redgraph
from redgraph.agents.critic import LocalCritic
from redgraph.agents.experts import (ExpertReading, OcrExpert, _field_value, combine, make_experts, parse_experts)
from redgraph.data import questions
from redgraph.decoding.probes import Probe
from redgraph.errors import ConfigError
from redgraph.models.ocr import OcrLine, OcrPage, OcrWord, ocr_available

NEEDS_OCR = ocr_available()


@pytest.fixture(scope="module")
def ocr():
    if NEEDS_OCR:
        if os.environ.get("REDGRAPH_REQUIRE_OCR"):
            pytest.fail(f"REDGRAPH_REQUIRE_OCR is set but the OCR engine is missing: {NEEDS_OCR}")
        pytest.skip(NEEDS_OCR)
    return OcrExpert()


@pytest.fixture(scope="module")
def embedded():
    return redgraph.load_embedded()


def reading(expert, support, sure=True):
    return ExpertReading(expert, 0, "x", support, sure)


# --- combining -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["agree", "veto"])
def test_experts_that_agree_decide_and_the_support_is_the_least_sure_one(rule):
    assert combine([reading("lvlm", 0.9), reading("ocr", 0.8)], 0.5, rule) == ("supported", 0.8, ())
    assert combine([reading("lvlm", 0.1), reading("ocr", 0.2)], 0.5, rule) == ("unsupported", 0.1, ())


def test_disagreeing_experts_give_unsure_and_name_both_under_agree_and_reject_under_veto():
    split = [reading("lvlm", 0.95), reading("ocr", 0.04)]
    assert combine(split, 0.5, "agree") == ("unsure", 0.04, ("lvlm", "ocr"))
    assert combine(split, 0.5, "veto") == ("unsupported", 0.04, ("ocr",))


def test_readings_that_are_not_sure_do_not_count():
    # The LVLM out of its range: the OCR expert alone decides, either way.
    assert combine([reading("lvlm", 0.99, sure=False), reading("ocr", 0.03)], 0.5) == ("unsupported", 0.03, ())
    assert combine([reading("lvlm", 0.01, sure=False), reading("ocr", 0.97)], 0.5) == ("supported", 0.97, ())
    # Nobody sure: unsure, at the LVLM's support.
    assert combine([reading("lvlm", 0.7, sure=False), reading("ocr", 0.2, sure=False)], 0.5) == ("unsure", 0.7, ())


def test_expert_names_are_checked_and_the_lvlm_is_always_one():
    assert parse_experts("lvlm") == ("lvlm",)
    assert parse_experts(" LVLM , ocr ") == ("lvlm", "ocr")
    assert parse_experts(["lvlm", "ocr", "ocr"]) == ("lvlm", "ocr")
    with pytest.raises(ConfigError, match="always one expert"):
        parse_experts("ocr")
    with pytest.raises(ConfigError, match="unknown expert 'gpt'"):
        parse_experts("lvlm,gpt")
    with pytest.raises(ConfigError, match="names such as"):
        parse_experts(3)
    with pytest.raises(ConfigError, match="combine must be one of agree, veto"):
        LocalCritic(object(), combine="vote")


# --- the OCR expert's reading, on a page given to it ---------------------------------------------

@pytest.mark.parametrize("line, name, value", [
    ("Items: 83", "items", "83"), ("Items:83", "items", "83"), ("Items 83", "items", "83"),
    ("Total - 1,204", "total", "1,204"), ("Tota1: 5", "total", "5"), ("Invoice number: A-12", "invoice number", "A-12"),
    ("Tax\t3.99", "tax", "3.99"), ("Taxes: 4", "tax", None), ("Tax", "tax", None), ("Score: 5", "total", None),
])
def test_a_field_value_follows_its_name_whatever_the_separator(line, name, value):
    assert _field_value(line, name) == value


class PageEngine:
    """An OCR engine that reads the page it was given."""

    def __init__(self, *lines):
        self.page = OcrPage((100, 80), tuple(
            OcrLine(tuple(OcrWord(word, (10 + 20 * i, 10 + 15 * row, 28 + 20 * i, 20 + 15 * row), confidence)
                          for i, word in enumerate(text.split())))
            for row, (text, confidence) in enumerate(lines)))
        self.reads = 0

    def read(self, picture):
        self.reads += 1
        return self.page


def test_the_ocr_expert_reads_the_title_and_fields_and_abstains_on_other_probes():
    engine = PageEngine(("INVOICE", 0.95), ("Total: 83", 0.9), ("Tax: 5", 0.4))
    expert = OcrExpert(engine)
    probes = [Probe(questions.title(), "invoice", family="title"), Probe(questions.field("total"), "84", family="field"),
              Probe(questions.field("tax"), "5", family="field"), Probe(questions.field("room"), "2", family="field"),
              Probe("Is there a red circle?", "yes", ("yes", "no"), family="exists")]
    title, total, tax, room, shape = expert.read(None, probes)
    assert (title.answer, title.support, title.sure) == ("INVOICE", 0.99, True)  # the measured accuracy
    assert title.evidence[0].box == (10, 10, 28, 20) and title.evidence[0].image_size == (100, 80)
    assert (total.answer, total.support, total.sure) == ("83", pytest.approx(0.01), True)  # read, and it is not 84
    assert (tax.answer, tax.support, tax.sure) == ("5", 0.4, False) and "below 0.60" in tax.note
    assert (room.answer, room.sure) == (None, False) and "'room'" in room.note
    assert shape is None
    assert engine.reads == 1
    # Nothing of its kind: the page is not read at all.
    assert expert.read(None, probes[4:]) == [None] and engine.reads == 1


def test_an_expert_that_abstains_everywhere_changes_nothing(embedded):
    from redgraph.data.synthetic import items_of_kind

    alone = LocalCritic(embedded)
    beside = LocalCritic(embedded, experts=(OcrExpert(PageEngine(("Nothing here", 0.99))),))
    for kind in ("shapes", "bars"):
        for item in items_of_kind("test", kind, 3):
            texts = [text for text, _ in item.claims]
            for a, b in zip(alone.score_claims(item.image(), texts), beside.score_claims(item.image(), texts)):
                assert (a.status, a.support, a.supported, a.probes) == (b.status, b.support, b.supported, b.probes)
                assert all(r.expert == "lvlm" for r in b.experts)


def test_experts_need_probes_and_an_expert_shape():
    with pytest.raises(ConfigError, match="scoring='probes'"):
        LocalCritic(object(), scoring="p_yes", experts=(OcrExpert(PageEngine()),))
    with pytest.raises(ConfigError, match="read\\(picture, probes\\)"):
        LocalCritic(object(), experts=("ocr",))


def test_a_missing_ocr_engine_is_refused_by_name(monkeypatch, embedded):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'redgraph\[ocr\]' and apt install tesseract-ocr"):
        make_experts("lvlm,ocr")
    with pytest.raises(ConfigError, match="tesseract"):
        redgraph.make_context(embedded, experts="lvlm,ocr")
    # Without the expert, the critic works as before and its run says who checked the claims.
    assert redgraph.make_context(embedded).settings()["experts"] == ["lvlm"]


def test_the_cli_refuses_the_ocr_expert_where_it_is_missing(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from redgraph.cli import app
    from tests.conftest import scene

    monkeypatch.setattr(shutil, "which", lambda name: None)
    picture = tmp_path / "doc.png"
    scene().save(picture)
    done = CliRunner().invoke(app, ["ask", str(picture), "What is the title?", "--experts", "lvlm,ocr"])
    assert done.exit_code != 0 and "redgraph[ocr]" in done.output and "Traceback" not in done.output


# --- with Tesseract ------------------------------------------------------------------------------

def font_documents(count, seed=0):
    from redgraph.data.tools import tool_items

    return list(tool_items("fonts", count, seed=seed))


def test_tesseract_reads_documents_in_fonts_the_model_never_saw(ocr):
    right = total = 0
    for item, picture in font_documents(6):
        scene = item.scene
        probes = [Probe(questions.title(), scene.title, family="title")]
        probes += [Probe(questions.field(name), str(value), family="field") for name, value in scene.fields]
        for found in ocr.read(picture, probes):
            total += 1
            right += found.sure and found.support >= 0.5
    assert right / total >= 0.9


def test_the_critic_with_ocr_decides_text_claims_the_model_cannot_read(ocr, embedded):
    alone, beside = LocalCritic(embedded), LocalCritic(embedded, experts=(ocr,))
    caught = accepted = false_claims = true_claims = 0
    for item, picture in font_documents(4, seed=1):
        texts = [text for text, _ in item.claims]
        labels = [label for _, label in item.claims]
        assert {c.status for c in alone.score_claims(picture, texts)} == {"unsure"}  # out of the model's range
        for label, check in zip(labels, beside.score_claims(picture, texts)):
            if label:
                true_claims += 1
                accepted += check.status == "supported"
            else:
                false_claims += 1
                caught += check.status == "unsupported"
            ocr_readings = [r for r in check.experts if r.expert == "ocr"]
            assert ocr_readings and ocr_readings[0].evidence
    assert caught / false_claims >= 0.9 and accepted / true_claims >= 0.9


def test_a_graph_run_with_ocr_records_the_evidence_and_draws_it_in_the_report(ocr, embedded, tmp_path):
    from redgraph.agents import ScriptedReasoner
    from redgraph.trace.report import write_report

    item, picture = font_documents(1, seed=5)[0]
    path = tmp_path / "doc.png"
    picture.save(path)
    context = redgraph.make_context(embedded, reasoner=ScriptedReasoner([item.misleading_rationale]), experts="lvlm,ocr")
    result = redgraph.ask(str(path), item.question, context, checkpoint="memory", trace_path=tmp_path / "t.json")
    assert result.outcome == "image_only"  # the lie never reached the answerer
    trace = json.loads((tmp_path / "t.json").read_text())
    assert trace["events"][0]["config"]["experts"] == ["lvlm", "ocr"]
    review = next(e for e in trace["events"] if e["kind"] == "verdict")["outputs"]["reviews"][0]
    read = [r for c in review["claims"] for r in c["experts"] if r["expert"] == "ocr"]
    assert read and read[0]["sure"] and read[0]["evidence"][0]["box"]
    assert "OCR read" in result.state["history"][0]["critique"]
    html = write_report(result.state, result.trace, tmp_path / "r.html").read_text()
    assert '<svg class="evidence"' in html and "<rect" in html and "claims checked by: lvlm, ocr" in html

    honest = redgraph.make_context(embedded, reasoner=ScriptedReasoner([item.gold_rationale]), experts="lvlm,ocr")
    answered = redgraph.ask(str(path), item.question, honest, checkpoint="memory")
    assert (answered.outcome, answered.answer) == ("accepted", str(item.answer))


def test_the_server_and_tools_take_the_experts(ocr, embedded, tmp_path):
    import base64

    from fastapi.testclient import TestClient

    from redgraph.serve.app import create_app
    from redgraph.tools.langchain import make_ask_image_tool

    item, picture = font_documents(1, seed=5)[0]
    path = tmp_path / "doc.png"
    picture.save(path)
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    client = TestClient(create_app(embedded))
    body = {"image": url, "question": item.question, "rationale": item.gold_rationale, "experts": ["lvlm", "ocr"]}
    answered = client.post("/v1/redgraph/ask", json=body).json()
    assert answered["answer"] == str(item.answer) and not answered.get("unsure")
    refused = client.post("/v1/redgraph/ask", json={**body, "experts": ["ocr"]})
    assert refused.status_code == 400 and "always one expert" in refused.json()["error"]["message"]
    tool = make_ask_image_tool(lvlm=embedded, trace_dir=tmp_path, experts="lvlm,ocr")
    summary = tool.invoke({"type": "tool_call", "id": "1", "name": "ask_image",
                           "args": {"image": str(path), "question": item.question, "rationale": item.gold_rationale}})
    assert json.loads(summary.content)["answer"] == str(item.answer)


def test_a_langgraph_server_context_and_the_mcp_server_take_the_experts(ocr):
    from redgraph.graphs.context import resolve_context
    from redgraph.tools.mcp import build_server

    context = resolve_context({"experts": ["lvlm", "ocr"]})
    assert context.critic.expert_names == ("lvlm", "ocr") and context.settings()["combine"] == "agree"
    with pytest.raises(ConfigError, match="unknown expert"):
        resolve_context({"experts": ["lvlm", "yolo"]})
    assert build_server(experts="lvlm,ocr") is not None
    with pytest.raises(ConfigError, match="always one expert"):
        build_server(experts="ocr")
