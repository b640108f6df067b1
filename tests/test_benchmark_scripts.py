"""The benchmark models and scripts keep working (a smoke run; timings are not asserted)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from redgraph.errors import ConfigError
from redgraph.models import FAMILIES, build_tiny_lvlm

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("family", FAMILIES)
def test_bench_size_models_have_256_image_tokens_and_generate(family):
    lvlm = build_tiny_lvlm(family, size="bench")
    params = sum(p.numel() for p in lvlm.model.parameters())
    assert 10e6 <= params <= 20e6
    inputs = lvlm.encode_image_branch(Image.new("RGB", (448, 448), "white"), "what is it?")
    image_token = lvlm.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token).sum()) == 256
    out = lvlm.model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_red_speed_smoke_run_prints_every_ratio():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "red_speed.py"), "--json", "--size", "tiny",
         "--new-tokens", "3", "--repeats", "1", "--families", "llava_clip", "--dtype", "bfloat16"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert report["setting"]["dtype"] == "bfloat16" and report["setting"]["device"] == "cpu"
    for key in ("decode_step_ratio", "prefill_ratio_vs_cot", "e2e_ratio_vs_cot", "batch8_speedup", "processor_vs_fast",
                "packed_prefill_gain", "batch8_packed_gain"):
        # Only that each ratio is there: decode steps are a difference of two timings, which with
        # 3 tokens and one repeat on a loaded machine can even come out negative.
        assert isinstance(report[key], float) and math.isfinite(report[key])


def test_packing_smoke_run_compares_every_size_with_rows_alone():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "packing.py"), "--json", "--models", "tiny", "--sizes", "64,4096",
         "--repeats", "1"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert set(report["models"]) == {"tiny qwen2_vl", "tiny llava_clip"}
    for figures in report["models"].values():
        for key in ("1q_ratio_64", "1q_ratio_4096", "8q_ratio_64", "8q_ratio_4096"):
            assert figures[key] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_red_speed_refuses_a_device_this_torch_cannot_see():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "red_speed.py"), "--json", "--device", "cuda", "--size", "2b"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert done.returncode == 2 and "--device cuda" in done.stderr and "use --device cpu" in done.stderr


def test_the_real_sizes_have_qwen2_vl_7b_widths():
    lvlm = build_tiny_lvlm("qwen2_vl", size="7b", device="meta")  # shapes only, no memory
    text = lvlm.model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size, text.vocab_size) == (3584, 28, 18944, 151_936)
    assert 8.2e9 < sum(p.numel() for p in lvlm.model.parameters()) < 8.4e9
    with pytest.raises(ConfigError, match="qwen2_vl only"):
        build_tiny_lvlm("llava_clip", size="2b")


def test_server_load_smoke_run_prints_both_figures():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "server_load.py"), "--json", "--tiny", "--per-client", "1",
         "--max-tokens", "3", "--rss-requests", "8"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert report["concurrency8_speedup"] > 0 and "rss_growth_mb_500" in report
    assert report["completion_tokens"] == [8 * 3, 8 * 3]


def test_paper_tables_smoke_run_prints_every_key(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "paper_tables.py"), "--json", "--limit", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    for key in ("direct_acc", "cot_gold_acc", "red_gold_acc", "red_self_acc", "cot_flip_rate", "red_flip_rate",
                "lying_reasoner_retention", "plain_red_lying_retention", "critic_precision", "critic_recall"):
        assert key in report
    assert report["items"] == 2 and report["cot_gold_acc"] is not None


def test_critic_probes_smoke_run_reports_both_scorings_per_kind(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "critic_probes.py"), "--json", "--limit", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert report["items"] == 3 and set(report["scorings"]) == {"probes", "p_yes"}
    probes, p_yes = report["scorings"]["probes"], report["scorings"]["p_yes"]
    assert set(probes["by_scene_kind"]) == {"shapes", "bars", "document", "overall"}
    assert probes["by_scene_kind"]["overall"]["claims"] == p_yes["by_scene_kind"]["overall"]["claims"] > 0
    assert set(probes["methods"]) == {"probes"} and set(p_yes["methods"]) == {"p_yes"}
    assert "retention" in probes["lying_reasoner_retention"]["overall"]


def test_fuzz_smoke_run_counts_every_surface_and_finds_no_failure():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--json", "--cases", "5", "--seconds", "1",
         "--clients", "2"], capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    counts = {surface: sum(c.values()) for surface, c in report["surfaces"].items()}
    scaled = {s for s in counts if s.startswith(("CLI: decode and ask", "HTTP server: slow"))}  # cases // 10, // 50
    assert len(counts) == 18 and len(scaled) == 2 and all(counts[s] == 1 for s in scaled)
    assert all(n == 5 for s, n in counts.items() if s not in scaled)
    assert report["failures"] == 0, report["first_failures"]
    assert report["load"]["outcomes"]


def test_vision_probe_smoke_run_prints_every_figure():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vision_probe.py"), "--json", "--scenes", "60"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["scenes"] == 60
    for key in ("token_norm", "spread_across_images", "colour_probe_acc", "untrained_colour_probe_acc", "majority_acc",
                "title_probe_acc", "tens_probe_acc", "units_probe_acc", "untrained_title_probe_acc",
                "column_probe_acc", "row_probe_acc", "centre_probe_acc", "centre_size_probe_acc",
                "untrained_column_probe_acc", "centre_size_majority_acc"):
        assert math.isfinite(report[key]) and (key in ("token_norm", "spread_across_images")
                                               or 0 <= report[key] <= 1), (key, report[key])
    # the shipped model's interleaved M-RoPE gives rows frequency 1 of 32 and columns frequency 2 (base
    # 10,000), so across the 8 tokens of a row or a column a query-key pair turns by more than pi (capped)
    assert 7 * 10000 ** (-2 / 32) > math.pi
    assert report["lm_rope_radians_rows"] == report["lm_rope_radians_columns"] == round(math.pi, 4)


def test_digit_probe_smoke_run_reads_the_own_renderers_digits_from_single_tokens():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "digit_probe.py"), "--json", "--documents", "30"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["documents"] == 30
    for source in ("own", "fonts", "heldout"):
        assert report[f"{source}_tokens"] > 0 and 0 <= report[f"{source}_digit_probe_acc"] <= 1
    # the shipped tower knows its renderer's digit glyphs token by token (0.99 on 150 documents; chance 0.1)
    assert report["own_digit_probe_acc"] >= 0.6


def test_reading_curve_smoke_run_probes_at_the_side_it_trains_at():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reading_curve.py"), "--json", "--image-side", "192",
                           "--steps", "2", "--probe-every", "1", "--documents", "12", "--batch-size", "4"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["image_side"] == 192 and report["tokens_per_document"] > 64  # more tokens than at 128
    assert [point["step"] for point in report["curve"]] == [0, 1, 2]
    for point in report["curve"]:
        for source in ("fonts", "heldout"):
            assert point[f"{source}_tokens"] > 0
            assert 0 <= point[f"{source}_head"] <= 1 and 0 <= point[f"{source}_probe"] <= 1
    assert all(point["loss"] > 0 for point in report["curve"][1:])


def test_vision_probe_reads_the_rope_angles_of_either_layout():
    import importlib.util

    from redgraph.lab.architecture import Dimensions, build_untrained

    spec = importlib.util.spec_from_file_location("vision_probe", ROOT / "benchmarks" / "vision_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    small = Dimensions(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vision_hidden=32, vision_layers=1,
                       vision_heads=2)  # head_dim 16: 8 frequencies 10000 ** (-i / 8)
    blocks = probe.rope_figures(build_untrained(small)[0].config, 8)
    interleaved = probe.rope_figures(build_untrained(small, rope_layout="interleaved")[0].config, 8)
    assert blocks == {"lm_rope_radians_rows": round(7 * 10000 ** (-4 / 8), 4),  # rows 4-5, columns 6-7
                      "lm_rope_radians_columns": round(7 * 10000 ** (-6 / 8), 4)}
    assert interleaved == {"lm_rope_radians_rows": round(7 * 10000 ** (-1 / 8), 4),  # rows 1, 4-5; columns 2, 6-7
                           "lm_rope_radians_columns": round(7 * 10000 ** (-2 / 8), 4)}


def test_answer_spread_counts_each_category_s_answers_next_to_the_true_ones():
    script = str(ROOT / "benchmarks" / "answer_spread.py")
    done = subprocess.run([sys.executable, script, "--json", "--limit", "9", "--kind", "shapes"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["items"] == 3  # kinds rotate, so 9 items hold 3 of each kind
    rows = report["per_category"].values()
    assert sum(r["items"] for r in rows) == 3
    for row in rows:
        assert sum(row["gold"].values()) == sum(row["answers"].values()) == row["items"]
        assert row["distinct_answers"] == len(row["answers"]) and row["accuracy"] == round(row["right"] / row["items"], 3)
        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1]
    right = sum(r["right"] for r in rows)
    assert report["split"] == "test" and report["overall"]["items"] == 3
    assert report["overall"]["accuracy"] == round(right / 3, 4) and report["overall"]["ci95"][1] - report["overall"]["ci95"][0] > 0.3
    validation = json.loads(subprocess.run([sys.executable, script, "--json", "--limit", "3", "--split", "validation"],
                                           capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    assert validation["split"] == "validation" and validation["items"] == 3
    for args, message in ((["--kind", "charts"], "--kind 'charts' is not a scene kind; choose one of shapes, bars, document"),
                          (["--split", "train"], "--split 'train' is not a held-out split; choose test or validation")):
        bad = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT)
        assert bad.returncode == 2 and message in bad.stderr


def test_claim_check_finetune_smoke_run_reports_and_shares_image_tokens_exactly():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "claim_check_finetune.py"), "--json", "--steps", "2",
                           "--images", "2", "--claims-per-image", "3", "--eval-every", "1", "--eval-items", "2"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert [r["step"] for r in report["reports"]] == [0, 1, 2] and report["reports"][2]["claims_seen"] == 12
    assert all(0 <= r["claim_verification_acc"] <= 1 for r in report["reports"])
    assert math.isfinite(report["reports"][1]["train_loss"]) and report["chance_loss"] == 0.3466

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from claim_check_finetune import shared_image_features
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import random

    from redgraph.data import generate_items
    from redgraph.lab.batches import batch_tensors
    from redgraph.lab.tasks import Example
    from redgraph.lab.losses import example_loss
    from redgraph.models import prompts
    from redgraph.models.embedded import load_embedded

    lvlm = load_embedded()
    examples = []
    for item in generate_items("validation", 2, seed=0):
        for text, label in random.Random(0).sample(item.claims, 3):
            examples.append(Example("verify", prompts.claim_check_text(lvlm.processor, text), item.image(),
                                    "yes" if label else "no"))
    batch = batch_tensors(examples, lvlm.processor)
    plain = example_loss(lvlm.model, batch)
    with shared_image_features(lvlm.model, 3):
        shared = example_loss(lvlm.model, batch)
    assert torch.allclose(plain, shared, atol=1e-6)  # a wrong grouping moves it by about 2e-4
    assert "get_image_features" not in vars(lvlm.model.model)  # the class's method is back


def test_graph_overhead_smoke_run_prints_the_ratios_and_where_the_time_went():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "graph_overhead.py"), "--json", "--repeats", "1"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert 0 < report["graph_overhead_share"] < 1 and report["critic_8_vs_1"] > 0
    parts = report["ms_per_ask"]
    assert set(parts) == {"models", "checkpoint_writes", "image_checks", "trace", "rest"}
    assert all(parts[k] > 0 for k in ("models", "checkpoint_writes", "trace"))
    assert parts["image_checks"] >= 0  # about 0.01 ms since ask loads the image once for the nodes
    assert sum(parts.values()) == pytest.approx(1000 * report["ask_seconds_median"], rel=0.5)


def test_graph_phases_smoke_run_times_every_variant_phase_by_phase():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "graph_phases.py"), "--json", "--repeats", "1"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["runs_per_variant"] == 3
    assert set(report["variants"]) == {"shipped", "default_executor", "inline_writes", "no_step_writes"}
    for figures in report["variants"].values():
        assert 0 < figures["share_median"] < 1 and 0 < figures["outside_ms_median"] < figures["ask_ms_median"]
        phases = figures["phases_ms"]
        assert {f"inside {node}" for node in ("receive", "reason", "critique", "decide", "answer")} <= set(phases)
        assert "ask -> stream" in phases and "stream end -> done" in phases
        assert all(ms >= 0 for ms in phases.values())
        # the phases outside the models add up to the median's neighbourhood, not to the models' time
        assert sum(phases.values()) < 0.5 * figures["ask_ms_median"]


def test_concurrent_graph_smoke_run_prints_the_ratios_and_the_batches():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "concurrent_graph.py"), "--json", "--tiny", "--runs", "4",
                           "--repeats", "1"], capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["model"] == "tiny qwen2_vl" and report["runs"] == 4
    assert report["runs_per_s_8_vs_1"] > 0 and report["single_run_vs_uncombined"] > 0
    assert sum(size * count for size, count in ((int(k), v) for k, v in report["batch_sizes"].items())) >= 8
    assert report["forwards"] > 0 and report["rows_per_forward"] >= 1
    assert report["lone_generate_vs_generate"] > 0 and report["lone_red_vs_decode_batch"] > 0
    assert report["same_results"] is True


def test_ocr_expert_smoke_run_reports_every_source_engine_and_critic():
    from redgraph.models.ocr import ocr_available

    if ocr_available():
        if os.environ.get("REDGRAPH_REQUIRE_OCR"):
            pytest.fail(f"REDGRAPH_REQUIRE_OCR is set but the OCR engine is missing: {ocr_available()}")
        pytest.skip(ocr_available())
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ocr_expert.py"), "--json", "--items", "2"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    for source in ("own", "fonts", "fonts_scan"):
        assert 0 <= report["engines"][f"tesseract psm 6 (default) | {source}"]["read_exactly"] <= 1
        for critic in ("lvlm (default)", "lvlm+ocr, agree", "lvlm+ocr, veto"):
            figures = report["critic"][f"{critic} | {source}"]
            assert figures["text"]["claims"] > 0 and figures["ms_per_claim"] > 0


def test_train_speed_smoke_run_compares_every_setting_with_the_legacy_one():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--json", "--tiny", "--steps", "3", "--skip", "1",
         "--batch-size", "4", "--rounds", "1"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert report["speedup_vs_legacy"]["legacy"] == 1.0
    assert set(report["examples_per_second"]) == {"legacy", "bf16_sdpa", "bf16", "bf16_workers", "bf16_accumulate2",
                                                  "bf16_accumulate2_workers", "bf16_accumulate2_cell",
                                                  "float32_accumulate2", "float32_accumulate2_tools_live"}
    assert all(rate > 0 for rate in report["examples_per_second"].values()) and report["bf16_matmul_speedup"] > 0
    script = [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--json", "--tiny", "--steps", "2", "--skip",
              "1", "--batch-size", "2", "--rounds", "1"]
    some = json.loads(subprocess.run(script + ["--settings", "float32_accumulate2"], capture_output=True, text=True,
                                     check=True, cwd=ROOT).stdout)
    assert set(some["examples_per_second"]) == {"legacy", "float32_accumulate2"}
    bad = subprocess.run(script + ["--settings", "fp8"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--settings: unknown 'fp8'; choose from legacy" in bad.stderr


def test_distill_smoke_run_writes_every_asked_row(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "distill.py"), "--json", "--items", "3", "--per-style", "2",
         "--eval-limit", "3", "--steps", "2", "--only", "sdrt,control", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    report = json.loads(done.stdout)
    assert set(report["rows"]) == {"base", "sdrt", "control"} and report["traces"]["traces"] == 6
    for name in ("sdrt", "control"):
        row = report["rows"][name]
        assert 0 <= row["image_answer_acc"] <= 1 and row["adapter_bytes"] > 0 and row["taught"]


def test_tower_heads_smoke_run_trains_the_tower_and_probes_it():
    script = str(ROOT / "benchmarks" / "tower_heads.py")
    done = subprocess.run([sys.executable, script, "--json", "--steps", "2", "--batch-size", "3", "--scenes", "30",
                           "--aux-weight", "0", "--cell-weight", "1"], capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["cell_weight"] == 1.0 and len(report["loss_every_tenth"]) == 2
    for key in ("colour_probe_acc", "title_probe_acc", "tens_probe_acc", "units_probe_acc"):
        assert 0 <= report[key] <= 1
    refused = subprocess.run([sys.executable, script, "--aux-weight", "0"], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "nothing to train" in refused.stderr


def test_relation_gaps_splits_each_relation_by_how_many_token_columns_or_rows_apart():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from relation_gaps import grid_gap, show_at
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from redgraph.data.scenes import Shape, ShapeScene
    from redgraph.data.synthetic import SyntheticItem

    red = Shape("red", "circle", x=15, y=100, size="big")  # column 0, row 6
    blue = Shape("blue", "square", x=16, y=20, size="small")  # column 1, row 1
    green = Shape("green", "triangle", x=127, y=60, size="small")  # column 7
    scene = ShapeScene(objects=(green, red, blue))
    item = SyntheticItem(question_id="t", split="test", kind="shapes", category="relation_lr",
                         question="Is the blue square left or right of the red circle?", answer="right",
                         gold_rationale="", misleading_rationale="", misleading_answer="left", irrelevant_rationale="",
                         claims=(), scene=scene)
    assert grid_gap(item, "x", 16) == 1  # 1 pixel apart across a column edge: one column
    assert grid_gap(item, "y", 16) == 5
    far = dataclasses.replace(item, question="Is the green triangle left or right of the red circle?")
    assert grid_gap(far, "x", 16) == 5  # 7 columns apart, counted with the widest

    script = str(ROOT / "benchmarks" / "relation_gaps.py")
    done = subprocess.run([sys.executable, script, "--json", "--limit", "3"], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    report = json.loads(done.stdout)["per_category"]
    assert set(report) == {"relation_lr", "relation_ab"}
    for row in report.values():
        assert row["items"] == 3 and 0 <= row["accuracy"] <= 1
        for key in ("grid_gap", "objects"):
            assert sum(v["items"] for v in row[key].values()) == 3
            assert sum(v["items"] * v["accuracy"] for v in row[key].values()) == pytest.approx(3 * row["accuracy"], abs=0.01)
    for args, message in ((["--split", "train"], "--split 'train' is not a held-out split; choose test or validation"),
                          (["--side", "100"], "--side must be a multiple of 16 (one merged image token), got 100")):
        bad = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT)
        assert bad.returncode == 2 and message in bad.stderr

    from redgraph.models.embedded import load_embedded

    lvlm = load_embedded()
    image_token = lvlm.model.config.image_token_id
    for side, tokens in ((128, 64), (256, 256)):  # the same 256-pixel picture: shrunk to 8 x 8 tokens, then 16 x 16
        show_at(lvlm, side)
        inputs = lvlm.encode_image_branch(item.image().resize((256, 256)), item.question)
        assert int((inputs["input_ids"] == image_token).sum()) == tokens


def _benchmark(name: str):
    """A benchmark script as a module, so a smoke run needs no new process (and no second torch import)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_honest_defaults_smoke_run_reports_every_kind_and_tool(capsys):
    report = _benchmark("honest_defaults").main(["--items", "1", "--tool-items", "1", "--json"])
    assert json.loads(capsys.readouterr().out) == report
    assert set(report["lying_reasoner"]) == {"bars", "document", "shapes"}
    for row in report["lying_reasoner"].values():
        assert row["items"] == 1 and 0 <= row["lying"] <= 1 and sum(row["outcomes_lying"].values()) == 1
    assert set(report["other_tools"]) == {"matplotlib", "fonts"}
    for row in report["other_tools"].values():
        assert row["items"] == 1 and row["wrong_accepted_unflagged"] + row["right_flagged"] <= 1


def test_calibration_smoke_run_measures_the_shipped_calibration_before_and_after(capsys):
    report = _benchmark("calibration").main(["--test-items", "3", "--tool-items", "1", "--json"])
    assert report["calibration"]["bank_tokens"] == 8192
    for side in ("before", "after"):
        kinds = report["test"][side]
        assert set(kinds) == {"shapes", "bars", "document", "all"} and 0 <= kinds["all"]["ece"] <= 1
        assert kinds["all"]["claims"] == sum(kinds[k]["claims"] for k in ("shapes", "bars", "document"))
    assert set(report["novel_share"]) == {"test", "matplotlib", "fonts", "matplotlib_heldout", "fonts_heldout"}


def test_unseen_words_smoke_run_reads_every_vocabulary_renderer_and_field():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "unseen_words.py"), "--items", "2", "--json"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert set(report["read_exactly"]) == {f"{v}/{r}/{w}" for v in ("seen", "unseen") for r in ("own", "fonts")
                                           for w in ("title", "value")}
    assert all(0 <= share <= 1 for share in report["read_exactly"].values())
    from redgraph.data.scenes import TITLES

    assert all(truth not in TITLES for _, truth in report["examples"]["unseen/own/title"])
    assert all(truth in TITLES for _, truth in report["examples"]["seen/fonts/title"])
    assert not any(truth.isdigit() and 10 <= int(truth) <= 99 for _, truth in report["examples"]["unseen/own/value"])


def test_checkable_claims_smoke_run_measures_every_style(capsys):
    from redgraph.agents.prompt_library import STYLES

    report = _benchmark("checkable_claims").main(["--items", "2", "--json"])
    assert set(report["styles"]) == set(STYLES)
    for row in report["styles"].values():
        assert 0 <= row["checkable_rationales"] <= 1 and len(row["examples"]) == 2


def test_adapt_pictures_smoke_run_reports_the_held_out_change_and_the_check_set():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "adapt_pictures.py"), "--pictures", "6", "--check", "2",
                           "--per-style", "2", "--steps", "1", "--max-new-tokens", "16", "--json"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(done.stdout)
    assert report["pictures"]["heldout_questions"] > 0 and report["pictures"]["adapt_traces"] > 0
    assert set(report["heldout"]["change"]) >= {"self_agreement", "support", "unsure_share"}
    check = report["check"]
    assert check["items"] >= 2 * 5  # 2 charts: a value per bar (3-4), the tallest and the shortest
    assert set(check["per_kind"]) <= {"bar_value", "tallest", "shortest"}
    assert sum(kind["items"] for kind in check["per_kind"].values()) == check["items"]


def test_adapt_family_smoke_run_measures_each_variant_against_the_base_and_reads_no_answer(tmp_path, capsys):
    from redgraph.distill.traces import read_traces

    report = _benchmark("adapt_family").main([
        "--pictures", "3", "--check", "2", "--steps", "1", "--batch-size", "2", "--per-style", "2",
        "--max-new-tokens", "8", "--only", "sdrt,uniform_styles,pseudo_labels,gold", "--out", str(tmp_path), "--json"])
    assert json.loads(capsys.readouterr().out) == report
    assert set(report["models"]) == {"base", "sdrt", "pseudo_labels", "gold"}
    assert report["variants"]["uniform_styles"]["same_as"] == "sdrt"  # one style: nothing to make uniform
    for name, parts in report["models"].items():
        assert set(parts) == {"degraded", "plain", "gold_rationale"}
        for part in parts.values():
            assert 0 <= part["accuracy"] <= 1 and part["ci95"][0] <= part["accuracy"] <= part["ci95"][1]
            assert ("change" in part) == (name != "base")
    records, _ = read_traces([tmp_path / "run" / "traces"])
    assert records and all(record["gold_answer"] is None for record in records)  # the loop never saw an answer
    questions = report["pictures"]["adapt_questions"]
    assert report["variants"]["gold"]["weighting"] == {"items": questions, "targets": "gold"}
    assert report["variants"]["pseudo_labels"]["weighting"] == {"items": questions, "targets": "gold"}
    assert len(json.loads((tmp_path / "answers.json").read_text())) == 3  # p00000 held out, the others adapted on
    assert {"gap_recovered", "gap_recovered_ci95", "sdrt_minus_pseudo_labels", "sdrt_minus_pseudo_labels_ci95"} <= set(report)
    recovered = _benchmark("adapt_family").recovered
    share, (low, high) = recovered([0, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 0, 0, 1])
    assert share == 0.5 and 0 <= low <= 0.5 <= high <= 1
    assert recovered([1, 0], [1, 1], [1, 0]) == (None, None)  # no gap to recover
