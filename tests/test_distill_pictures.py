"""SDRT on a user's own unlabelled pictures: the pictures:DIR source, its questions, and traces
weighed without labels (claims the critic was unsure of left out)."""

from __future__ import annotations

import io
import json

import pytest

from redgraph.data.synthetic import generate_items
from redgraph.distill.pictures import KIND_QUESTIONS, picture_items, read_questions
from redgraph.distill.items import item_image
from redgraph.distill.traces import TRACES, TraceConfig, generate_traces
from redgraph.distill.weights import WeightConfig, sure_support, weigh_traces
from redgraph.errors import ConfigError, InputError

ITEMS = list(generate_items("test", 40, seed=0))
BARS = [item for item in ITEMS if item.kind == "bars"][:2]
DOCUMENT = next(item for item in ITEMS if item.kind == "document")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "mine"
    (root / "scans").mkdir(parents=True)
    BARS[0].image().save(root / "a.png")
    BARS[1].image().save(root / "scans" / "b.jpg")
    (root / ".hidden.png").write_bytes(b"not read")
    (root / "notes.txt").write_text("not a picture")
    return root


def test_a_kind_asks_its_own_questions_of_every_picture_with_no_answer(folder):
    items = picture_items(folder, kind="bars")
    assert [(i.question_id.split("|")[0], i.question) for i in items] == [
        (name, question) for name in ("a.png", "scans/b.jpg") for question in KIND_QUESTIONS["bars"]]
    assert all(i.gold_answer is None and i.kind == "bars" for i in items)
    assert item_image(items[0].ref).size == BARS[0].image().size
    # ids stay the same across runs, and differ per picture and question
    assert [i.question_id for i in picture_items(folder, kind="bars")] == [i.question_id for i in items]
    assert len({i.question_id for i in items}) == len(items)


def test_a_questions_file_asks_every_picture_or_the_one_it_names(folder, tmp_path):
    asked = tmp_path / "questions.jsonl"
    asked.write_text('{"question": "What is the value of the red bar?"}\n\n'
                     '{"question": "What is the value of the blue bar?", "image": "scans/b.jpg"}\n')
    items = picture_items(folder, questions_file=asked, kind="bars")
    by_picture = {}
    for item in items:
        by_picture.setdefault(item.question_id.split("|")[0], []).append(item.question)
    assert by_picture == {
        "a.png": [*KIND_QUESTIONS["bars"], "What is the value of the red bar?"],
        "scans/b.jpg": [*KIND_QUESTIONS["bars"], "What is the value of the red bar?", "What is the value of the blue bar?"],
    }
    plain = tmp_path / "questions.txt"
    plain.write_text("# asked of every picture\nWhat is the title?\n")
    assert read_questions(plain) == [(None, None, "What is the title?")]
    assert [i.question for i in picture_items(folder, questions_file=plain)] == ["What is the title?"] * 2


def test_each_page_of_a_document_is_a_picture(tmp_path):
    pytest.importorskip("pypdfium2")
    root = tmp_path / "docs"
    root.mkdir()
    buffer = io.BytesIO()
    DOCUMENT.image().save(buffer, "PDF", save_all=True, append_images=[BARS[0].image()], resolution=72)
    (root / "report.pdf").write_bytes(buffer.getvalue())
    asked = tmp_path / "q.jsonl"
    asked.write_text('{"question": "Which bar is the tallest?", "image": "report.pdf", "page": 2}\n')
    items = picture_items(root, questions_file=asked, kind="document")
    assert [(i.question_id.split("|")[0], i.question) for i in items] == [
        ("report.pdf#page=1", "What is the title?"), ("report.pdf#page=2", "What is the title?"),
        ("report.pdf#page=2", "Which bar is the tallest?")]
    assert item_image(items[2].ref).size[0] > 0
    asked.write_text('{"question": "Which bar is the tallest?", "image": "report.pdf", "page": 3}\n')
    with pytest.raises(InputError, match="page 3 of 'report.pdf', which has 2 pages"):
        picture_items(root, questions_file=asked)


@pytest.mark.parametrize("line, message", [
    ("not json", r"q.jsonl:1 is not JSON"),
    ('{"image": "a.png"}', r'needs "question"'),
    ('{"question": "Q?", "image": 3}', r'"image" must be'),
    ('{"question": "Q?", "page": 2}', r'"page" must be a page number'),
    ('{"question": "Q?", "image": "absent.png"}', r"names picture 'absent.png'"),
])
def test_a_bad_questions_file_is_named_by_line(folder, tmp_path, line, message):
    asked = tmp_path / "q.jsonl"
    asked.write_text(line + "\n")
    with pytest.raises(InputError, match=message):
        picture_items(folder, questions_file=asked)


def test_bad_sources_and_settings_are_named(folder, tmp_path):
    with pytest.raises(InputError, match="needs questions"):
        picture_items(folder)
    with pytest.raises(InputError, match="kind 'pie'"):
        picture_items(folder, kind="pie")
    with pytest.raises(InputError, match="is not a folder"):
        picture_items(tmp_path / "absent", kind="bars")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no picture"):
        picture_items(tmp_path / "empty", kind="bars")
    with pytest.raises(ConfigError, match="needs questions"):
        TraceConfig(source=f"pictures:{folder}")
    with pytest.raises(ConfigError, match="kind 'pie'"):
        TraceConfig(source=f"pictures:{folder}", kind="pie")
    with pytest.raises(ConfigError, match="for a pictures:DIR source"):
        TraceConfig(source="synthetic:train", kind="bars")


def test_traces_of_unlabelled_pictures_carry_no_answer_and_the_critics_statuses(folder, tmp_path):
    from redgraph.models import load_lvlm

    config = TraceConfig(source=f"pictures:{folder}", kind="bars", limit=2, max_new_tokens=24)
    result = generate_traces(config, tmp_path / "traces", lvlm=load_lvlm(None))
    assert result["items"] == 2
    records = [json.loads(line) for line in (tmp_path / "traces" / TRACES).read_text().splitlines()]
    assert [r["question"] for r in records] == list(KIND_QUESTIONS["bars"])
    for record in records:
        assert record["gold_answer"] is None and record["item"]["image"].endswith("a.png")
        assert record["status"] in ("accepted", "rejected", "unsure", "unchecked", None)
        assert all(c["status"] in ("supported", "unsupported", "unsure", "unchecked") for c in record["claims"])


def _trace(qid, answer, claims, support, injections=0):
    return {"question_id": qid, "style": "facts", "rationale": "The red bar is 3.", "answer": answer,
            "support": support, "gold_answer": None, "injections": injections,
            "claims": [{"text": f"claim {n}", "support": s, "status": status} for n, (s, status) in enumerate(claims)]}


def test_claims_the_critic_was_unsure_of_are_left_out_of_a_traces_support():
    sure = _trace("a", "3", [(0.9, "supported"), (0.8, "supported")], 0.8)
    mixed = _trace("a", "3", [(0.9, "supported"), (0.1, "unsure")], 0.1)
    unsure = _trace("b", "5", [(0.4, "unsure")], 0.4)
    injected = _trace("c", "2", [(0.9, "supported"), (0.2, "unsure")], 0.0, injections=1)
    legacy = {k: v for k, v in sure.items() if k != "claims"} | {"claims": [{"text": "x", "support": 0.8}]}
    all_unsure_injected = _trace("d", "4", [(0.9, "unsure")], 0.0, injections=1)
    assert [sure_support(r) for r in (sure, mixed, unsure, injected, legacy, all_unsure_injected)] == [
        0.8, 0.9, None, 0.0, 0.8, 0.0]
    # By default a trace with no sure claim is weighed without the critic (agreement 1 here), and counted.
    result = weigh_traces([sure, mixed, unsure, injected], WeightConfig(threshold=0.1))
    assert [w for _, w in result.kept] == pytest.approx([0.8, 0.9, 1.0])
    assert result.dropped == {"below_threshold": 1} and result.summary()["without_critic"] == 1
    dropping = weigh_traces([sure, mixed, unsure, injected], WeightConfig(threshold=0.1, unsure="drop"))
    assert [w for _, w in dropping.kept] == pytest.approx([0.8, 0.9])
    assert dropping.summary()["dropped"] == {"below_threshold": 1, "unsure": 1} and dropping.without_critic == 0
    assert len(weigh_traces([sure, mixed, unsure], WeightConfig(critic=False, threshold=0.1)).kept) == 3
    with pytest.raises(ConfigError, match="unsure must be one of"):
        WeightConfig(unsure="maybe")


def _read(question, answer, sure=True, expert="ocr"):
    return {"expert": expert, "question": question, "answer": answer, "sure": sure}


def test_an_experts_sure_answer_to_the_items_question_teaches_it():
    """Where the OCR expert read the asked field, its answer teaches: traces that differ are dropped,
    the item gets an answer lesson of it (in the model's spelling) weighing as a full item's would,
    and an expert's reading of another question, an unsure one, or experts that disagree teach nothing."""
    from redgraph.distill.student import DistillConfig, lessons

    def trace(qid, question, answer, readings, support=0.9):
        record = _trace(qid, answer, [(support, "supported")], support)
        record.update(question=question, item={"image": f"{qid}.png", "page": None})
        record["claims"][0]["readings"] = readings
        return record

    total = "What is the total?"
    corrected = [trace("a", total, "41", [_read("What is the total ?", "47")]) for _ in range(3)]  # all misread
    agreed = [trace("b", total, "12", [_read(total, "12")]), trace("b", total, "13", [_read(total, "12")])]
    titled = [trace("c", "What is the title?", "budget", [_read("What is the title?", "INVOICE")])]
    spelt = [trace("g", "What is the title?", "Invoice", [_read("What is the title?", "INVOICE")]),
             trace("g", "What is the title?", "Budget", [])]
    other = [trace("d", total, "5", [_read("What is the price?", "9")])]  # another question's reading
    unsure = [trace("e", total, "5", [_read(total, "9", sure=False)])]
    split = [trace("f", total, "5", [_read(total, "9")]), trace("f", total, "5", [_read(total, "8")])]
    records = corrected + agreed + titled + spelt + other + unsure + split
    result = weigh_traces(records, WeightConfig(threshold=0.1))
    assert result.dropped == {"expert_contradicts": 3 + 1 + 1 + 1}
    assert {(r["question_id"], answer): round(w, 3) for r, answer, w in result.taught} == {
        ("a", "47"): 3.0,  # nothing agreed: the item's three traces' worth
        ("b", "12"): round(2 - 0.5 * 0.9, 3),  # one kept trace agreed (agreement 1/2, support 0.9)
        ("c", "invoice"): 1.0,  # the model writes lower case
        ("g", "Invoice"): round(2 - 0.5 * 0.9, 3),  # a trace's own spelling
    }
    summary = result.summary()
    assert summary["expert_answers"] == 4 and summary["expert_corrections"] == 2  # a and c: no trace agreed
    assert {r["question_id"] for r, _ in result.kept} == {"b", "d", "e", "f", "g"}
    examples, _ = lessons(records, DistillConfig(weighting=WeightConfig(threshold=0.1)))
    assert [(e.task, e.target, e.weight) for e in examples if e.ref["image"] == "a.png"] == [("answer", "47", 3.0)]
    assert next(e.instruction for e in examples if e.ref["image"] == "a.png") == total
    plain = weigh_traces(records, WeightConfig(threshold=0.1, experts=False))  # the ablation
    assert not plain.taught and "expert_contradicts" not in plain.dropped and "expert_answers" not in plain.summary()


def test_the_command_line_writes_traces_of_a_pictures_folder(folder, tmp_path):
    from typer.testing import CliRunner

    from redgraph.cli import app

    result = CliRunner().invoke(app, ["distill", "traces", str(tmp_path / "t"), "--source", f"pictures:{folder}",
                                      "--kind", "document", "--limit", "1", "--max-new-tokens", "16", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["items"] == 1
    refused = CliRunner().invoke(app, ["distill", "traces", str(tmp_path / "u"), "--source", f"pictures:{folder}"])
    assert refused.exit_code != 0 and "needs questions" in refused.output
    one_sided = CliRunner().invoke(app, ["distill", "adapt", str(folder), str(tmp_path / "a"), "--kind", "bars",
                                         "--holdout", "0.5"])
    assert one_sided.exit_code != 0 and "falls in the held-out share" in one_sided.output
    BARS[0].image().save(folder / "e.png")  # e.png is held out at 0.5
    adapted = CliRunner().invoke(app, ["distill", "adapt", str(folder), str(tmp_path / "a"), "--kind", "bars",
                                       "--holdout", "0.5", "--per-style", "2", "--steps", "1", "--max-new-tokens", "16",
                                       "--json"])
    assert adapted.exit_code == 0, adapted.output
    report = json.loads(adapted.output)
    assert report["adapter"] == str(tmp_path / "a" / "adapter") and "change" in report["heldout"]
    refused = CliRunner().invoke(app, ["distill", "adapt", str(folder), str(tmp_path / "b"), "--kind", "bars",
                                       "--holdout", "1"])
    assert refused.exit_code != 0 and "holdout must be a share" in refused.output
    # a LoRA student, on every language layer unless --layers names some (as `distill train` does)
    lora = CliRunner().invoke(app, ["distill", "adapt", str(folder), str(tmp_path / "l"), "--kind", "bars",
                                    "--holdout", "0.5", "--per-style", "1", "--steps", "1", "--max-new-tokens", "8",
                                    "--adapter-kind", "lora", "--json"])
    assert lora.exit_code == 0, lora.output
    saved = json.loads((tmp_path / "l" / "adapter" / "adapter_config.json").read_text())
    assert saved["config"] == {"layers": [0, 1, 2, 3], "rank": 4, "skip_layer": None, "kind": "lora",
                               "vision_layers": []}
    bad = CliRunner().invoke(app, ["distill", "adapt", str(folder), str(tmp_path / "c"), "--kind", "bars",
                                   "--skip-layer", "two"])
    assert bad.exit_code != 0 and "--skip-layer must be a layer number or none, got 'two'" in bad.output
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_adapt_goes_from_a_folder_to_an_adapter_and_a_report_and_resumes(tmp_path, monkeypatch):
    from redgraph.distill.adapt import REPORT, AdaptConfig, adapt
    from redgraph.distill.pictures import held_out
    from redgraph.distill.student import DistillConfig
    from redgraph.models import load_lvlm

    root = tmp_path / "charts"
    root.mkdir()
    bars = [item for item in generate_items("test", 60, seed=3) if item.kind == "bars"][:8]
    for number, item in enumerate(bars):
        item.image().save(root / f"chart{number}.png")
    names = [f"chart{n}.png" for n in range(len(bars))]
    assert 0 < sum(held_out(name, 0.5) for name in names) < len(names)
    config = AdaptConfig(pictures=str(root), kind="bars", holdout=0.5, per_style=2, max_new_tokens=24, check="synthetic:test",
                         check_limit=3, distill=DistillConfig(steps=2, batch_size=4, warmup_steps=1,
                                                              precision="float32"))
    stages = []
    report = adapt(config, tmp_path / "out", lvlm=load_lvlm(None), on_stage=lambda s, d, t: stages.append(s))
    assert {"traces", "adapter", "held out, base", "held out, adapted", "check, base", "check, adapted"} <= set(stages)
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "out" / REPORT).read_text()) == report
    held = report["heldout"]
    assert held["questions"] == 2 * sum(held_out(name, 0.5) for name in names)
    for name in ("base", "adapted"):
        assert 0 < held[name]["self_agreement"] <= 1
        low, high = held[name]["self_agreement_ci95"]
        assert low <= held[name]["self_agreement"] <= high
    assert report["check"]["items"] == 3 and 0 <= report["check"]["base"]["accuracy"] <= 1
    assert report["weighting"]["traces"] == report["pictures"]["adapt_traces"]
    # Again on the same folder: nothing is written or trained anew, and the report is the same.
    monkeypatch.setattr("redgraph.distill.student.distill", lambda *a, **k: pytest.fail("trained again"))
    assert adapt(config, tmp_path / "out", lvlm=load_lvlm(None)) == report
    # an adapter saved before settings existed (vision_layers, experts, keep) is the same adapter: resumed, not refused
    saved_file = tmp_path / "out" / "adapter" / "adapter_config.json"
    saved = json.loads(saved_file.read_text())
    settings = saved["manifest"]["config"]
    del settings["adapter"]["vision_layers"], settings["weighting"]["experts"]
    del settings["keep"], settings["keep_limit"], settings["keep_share"]
    saved_file.write_text(json.dumps(saved))
    assert adapt(config, tmp_path / "out", lvlm=load_lvlm(None)) == report
    other = AdaptConfig(**{**config.__dict__, "distill": DistillConfig(steps=3, batch_size=4, precision="float32")})
    with pytest.raises(InputError, match="holds an adapter trained with other settings"):
        adapt(other, tmp_path / "out", lvlm=load_lvlm(None))


def test_paired_changes_and_their_intervals_follow_the_traces():
    from redgraph.distill.adapt import compare

    def traces(qid, answers, support):
        return [_trace(qid, a, [(support, "supported")], support) for a in answers]

    before = traces("a", ["3", "5", "5", "7"], 0.4) + traces("b", ["1", "1", "2", "2"], 0.5)
    after = traces("a", ["5", "5", "5", "5"], 0.8) + traces("b", ["1", "1", "1", "2"], 0.7)
    report = compare(before, after)
    assert report["base"]["self_agreement"] == pytest.approx((0.5 + 0.5) / 2)
    assert report["adapted"]["self_agreement"] == pytest.approx((1.0 + 0.75) / 2)
    assert report["change"]["self_agreement"] == pytest.approx(0.375)
    assert report["change"]["support"] == pytest.approx(0.3)
    low, high = report["change"]["self_agreement_ci95"]
    assert 0.25 <= low <= 0.375 <= high <= 0.5


def test_a_trace_set_of_another_source_keeps_the_identity_it_had_before_the_pictures_settings():
    identity = TraceConfig(limit=3).identity()
    assert not {"questions", "kind", "holdout", "part"} & set(identity)
    assert TraceConfig(source="pictures:x", kind="bars", holdout=0.2, part="adapt").identity()["part"] == "adapt"


# one family of each way the trainer feeds a vision tower (the others share one of these; each passed
# when written): Qwen2-VL's grid, LLaVA's plain pixels, Idefics3's text_model and pixel mask, Gemma 3's
# token types
@pytest.mark.parametrize("family", ["qwen2_vl", "llava_clip", "idefics3", "gemma3"])
def test_adapt_runs_on_a_real_architecture_through_the_lora_path(tmp_path, family):
    """The label-free loop on a tiny random model of a real LVLM family: traces of a pictures folder,
    a LoRA student, the held-out report; the base model is left as it was."""
    import torch

    from redgraph.distill.adapt import AdaptConfig, adapt
    from redgraph.distill.student import DistillConfig
    from redgraph.models.adapter import AdapterConfig
    from tests.conftest import tiny

    root = tmp_path / "mine"
    root.mkdir()
    for number, item in enumerate(ITEMS[:8]):
        item.image().save(root / f"chart{number}.png")  # some held out at 0.5, some not (the test above)
    lvlm = tiny(family)
    before = {name: value.clone() for name, value in lvlm.model.state_dict().items()}
    config = AdaptConfig(pictures=str(root), kind="bars", holdout=0.5, per_style=2, max_new_tokens=6,
                         distill=DistillConfig(steps=2, batch_size=2, warmup_steps=1, precision="float32",
                                               weighting=WeightConfig(threshold=0.0),
                                               adapter=AdapterConfig(layers=(0,), rank=2, skip_layer=None, kind="lora")))
    report = adapt(config, tmp_path / "out", lvlm=lvlm)
    saved = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert saved["manifest"]["config"]["adapter"]["kind"] == "lora"
    assert report["pictures"]["adapt_traces"] == 2 * report["pictures"]["adapt_questions"] > 0
    assert report["heldout"]["questions"] > 0
    assert set(report["heldout"]["change"]) >= {"self_agreement", "support", "unsure_share"}
    after = lvlm.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[name], before[name]) for name in before)


def test_the_critic_of_an_adaptation_may_have_the_ocr_expert_beside_the_models_eyes(tmp_path, monkeypatch):
    """--experts lvlm,ocr: the traces of documents in a font the model never saw get sure claims from
    the OCR expert, where the model's eyes alone are unsure of every one; bad expert names are
    refused before anything runs."""
    import os

    from typer.testing import CliRunner

    from redgraph.cli import app
    from redgraph.data.tools import draw_with
    from redgraph.distill.adapt import AdaptConfig, adapt
    from redgraph.distill.student import DistillConfig
    from redgraph.distill.traces import read_traces
    from redgraph.models import load_lvlm
    from redgraph.models.ocr import ocr_available

    with pytest.raises(ConfigError, match="unknown expert 'ocrx'"):
        AdaptConfig(pictures="x", kind="document", experts="lvlm,ocrx")
    refused = CliRunner().invoke(app, ["distill", "adapt", "x", str(tmp_path / "r"), "--kind", "document",
                                       "--experts", "ocr"])
    assert refused.exit_code != 0 and "leave out the model's own eyes" in refused.output
    missing = ocr_available()
    if missing:
        if os.environ.get("REDGRAPH_REQUIRE_OCR"):
            pytest.fail(f"REDGRAPH_REQUIRE_OCR is set but the OCR engine is missing: {missing}")
        pytest.skip(missing)
    import random

    root = tmp_path / "forms"
    root.mkdir()
    documents = [item for item in generate_items("test", 80, seed=5) if item.kind == "document"][:2]
    for number, item in zip((1, 2), documents):  # chart1 adapted on, chart2 held out at 0.5
        draw_with("fonts", item.scene, random.Random(number), look="heldout").save(root / f"chart{number}.png")
    sure = {}
    for experts in ("lvlm", "lvlm,ocr"):
        config = AdaptConfig(pictures=str(root), kind="document", holdout=0.5, per_style=1, max_new_tokens=24,
                             experts=experts, distill=DistillConfig(steps=1, batch_size=2, warmup_steps=1,
                                                                    precision="float32"))
        out = tmp_path / experts.replace(",", "-")
        adapt(config, out, lvlm=load_lvlm(None))
        records, _ = read_traces([out / "traces"])
        sure[experts] = sum(claim["status"] in ("supported", "unsupported") for r in records for claim in r["claims"])
    assert sure["lvlm"] == 0 < sure["lvlm,ocr"]
    # what the expert read is kept in the traces, and its answer to the title teaches the adapter
    from redgraph.distill.weights import expert_answer
    from redgraph.eval.normalize import answers_match

    records, identity = read_traces([tmp_path / "lvlm-ocr" / "traces"])
    assert identity["experts"] == "lvlm,ocr" and "experts" not in read_traces([tmp_path / "lvlm" / "traces"])[1]
    assert {reading["expert"] for r in records for claim in r["claims"] for reading in claim.get("readings", [])} == {"ocr"}
    taught = expert_answer(records)
    assert taught is not None and answers_match(taught, documents[0].scene.title)  # chart1's title, read by OCR
    weighting = json.loads((tmp_path / "lvlm-ocr" / "adapter" / "adapter_config.json").read_text())["manifest"]["weighting"]
    assert weighting["expert_answers"] == 1
    with pytest.raises(ConfigError, match="other settings"):  # one critic's traces are not resumed by another's
        adapt(AdaptConfig(pictures=str(root), kind="document", holdout=0.5, per_style=1, max_new_tokens=24),
              tmp_path / "lvlm-ocr", lvlm=load_lvlm(None))
