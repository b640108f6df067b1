"""``redgraph eval``: every mode on a handful of synthetic items, resume after interruption,
sharding and merge, the dataset formats, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.data import export_dataset
from redgraph.decoding import REDConfig, REDDecoder
from redgraph.errors import ConfigError, InputError
from redgraph.eval.datasets import load_dataset
from redgraph.eval.merge import merge
from redgraph.eval.normalize import answers_match
from redgraph.eval.plan import EvalConfig, plan, select_items
from redgraph.eval.report import best_lambda, lookup
from redgraph.eval.runner import lies, run_eval
from redgraph.models.embedded import load_embedded

ALL_MODES = ("direct", "cot", "red", "red_multi", "graph", "critic")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    export_dataset(folder, {"test": 6})
    return folder


@pytest.fixture(scope="module")
def lvlm():
    return load_embedded()


@pytest.fixture(scope="module")
def rationale_file(data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rationales") / "gpt.jsonl"
    items = load_dataset(data)
    path.write_text("".join(json.dumps({"question_id": i.question_id, "rationale": i.gold_rationale}) + "\n" for i in items))
    return path


def config(data, **changes) -> EvalConfig:
    settings = dict(dataset=str(data), modes=("direct", "cot", "red"), sources=("gold", "misleading"),
                    lambdas=(0.0, 1.0), max_new_tokens=6, limit=4)
    settings.update(changes)
    return EvalConfig(**settings)


def predictions(folder: Path) -> dict[str, dict]:
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def test_every_mode_and_source_end_to_end(data, lvlm, rationale_file, tmp_path):
    sources = ("self", "gold", "irrelevant", "misleading", "lying", f"file:{rationale_file}")
    cfg = config(data, modes=ALL_MODES, sources=sources, limit=3, rounds=1)
    summary = run_eval(cfg, tmp_path, lvlm=lvlm)
    records = predictions(tmp_path)
    items = select_items(load_dataset(data), cfg)
    assert len(records) == len(plan(items, cfg))
    modes = {r["mode"] for r in records.values()}
    assert modes == set(ALL_MODES)
    # Direct answers are what the decoder gives for the image alone, scored by the normaliser.
    for item in items:
        record = records[f"{item.question_id}|direct|-|-"]
        expected = REDDecoder(lvlm, REDConfig(rationale_weight=0.0, max_new_tokens=6)).decode(item.image, item.question).text
        assert record["prediction"] == expected.strip()
        assert record["correct"] == answers_match(expected, item.answer)
        # The rationale file holds the gold rationales, so RED gives the same answers with either.
        for weight in ("0", "1"):
            assert records[f"{item.question_id}|red|gold|{weight}"]["prediction"] == \
                records[f"{item.question_id}|red|file:{rationale_file}|{weight}"]["prediction"]
        lying = records[f"{item.question_id}|red|lying|1"]["rationales"][0]
        assert lying == (item.misleading_rationale if lies(item) else item.gold_rationale)
        assert records[f"{item.question_id}|graph|gold|1"]["trace"].startswith("traces/")
    # Self-written rationales are kept, one per item.
    written = [json.loads(line) for line in (tmp_path / "rationales.self.jsonl").read_text().splitlines()]
    assert sorted(w["question_id"] for w in written) == sorted(i.question_id for i in items)
    # The summary agrees with the records.
    red_gold = [r for r in records.values() if r["mode"] == "red" and r["source"] == "gold" and r["lambda"] == 1.0]
    assert lookup(summary, "red", "gold", 1.0) == sum(r["correct"] for r in red_gold) / len(red_gold)
    assert best_lambda(summary, "red", "gold")[0] in (0.0, 1.0)
    flip = {(f["mode"], f["lambda"]) for f in summary["flip_rates"]}
    assert {("cot", None), ("red", 1.0), ("graph", 1.0)} <= flip
    critic = summary["critic"]
    assert critic["claims"] == sum(len(i.claims) for i in items) and 0 <= critic["accuracy"] <= 1
    # Every synthetic claim is in the grammar, so the critic asked the image about each.
    claims = [c for r in records.values() if r["mode"] == "critic" for c in r["claims"]]
    assert claims and all(c["method"] == "probes" and c["probes"] for c in claims)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["run"]["redgraph_version"] and summary["run"]["settings"]["modes"]
    assert all(row["ci95"][0] <= row["accuracy"] <= row["ci95"][1] for row in summary["accuracy"])
    assert "| red | gold | 1 |" in (tmp_path / "summary.md").read_text()
    for plot in ("accuracy_vs_lambda.png", "flip_rate.png"):
        with Image.open(tmp_path / "plots" / plot) as picture:
            assert picture.size[0] > 100


def test_resume_after_interruption_gives_the_uninterrupted_result(data, lvlm, tmp_path):
    whole = tmp_path / "whole"
    run_eval(config(data), whole, lvlm=lvlm)

    class Stop(Exception):
        pass

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise Stop

    cut = tmp_path / "cut"
    with pytest.raises(Stop):
        run_eval(config(data), cut, lvlm=lvlm, on_progress=stop_after_five)
    assert len(predictions(cut)) == 5
    with open(cut / "predictions.jsonl", "a") as handle:
        handle.write('{"key": "half a line')  # as a kill in the middle of a write leaves it
    seen = []
    run_eval(config(data), cut, lvlm=lvlm, on_progress=lambda done, total: seen.append(done))
    assert seen[0] == 6 and seen[-1] == len(predictions(whole))  # the first five were not redone
    strip = lambda records: {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in records.items()}  # noqa: E731
    assert strip(predictions(cut)) == strip(predictions(whole))


def test_shards_merge_into_the_whole(data, lvlm, tmp_path):
    whole = tmp_path / "whole"
    summary = run_eval(config(data), whole, lvlm=lvlm)
    shards = [tmp_path / f"shard{i}" for i in range(3)]
    for index, folder in enumerate(shards):
        run_eval(config(data, shard=(index, 3)), folder, lvlm=lvlm)
    assert sum(len(predictions(s)) for s in shards) == len(predictions(whole))
    with pytest.raises(InputError, match="do not make up one whole"):
        merge(tmp_path / "partial", shards[:2])
    unfinished = shards[1] / "predictions.jsonl"
    kept = unfinished.read_text()
    unfinished.write_text("".join(kept.splitlines(keepends=True)[:-1]))
    with pytest.raises(InputError, match="shard1 is unfinished: 1 of its"):
        merge(tmp_path / "early", shards)
    unfinished.write_text(kept)
    merged = merge(tmp_path / "merged", shards)
    assert {k: r["prediction"] for k, r in predictions(tmp_path / "merged").items()} == \
        {k: r["prediction"] for k, r in predictions(whole).items()}
    assert merged["accuracy"] == summary["accuracy"]
    other = tmp_path / "other"
    run_eval(config(data, lambdas=(0.5,), shard=(1, 3)), other, lvlm=lvlm)
    with pytest.raises(ConfigError, match="other settings"):
        merge(tmp_path / "mixed", [shards[0], other, shards[2]])


def test_a_folder_with_other_settings_is_not_resumed(data, lvlm, tmp_path):
    run_eval(config(data, modes=("direct",)), tmp_path, lvlm=lvlm)
    with pytest.raises(ConfigError, match=r"other settings \(modes\)"):
        run_eval(config(data, modes=("direct", "cot")), tmp_path, lvlm=lvlm)
    run_eval(config(data, modes=("direct",), limit=5), tmp_path, lvlm=lvlm)  # a larger limit resumes
    assert len(predictions(tmp_path)) == 5


def write_image(path: Path) -> None:
    Image.new("RGB", (32, 32), "red").save(path)


def test_gqa_and_multiple_choice_formats(tmp_path, lvlm):
    gqa = tmp_path / "gqa"
    gqa.mkdir()
    write_image(gqa / "a.png")
    (gqa / "testdev.jsonl").write_text(json.dumps({"question_id": "q1", "image": "a.png", "text": "What colour?",
                                                   "answer": "red", "category": "attr"}) + "\n")
    [item] = load_dataset(gqa)
    assert (item.question, item.answer, item.category, item.gold_rationale) == ("What colour?", "red", "attr", None)
    mc = tmp_path / "scienceqa"
    mc.mkdir()
    write_image(mc / "b.png")
    problems = {"7": {"question": "Which is a mammal?", "choices": ["shark", "whale"], "answer": 1, "image": None,
                      "subject": "biology", "split": "test"},
                "8": {"question": "What colour is it?", "choices": ["blue", "red"], "answer": 1, "image": "b.png",
                      "split": "test"},
                "9": {"question": "Other split", "choices": ["a", "b"], "answer": 0, "split": "train"}}
    (mc / "problems.json").write_text(json.dumps(problems))
    items = load_dataset(mc, split="test")
    assert [i.question_id for i in items] == ["7", "8"] and items[0].image is None and items[0].answer == "whale"
    assert items[0].accepts("Whale.") and items[0].accepts("(B)") and not items[0].accepts("shark")
    assert "(A) shark (B) whale" in items[0].prompt
    summary = run_eval(EvalConfig(dataset=str(mc), split="test", modes=("direct",), sources=(), max_new_tokens=4),
                       tmp_path / "out", lvlm=lvlm)
    assert summary["items"] == 2
    records = predictions(tmp_path / "out")
    assert records["7|direct|-|-"]["blank_image"] is True and records["8|direct|-|-"]["blank_image"] is False


@pytest.mark.parametrize("line, words", [
    ({"image": "a.png", "text": "q", "answer": "a"}, "missing 'question_id'"),
    ({"question_id": "1", "image": "missing.png", "text": "q", "answer": "a"}, "image 'missing.png' not found"),
    ({"question_id": "1", "text": "q", "answer": "a"}, "needs an image"),
    ({"question_id": "1", "question": "q", "choices": ["a", "b"], "answer": 2}, "index of the right choice"),
    ({"question_id": "1", "question": "q", "choices": [], "answer": 0}, "non-empty list"),
])
def test_bad_records_are_named(tmp_path, line, words):
    write_image(tmp_path / "a.png")
    (tmp_path / "data.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=words):
        load_dataset(tmp_path)


def test_bad_settings_and_sources_are_named(data, lvlm, tmp_path):
    with pytest.raises(ConfigError, match="unknown mode 'beam'"):
        config(data, modes=("beam",))
    with pytest.raises(ConfigError, match="unknown rationale source 'gpt4'"):
        config(data, sources=("gpt4",))
    with pytest.raises(ConfigError, match="shard must be i/n"):
        config(data, shard=(3, 2))
    with pytest.raises(ConfigError, match="need at least one rationale source"):
        config(data, sources=())
    with pytest.raises(InputError, match="has several data files"):
        load_dataset(_two_files(tmp_path))
    gqa = tmp_path / "plain"
    gqa.mkdir()
    write_image(gqa / "a.png")
    (gqa / "d.jsonl").write_text(json.dumps({"question_id": "1", "image": "a.png", "text": "q", "answer": "a"}) + "\n")
    with pytest.raises(InputError, match="mode 'critic' needs labelled claims"):
        run_eval(EvalConfig(dataset=str(gqa), modes=("critic",), sources=()), tmp_path / "o0", lvlm=lvlm)
    with pytest.raises(InputError, match="'gold' needs gold_rationale"):
        run_eval(EvalConfig(dataset=str(gqa), modes=("red",), sources=("gold",)), tmp_path / "o1", lvlm=lvlm)
    with pytest.raises(InputError, match="has no rationale for 1 items"):
        (tmp_path / "r.jsonl").write_text(json.dumps({"question_id": "2", "rationale": "x"}) + "\n")
        run_eval(EvalConfig(dataset=str(gqa), modes=("red",), sources=(f"file:{tmp_path / 'r.jsonl'}",)),
                 tmp_path / "o2", lvlm=lvlm)


def _two_files(tmp_path: Path) -> Path:
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.jsonl").write_text("")
    (folder / "b.jsonl").write_text("")
    return folder


def test_command_prints_the_summary_as_json(data, tmp_path):
    result = CliRunner().invoke(app, ["eval", "run", str(data), str(tmp_path), "--mode", "direct", "--limit", "2",
                                      "--max-new-tokens", "4", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == 2 and summary["accuracy"][0]["mode"] == "direct"
    bad = CliRunner().invoke(app, ["eval", "run", str(data), str(tmp_path / "x"), "--shard", "two"])
    assert bad.exit_code == 2 and "--shard must look like 0/4" in bad.output
