"""The `redgraph` command, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redgraph.cli import app
from tests.conftest import NO_REFERENCE, reference_checkpoint, scene, tiny

runner = CliRunner()


def test_import_is_light_and_quiet():
    code = "import sys, redgraph; print(sorted(m for m in ('torch', 'transformers', 'langgraph') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]" and done.stderr == ""


def test_decode_prints_answer_and_attribution_as_json(tmp_path):
    tiny("llava_clip").save(tmp_path / "model")
    scene().save(tmp_path / "scene.png")
    result = runner.invoke(app, [
        "decode", str(tmp_path / "scene.png"), "what color is the circle?", "--model", str(tmp_path / "model"),
        "-r", "the circle is red", "-r", "the square is blue", "--lambda", "0.8", "--max-new-tokens", "5", "--json",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rationale_lambdas"] == [0.4, 0.4]
    assert len(payload["tokens"]) == 5 and len(payload["tokens"][0]["rationale_logprobs"]) == 2


def test_decode_errors_exit_2_and_name_the_value(tmp_path):
    scene().save(tmp_path / "scene.png")
    missing = runner.invoke(app, ["decode", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    tiny("llava_clip").save(tmp_path / "model")
    negative = runner.invoke(app, ["decode", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "model"),
                                   "--lambda", "-1"])
    assert negative.exit_code == 2 and "-1" in negative.output
    # a model folder that is there but does not load is a failure while running: exit 1, as Click's
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    broken = runner.invoke(app, ["decode", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "broken")])
    assert broken.exit_code == 1 and "broken" in broken.output


def test_demo_runs_the_graph_offline_and_writes_verifiable_traces(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["model"] == "redgraph-embedded"
    assert [run["run"] for run in payload["runs"]] == ["shapes", "bars", "document", "sales_chart", "receipt",
                                                       "bars-lying-reasoner", "sales_chart-lying-reasoner"]
    for run in payload["runs"]:
        assert runner.invoke(app, ["trace", "verify", run["trace"]]).exit_code == 0
        assert "<html" in Path(run["report"]).read_text()
    lying = payload["runs"][-2]
    assert lying["rationales"][0]["text"] == "The blue bar is 5."
    # The critic asked the image; its critique says what the image answered. The shipped model reads
    # bar values, titles and (0.82 held out) left/right (BENCHMARKS.md), so the lie is caught and
    # answered from the image; the bars and document runs are accepted and right.
    assert lying["critiques"]
    assert 'asked "What is the value of the blue bar?", the image answers 9 (p ' in lying["critiques"][-1]
    answers = {run["run"]: (run["outcome"], run["answer"]) for run in payload["runs"]}
    assert answers["bars-lying-reasoner"] == ("image_only", "9")
    assert answers["bars"] == ("accepted", "9") and answers["document"] == ("accepted", "invoice")
    # Left/right is where the eyes are least sure (0.82 held out): the image gives its answer with a
    # probability under the calibrated unsure_below, so the run says "unsure" rather than accepting.
    assert answers["shapes"] == ("unsure", "left")
    assert payload["runs"][0]["unsure"] is True and payload["runs"][0]["flags"] == ["image_unsure"]
    # The user's pictures (matplotlib, a receipt PDF in DejaVu Sans): the readers write what they read,
    # the critic accepts it, and the answer is unsure unless RED wrote exactly that.
    runs = {run["run"]: run for run in payload["runs"]}
    for name, reading in (("sales_chart", "Q2"), ("receipt", "$11.25")):
        [rationale] = runs[name]["rationales"]
        assert rationale["model"].startswith("readers:") and rationale["status"] == "accepted"
        assert runs[name]["readings"] == [reading]
        assert runs[name]["unsure"] == (runs[name]["answer"] != reading)
    # The planted liar on the user's chart is contradicted by the chart reader; the readers' rationale stands.
    liar = {r["model"]: r for r in runs["sales_chart-lying-reasoner"]["rationales"]}
    assert liar["planted-liar"]["status"] == "rejected" and liar["readers:chart"]["status"] == "accepted"


REFERENCE = reference_checkpoint()


@pytest.mark.skipif(REFERENCE is None, reason=NO_REFERENCE)
def test_demo_with_a_model_that_reads_bars_catches_the_lie_and_names_the_true_value(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--json", "--model", str(REFERENCE)])
    assert result.exit_code == 0, result.output
    runs = {run["run"]: run for run in json.loads(result.stdout)["runs"]}
    lying, honest = runs["bars-lying-reasoner"], runs["bars"]
    assert lying["outcome"] == "image_only" and lying["answer"] == "9"
    assert lying["critiques"][-1].startswith('Rationale 1: "The blue bar is 5." is not supported by the image: asked '
                                             '"What is the value of the blue bar?", the image answers 9 (p ')
    assert honest["outcome"] == "accepted" and honest["answer"] == "9"


def test_decode_defaults_to_the_embedded_model(tmp_path):
    from redgraph.data import make_item

    item = make_item("test", 1)
    item.image().save(tmp_path / "chart.png")
    result = runner.invoke(app, ["decode", str(tmp_path / "chart.png"), item.question, "--lambda", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tokens"]


def test_data_export_command(tmp_path):
    result = runner.invoke(app, ["data", "export", str(tmp_path), "--train", "2", "--validation", "1", "--test", "2"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 2
    assert len(list((tmp_path / "images").iterdir())) == 5


def test_ask_prints_answer_rationales_verdict_and_trace(tmp_path):
    tiny("llava_clip").save(tmp_path / "model")
    scene().save(tmp_path / "scene.png")
    result = runner.invoke(app, [
        "ask", str(tmp_path / "scene.png"), "what color is the circle?", "--model", str(tmp_path / "model"),
        "--checkpoint", "memory", "--rounds", "1", "--max-new-tokens", "3", "--trace", str(tmp_path / "t.json"),
        "--report", str(tmp_path / "r.html"), "--sign-key", "k", "--json",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"answer", "rationales", "verdict", "trace"} <= set(payload)
    assert payload["rationales"][0]["style"] == "facts" and 0 <= payload["rationales"][0]["support"] <= 1
    assert [e["node"] for e in payload["trace"]["events"]] == ["receive", "reason", "critique", "decide", "answer"]
    assert runner.invoke(app, ["trace", "verify", str(tmp_path / "t.json"), "--key", "k"]).exit_code == 0
    assert runner.invoke(app, ["trace", "verify", str(tmp_path / "t.json"), "--key", "wrong"]).exit_code == 1
    assert "<html" in (tmp_path / "r.html").read_text()
    bad = runner.invoke(app, ["ask", str(tmp_path / "none.png"), "q?", "--model", str(tmp_path / "model"),
                              "--checkpoint", "memory"])
    assert bad.exit_code == 2 and "none.png" in bad.output
    unknown = runner.invoke(app, ["ask", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "nope")])
    assert unknown.exit_code == 2 and "nope" in unknown.output
    empty = runner.invoke(app, ["ask", str(tmp_path / "scene.png"), " ", "--model", str(tmp_path / "model")])
    assert empty.exit_code == 2 and "empty" in empty.output
    not_json = runner.invoke(app, ["ask", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "model"),
                                   "--resume", "use 0"])
    assert not_json.exit_code == 2 and "'use 0'" in not_json.output


def test_trace_commands(tmp_path):
    from tests.test_trace import _trace

    path = _trace(signed=True).save(tmp_path / "trace.json")
    assert runner.invoke(app, ["trace", "verify", str(path), "--key", "secret"]).exit_code == 0
    shown = runner.invoke(app, ["trace", "show", str(path)])
    assert shown.exit_code == 0 and "reasoner" in shown.stdout
    path.write_text(path.read_text().replace('"red"', '"blue"', 1))
    bad = runner.invoke(app, ["trace", "verify", str(path)])
    assert bad.exit_code == 1 and "event 3" in bad.output
    missing = runner.invoke(app, ["trace", "verify", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "none.json" in missing.output


def test_decode_refuses_a_long_thin_image_with_its_sizes_not_a_traceback(tmp_path):
    from PIL import Image

    Image.new("RGB", (20000, 4), "white").save(tmp_path / "thin.png")
    result = runner.invoke(app, ["decode", str(tmp_path / "thin.png"), "What is it?"])
    assert result.exit_code == 2 and "20000x4, an aspect ratio of 5000:1" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ask_refuses_a_pipe_a_device_and_a_100000_character_question_at_once(tmp_path):
    """Issue 18's reproducers, as a user types them: each ends at once with exit 2 and the reason."""
    import os
    import time

    import redgraph
    from redgraph.errors import ImageError, InputError

    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    scene().save(tmp_path / "scene.png")
    started = time.perf_counter()
    piped = runner.invoke(app, ["ask", str(fifo), "What?", "--checkpoint", "memory"])
    assert piped.exit_code == 2 and "not a regular file" in piped.output
    long = runner.invoke(app, ["ask", str(tmp_path / "scene.png"), "why " * 25_000, "--checkpoint", "memory"])
    assert long.exit_code == 2 and "tokens for a question or rationale" in long.output
    with pytest.raises(ImageError, match="not a regular file"):
        redgraph.ask("/dev/zero", "q?", checkpoint="memory")
    with pytest.raises(InputError, match="only control characters"):
        redgraph.ask(tmp_path / "scene.png", "\x00", checkpoint="memory")
    assert time.perf_counter() - started < 30


def test_version_flag():
    from redgraph import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_ask_and_decode_check_their_inputs_before_loading_a_model(tmp_path):
    for command in (["ask", str(tmp_path / "missing.png"), "What?"], ["decode", str(tmp_path / "missing.png"), "What?"]):
        result = runner.invoke(app, [*command, "--model", str(tmp_path / "no-such-model")])
        assert result.exit_code == 2 and "missing.png' does not exist" in result.output  # not the model's error
    scene().save(tmp_path / "scene.png")
    empty = runner.invoke(app, ["decode", str(tmp_path / "scene.png"), " ", "--model", str(tmp_path / "no-such-model")])
    assert empty.exit_code == 2 and "question is empty" in empty.output


def test_with_json_stdout_is_only_json_and_stderr_has_no_progress_bars():
    from redgraph.examples import example_path, load_examples

    example = load_examples()[1]
    done = subprocess.run([sys.executable, "-m", "redgraph.cli", "decode", str(example_path(example)), example["question"],
                           "--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["answer"] is not None
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr


def test_help_keeps_extras_in_brackets_and_shows_flags_as_flags():
    """Issue 38: rich markup ate '[postgres]' and printed '<bool>' beside every flag."""
    asked = runner.invoke(app, ["ask", "--help"], env={"COLUMNS": "200"})
    assert asked.exit_code == 0 and "redgraph[postgres]" in asked.output
    assert "<bool>" not in asked.output
    decoded = runner.invoke(app, ["decode", "--help"], env={"COLUMNS": "200"})
    assert "--sample / --greedy" in decoded.output and "<bool>" not in decoded.output
    assert "redgraph[distill]" in runner.invoke(app, ["distill", "train", "--help"], env={"COLUMNS": "200"}).output


def test_the_demo_hint_names_a_command_that_runs_in_the_users_shell(monkeypatch):
    import sys

    from redgraph.cli.app import command_name

    monkeypatch.setattr(sys, "argv", [".venv/bin/redgraph", "demo"])
    monkeypatch.setenv("PATH", "/nowhere")
    assert command_name() == ".venv/bin/redgraph"  # not on the PATH: the path it was started by
    monkeypatch.setattr(sys, "argv", ["/x/redgraph/cli/__main__.py"])
    assert command_name().endswith("-m redgraph.cli")


def test_commands_that_load_a_model_print_no_loading_bar(tmp_path):
    """Issue 38: every command printed transformers' "Loading weights" bar."""
    image = tmp_path / "scene.png"
    scene().save(image)
    result = runner.invoke(app, ["decode", str(image), "What colour is the circle?", "--max-new-tokens", "1"])
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.output and "it/s" not in result.output
