"""SDRT's training side: trace files resume and shard, weights follow their formula on a scripted case,
distillation trains the adapter only and lowers the loss on what it was taught, the control learns
gold answers, and the commands run end to end (on the embedded model, which speaks the prompts)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from redgraph.distill.student import DistillConfig, distill, distill_command, lessons
from redgraph.distill.traces import TRACES, TraceConfig, generate_traces, read_traces
from redgraph.distill.weights import WeightConfig, weigh_traces
from redgraph.errors import ConfigError, InputError
from redgraph.models import load_lvlm
from redgraph.models.adapter import AdapterConfig

CONFIG = TraceConfig(limit=3, per_style=2, max_new_tokens=24)


@pytest.fixture(scope="module")
def embedded():
    return load_lvlm(None)


@pytest.fixture(scope="module")
def traces(embedded, tmp_path_factory):
    folder = tmp_path_factory.mktemp("traces")
    generate_traces(CONFIG, folder, lvlm=embedded)
    return folder


def _records(folder):
    return [json.loads(line) for line in (folder / TRACES).read_text().splitlines()]


def test_traces_record_style_sample_answer_and_support(traces):
    records = _records(traces)
    assert len(records) == 3 * 2
    assert [(r["style"], r["sample"], r["sampled"]) for r in records[:2]] == [("facts", 0, False), ("facts", 1, True)]
    for record in records:
        assert record["item"] == {"synthetic": "train", "index": int(record["question_id"][-6:]), "seed": 1}
        assert record["gold_answer"] and record["answer"] is not None
        if record["rationale"].strip():
            assert 0.0 <= record["support"] <= 1.0
            assert all(0.0 <= claim["support"] <= 1.0 for claim in record["claims"])


def test_an_interrupted_trace_run_resumes_to_the_same_file(embedded, traces, tmp_path):
    generate_traces(TraceConfig(limit=2, per_style=2, max_new_tokens=24), tmp_path, lvlm=embedded)
    with open(tmp_path / TRACES, "a") as handle:
        handle.write('{"question_id": "train-1-0000')  # a write cut short by a killed process
    result = generate_traces(CONFIG, tmp_path, lvlm=embedded)
    assert result["written"] == 2 and result["traces"] == 6
    assert _records(tmp_path) == _records(traces)


def test_shards_read_together_are_the_whole_set(embedded, traces, tmp_path):
    for index in range(2):
        config = TraceConfig(limit=3, per_style=2, max_new_tokens=24, shard=(index, 2))
        generate_traces(config, tmp_path / str(index), lvlm=embedded)
    together, identity = read_traces([tmp_path / "0", tmp_path / "1", tmp_path / "1"])  # a shard twice counts once
    key = lambda r: (r["question_id"], r["sample"])  # noqa: E731
    assert sorted(together, key=key) == sorted(_records(traces), key=key)
    assert identity == CONFIG.identity()


def test_trace_folders_of_other_settings_are_refused(embedded, traces, tmp_path):
    with pytest.raises(ConfigError, match=r"other settings \(per_style\)"):
        generate_traces(TraceConfig(limit=3, per_style=1, max_new_tokens=24), traces, lvlm=embedded)
    generate_traces(TraceConfig(limit=1, per_style=1, max_new_tokens=24), tmp_path, lvlm=embedded)
    with pytest.raises(InputError, match="other settings"):
        read_traces([traces, tmp_path])
    with pytest.raises(InputError, match="not a trace folder"):
        read_traces([tmp_path / "nothing"])
    with pytest.raises(ConfigError, match="unknown prompt style 'poetry'"):
        TraceConfig(styles=("poetry",))
    with pytest.raises(ConfigError, match="synthetic split must be one of"):
        TraceConfig(source="synthetic:dev")
    with pytest.raises(ConfigError, match="teacher 'gpt'"):
        TraceConfig(teacher="gpt")


def test_any_reasoner_can_teach_two_step_traces(embedded, tmp_path):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from redgraph.agents.remote import LangChainReasoner

    replies = ["The bars: red at left, green at right.", "The red bar is 3. The green bar is 7.", "green"]
    teacher = LangChainReasoner(GenericFakeChatModel(messages=iter(AIMessage(r) for r in replies)), styles=("decompose",))
    config = TraceConfig(limit=1, styles=("decompose",))
    generate_traces(config, tmp_path, teacher=teacher, lvlm=embedded)
    [record] = _records(tmp_path)
    assert (record["style"], record["analysis"], record["rationale"], record["answer"]) == ("decompose", *replies)
    assert record["teacher"] == "langchain:GenericFakeChatModel"
    assert [c["text"] for c in record["claims"]] == ["The red bar is 3.", "The green bar is 7."]
    assert json.loads((tmp_path / "traces_config.json").read_text())["identity"]["teacher"] == \
        "given:langchain:GenericFakeChatModel"


def _trace(qid, style, answer, support, gold="3", rationale="The red bar is 3."):
    return {"question_id": qid, "question": "What is the value of the red bar?", "item": {"image": None},
            "style": style, "analysis": None, "rationale": rationale, "answer": answer, "support": support,
            "gold_answer": gold}


SCRIPTED = [
    # item a: facts says 3 twice (right), plan says 5 (wrong)
    _trace("a", "facts", "3", 0.9), _trace("a", "facts", "Three", 0.6), _trace("a", "plan", "5", 0.8),
    # item b: facts right once, plan right once, one trace without a rationale
    _trace("b", "facts", "3", 0.2), dict(_trace("b", "plan", "3.", 1.0), analysis="(red bar, value, ?)"), _trace("b", "plan", "7", 0.5, rationale=" "),
]


def test_weights_follow_the_formula_on_a_scripted_case():
    # Style accuracy against gold (Laplace): facts 3 of 3 -> 4/5; plan 1 of 2 -> 2/4; best = facts.
    facts, plan = 1.0, (2 / 4) / (4 / 5)
    result = weigh_traces(SCRIPTED, WeightConfig(threshold=0.1))
    expected = [facts * (2 / 3) * 0.9, facts * (2 / 3) * 0.6, plan * (1 / 3) * 0.8,
                facts * 1.0 * 0.2, plan * 1.0 * 1.0]
    assert [w for _, w in result.kept] == pytest.approx(expected)
    assert result.dropped == {"empty": 1}
    assert result.style_weights == pytest.approx({"facts": facts, "plan": plan})
    # The threshold drops and counts; each ablation sets its factor to 1.
    assert weigh_traces(SCRIPTED, WeightConfig(threshold=0.25)).dropped == {"empty": 1, "below_threshold": 2}
    no_critic = weigh_traces(SCRIPTED, WeightConfig(critic=False, threshold=0.1))
    assert [w for _, w in no_critic.kept] == pytest.approx([2 / 3, 2 / 3, plan / 3, 1.0, plan])
    uniform = weigh_traces(SCRIPTED, WeightConfig(agreement=False, style_weights="uniform", threshold=0.1))
    assert [w for _, w in uniform.kept] == pytest.approx([0.9, 0.6, 0.8, 0.2, 1.0])


def test_style_weights_without_gold_answers_follow_the_plurality():
    records = [dict(r, gold_answer=None) for r in SCRIPTED]
    # plurality: a -> "3" (facts twice), b -> "3" (one each): facts 3 of 3, plan 1 of 2, as with gold here
    result = weigh_traces(records, WeightConfig(threshold=0.1))
    assert result.style_weights == pytest.approx({"facts": 1.0, "plan": (2 / 4) / (4 / 5)})
    with pytest.raises(ConfigError, match="threshold must be"):
        WeightConfig(threshold=1.5)


def test_lessons_teach_answers_and_rationales_and_the_control_gold():
    examples, summary = lessons(SCRIPTED, DistillConfig(weighting=WeightConfig(threshold=0.1)))
    assert [e.task for e in examples[:2]] == ["answer", "rationale"]
    assert examples[0].target == "3" and examples[1].target == "The red bar is 3."
    assert summary["kept"] == 5 and summary["examples"] == 10  # 3 facts x 2, plan with its analysis 3, without 1
    assert [e.task for e in examples if "plan" in e.instruction or "Plan" in e.instruction] == ["analysis"]
    assert [e.target for e in examples if e.task == "analysis"] == ["(red bar, value, ?)"]
    gold, info = lessons(SCRIPTED, DistillConfig(targets="gold"))
    assert [(e.task, e.target, e.weight) for e in gold] == [("answer", "3", 1.0)] * 2 and info["items"] == 2
    with pytest.raises(InputError, match="no trace is left"):
        lessons(SCRIPTED, DistillConfig(weighting=WeightConfig(threshold=0.99)))
    with pytest.raises(InputError, match="gold answers"):
        lessons([dict(r, gold_answer=None) for r in SCRIPTED], DistillConfig(targets="gold"))


def _loss(lvlm, examples):
    from redgraph.distill.items import item_image
    from redgraph.lab.batches import batch_tensors
    from redgraph.lab.tasks import Example
    from redgraph.lab.losses import example_loss
    from redgraph.models.prompts import render

    batch = batch_tensors([Example(e.task, render(lvlm.processor, e.instruction, with_image=True), item_image(e.ref),
                                   e.target) for e in examples], lvlm.processor)
    with torch.no_grad():
        return float(example_loss(lvlm.model, batch))


def test_distillation_trains_only_the_adapter_and_learns_its_lessons(traces, tmp_path):
    records, _ = read_traces([traces])
    config = DistillConfig(steps=25, batch_size=8, learning_rate=2e-2, warmup_steps=2, precision="float32",
                           weighting=WeightConfig(critic=False), adapter=AdapterConfig(layers=(1, 2), rank=4))
    lvlm = load_lvlm(None)
    before = {name: tensor.clone() for name, tensor in lvlm.model.state_dict().items()}
    examples, _ = lessons(records, config)
    # Teach a target the model would not write: the answers of the traces, reversed.
    records = [dict(r, answer=r["answer"][::-1] + "x") for r in records]
    taught, _ = lessons(records, config)
    start = _loss(lvlm, taught)
    adapter, manifest = distill(lvlm, records, config, out_dir=tmp_path / "adapter")
    assert _loss(lvlm, taught) < 0.8 * start
    assert all(torch.equal(tensor, before[name]) for name, tensor in lvlm.model.state_dict().items())
    assert lvlm.adapter_path == str(tmp_path / "adapter")  # runs on the adapted model say so in their traces
    assert manifest["weighting"]["kept"] + manifest["weighting"]["dropped"].get("empty", 0) == len(records) and manifest["trainable_parameters"] > 0
    assert manifest["command"].startswith(
        "redgraph distill train OUT TRACES --steps 25 --seed 0 --precision float32 --batch-size 8")
    assert "--layers 1,2" in manifest["command"] and "--no-critic" in manifest["command"]
    # The saved folder loads onto a fresh copy of the base and gives the same logits.
    reloaded = load_lvlm(None, adapter=tmp_path / "adapter")
    assert _loss(reloaded, taught) == pytest.approx(_loss(lvlm, taught), abs=1e-5)
    assert len(examples) == len(taught)


def test_a_stopped_distillation_goes_on_to_the_adapter_an_uninterrupted_run_gives(traces, tmp_path):
    from safetensors.torch import load_file

    from redgraph.distill.student import RUN_STATE
    from redgraph.models.adapter import ADAPTER_WEIGHTS

    records, _ = read_traces([traces])
    config = DistillConfig(steps=6, batch_size=4, warmup_steps=1, precision="float32", weighting=WeightConfig(critic=False))
    _, whole = distill(load_lvlm(None), records, config, out_dir=tmp_path / "whole", save_every=2)
    assert not (tmp_path / "whole" / RUN_STATE).exists()  # removed once the adapter is saved

    class Stop(Exception):
        pass

    def stop_at_5(step, _loss):
        if step == 5:
            raise Stop

    lvlm = load_lvlm(None)
    with pytest.raises(Stop):
        distill(lvlm, records, config, out_dir=tmp_path / "stopped", save_every=2, on_progress=stop_at_5)
    assert (tmp_path / "stopped" / RUN_STATE).is_file() and not (tmp_path / "stopped" / ADAPTER_WEIGHTS).exists()
    assert not lvlm.adapter_path  # the stopped run left the model as it was
    with pytest.raises(ConfigError, match="holds a stopped run of other config; run the same command"):
        distill(load_lvlm(None), records, dataclasses.replace(config, seed=1), out_dir=tmp_path / "stopped")
    steps = []
    _, resumed = distill(load_lvlm(None), records, config, out_dir=tmp_path / "stopped", save_every=2,
                         on_progress=lambda step, _loss: steps.append(step))
    assert steps == [5, 6] and resumed["resumed_at_step"] == 4  # the last save was after step 4
    assert resumed["final_loss_mean_last_20"] == whole["final_loss_mean_last_20"]
    a, b = load_file(tmp_path / "whole" / ADAPTER_WEIGHTS), load_file(tmp_path / "stopped" / ADAPTER_WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RUN_STATE).write_bytes(b"not a state")
    with pytest.raises(ConfigError, match="cannot be read as a stopped distillation run"):
        distill(load_lvlm(None), records, config, out_dir=tmp_path / "broken")


def test_keep_lessons_put_the_base_models_own_answers_in_every_batch(embedded, traces, tmp_path, monkeypatch):
    """--keep: the base model's own answers on other pictures (no label read), a share of every batch."""
    import redgraph.lab.batches
    from redgraph.distill.keep import keep_lessons
    from redgraph.distill.traces import trace_items
    from redgraph.models.generation import generate_with_hf
    from redgraph.models.prompts import image_branch_text

    keep = keep_lessons(embedded, "synthetic:validation", 4)
    items = trace_items(TraceConfig(source="synthetic:validation", limit=4))
    assert [lesson.ref for lesson in keep] == [item.ref for item in items]
    for lesson, item in zip(keep, items):  # each target is what the model answers from that picture alone
        [said] = generate_with_hf(embedded, [image_branch_text(embedded.processor, item.question)], [item.image()], 16)
        assert lesson.task == "answer" and lesson.target == said.strip() and lesson.instruction == item.question
    drawn = []
    real = redgraph.lab.batches.batch_tensors

    def spy(examples, processor):
        drawn.append([(e.prompt, e.target) for e in examples])
        return real(examples, processor)

    monkeypatch.setattr(redgraph.lab.batches, "batch_tensors", spy)
    records, _ = read_traces([traces])
    config = DistillConfig(steps=3, batch_size=8, warmup_steps=1, precision="float32", keep="synthetic:validation",
                           keep_limit=4, keep_share=0.25)
    _, manifest = distill(load_lvlm(None), records, config, out_dir=tmp_path / "kept")
    from redgraph.models.prompts import render

    kept = {(render(embedded.processor, lesson.instruction, with_image=True), lesson.target) for lesson in keep}
    assert len(drawn) == 3 and all(len(batch) == 8 for batch in drawn)
    assert all(set(batch[-2:]) <= kept for batch in drawn)  # a quarter of each batch: keep lessons
    assert manifest["weighting"]["keep_lessons"] == 4
    assert "--keep synthetic:validation --keep-limit 4 --keep-share 0.25" in manifest["command"]
    for bad, message in (({"keep_share": 0.0}, "keep_share must be a share above 0"),
                         ({"keep": "synthetic:train", "batch_size": 2}, "leaves no room"),
                         ({"keep_limit": 0}, "keep_limit")):
        with pytest.raises(ConfigError, match=message):
            DistillConfig(**bad)
    with pytest.raises(ConfigError, match="keep must be synthetic:SPLIT or a dataset"):
        keep_lessons(embedded, "pictures:somewhere", 4)


def test_distill_refuses_an_adapted_model_and_an_absent_device(traces, tmp_path):
    records, _ = read_traces([traces])
    with pytest.raises(ConfigError, match="already has an adapter"):
        distill(load_lvlm(None, adapter=_adapter_folder(traces, tmp_path)), records, DistillConfig(steps=1))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            distill(load_lvlm(None), records, DistillConfig(steps=1), device="cuda")
    with pytest.raises(ConfigError, match="targets must be"):
        DistillConfig(targets="silver")


def _adapter_folder(traces, tmp_path):
    records, _ = read_traces([traces])
    distill(load_lvlm(None), records, DistillConfig(steps=1, batch_size=2), out_dir=tmp_path / "a")
    return tmp_path / "a"


def test_the_command_line_round(tmp_path):
    from typer.testing import CliRunner

    from redgraph.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["distill", "traces", str(tmp_path / "t"), "--limit", "2", "--per-style", "2",
                               "--max-new-tokens", "16", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["traces"] == 4
    trained = runner.invoke(app, ["distill", "train", str(tmp_path / "a"), str(tmp_path / "t"), "--steps", "2",
                                  "--batch-size", "2", "--control", "--skip-layer", "none", "--json"])
    assert trained.exit_code == 0, trained.output
    manifest = json.loads(trained.stdout)
    assert manifest["weighting"] == {"items": 2, "targets": "gold"} and "--control" in manifest["command"]
    assert "--skip-layer none" in manifest["command"]
    evaluated = runner.invoke(app, ["embedded", "evaluate", "--limit", "3", "--adapter", str(tmp_path / "a"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["items"] == 3
    lora = runner.invoke(app, ["distill", "train", str(tmp_path / "l"), str(tmp_path / "t"), "--steps", "2",
                               "--batch-size", "2", "--kind", "lora", "--json"])
    assert lora.exit_code == 0, lora.output
    assert json.loads(lora.stdout)["config"]["adapter"] == {"layers": [0, 1, 2, 3], "rank": 4, "skip_layer": None,
                                                            "kind": "lora", "vision_layers": []}
    seeing = runner.invoke(app, ["distill", "train", str(tmp_path / "v"), str(tmp_path / "t"), "--steps", "1",
                                 "--batch-size", "2", "--kind", "lora", "--layers", "none", "--vision-layers", "all",
                                 "--json"])
    assert seeing.exit_code == 0, seeing.output
    manifest = json.loads(seeing.stdout)
    assert manifest["config"]["adapter"] == {"layers": [], "rank": 4, "skip_layer": None, "kind": "lora",
                                             "vision_layers": [0, 1, 2]}  # the embedded model's three blocks
    assert "--layers none" in manifest["command"] and "--vision-layers 0,1,2" in manifest["command"]
    refused = runner.invoke(app, ["distill", "train", str(tmp_path / "w"), str(tmp_path / "t"), "--kind", "lora",
                                  "--vision-layers", "two"])
    assert refused.exit_code == 2 and "--vision-layers must be layer numbers separated by commas, all, or none" \
        in refused.output
    assert load_lvlm(None, adapter=tmp_path / "l").adapter_path == str(tmp_path / "l")
    bad = runner.invoke(app, ["distill", "train", str(tmp_path / "b"), str(tmp_path / "t"), "--layers", "one"])
    assert bad.exit_code == 2 and "--layers must be layer numbers" in bad.output
    unlearned = runner.invoke(app, ["distill", "train", str(tmp_path / "n"), str(tmp_path / "t"), "--steps", "1",
                                    "--batch-size", "2", "--no-experts", "--json"])
    assert unlearned.exit_code == 0 and "--no-experts" in json.loads(unlearned.stdout)["command"]
    no_eyes = runner.invoke(app, ["distill", "traces", str(tmp_path / "o"), "--experts", "ocr"])
    assert no_eyes.exit_code != 0 and "leave out the model's own eyes" in no_eyes.output
    missing = runner.invoke(app, ["distill", "train", str(tmp_path / "b"), str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a trace folder" in missing.output


def test_distill_command_names_every_changed_setting():
    config = DistillConfig(steps=10, learning_rate=0.01, adapter=AdapterConfig(layers=(), skip_layer=3),
                           weighting=WeightConfig(agreement=False, style_weights="uniform", threshold=0.5,
                                                  unsure="drop", experts=False),
                           precision="float32")
    assert distill_command(config) == ("redgraph distill train OUT TRACES --steps 10 --seed 0 --precision float32 "
                                       "--learning-rate 0.01 "
                                       "--layers none --skip-layer 3 --no-agreement --uniform-styles --threshold 0.5 "
                                       "--drop-unsure --no-experts")
