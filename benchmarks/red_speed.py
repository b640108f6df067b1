"""RED speed against plain greedy decoding and CoT, as ratios measured in one run.

Models: tiny random Qwen2-VL and LLaVA (CLIP) of 11-12M parameters with 256 image tokens, a
~60-token rationale, 32 new tokens (end-of-sequence disabled so every run makes all 32).
``--size 2b`` / ``--size 7b`` build a random Qwen2-VL at the real widths, depths and vocabulary
of Qwen2-VL-2B / -7B instead (made on the device; use a GPU). Every timing covers the same work
for both sides of its ratio, preprocessing included, is synchronised on CUDA, and is the median of
interleaved repeats.

    python benchmarks/red_speed.py --json
    python benchmarks/red_speed.py --json --device cuda --dtype bfloat16 --size 2b
    python benchmarks/red_speed.py --json --device cuda --dtype bfloat16 --size 7b

Keys (each a ratio, per family and the mean over families):
    decode_step_ratio     RED decode step / plain greedy (generate) decode step
    prefill_ratio_vs_cot  RED prefill (image and rationale rows alone, then merged) / CoT prefill
    e2e_ratio_vs_cot      RED answer time / CoT answer time (image + rationale + question, one sequence)
    batch8_speedup        answer tokens/s with 8 questions batched / with 1 question
    processor_vs_fast     RED through model.generate + LogitsProcessor / the fast decoder
    packed_prefill_gain   RED prefill with every row prefilled alone / with the rows packed (the
                          device's default bin size), and batch8_packed_gain the same for 8 questions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from redgraph.decoding import RationaleEnhancedLogitsProcessor, REDConfig, REDDecoder, REDRequest  # noqa: E402
from redgraph.models import build_tiny_lvlm  # noqa: E402

QUESTION = "Which shape is left of the blue square, and what colour is it?"
RATIONALE = (  # about 60 tokens with the bench tokenizer
    "There is a blue square on the right and a red circle left of it. "
    "Above the circle is a yellow triangle. The question asks which shape is left of the blue square: "
    "the red circle is there."
)


def scene(seed: int, side: int) -> Image.Image:
    picture = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(picture)
    shift = seed * 7 % 40
    draw.ellipse((20 + shift, 150, 120 + shift, 250), fill="red")
    draw.rectangle((220, 120, 380 - shift, 300), fill="blue")
    draw.polygon([(60, 40), (110, 120), (10, 120)], fill="yellow")
    return picture


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def median_times(jobs: dict, repeats: int) -> dict[str, float]:
    """Run every job once per round, rounds interleaved, and take medians: noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm-up round, not counted
        job()
    for _ in range(repeats):
        for name, job in jobs.items():
            samples[name].append(timed(job))
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_family(family: str, size: str, new_tokens: int, repeats: int, image_side: int, device: str, dtype) -> dict:
    lvlm = build_tiny_lvlm(family, size=size, device=device, dtype=dtype)
    model = lvlm.model
    image = scene(0, image_side)
    no_eos = dict(eos_token_ids=())
    red = lambda n, **kw: REDDecoder(lvlm, REDConfig(rationale_weight=0.5, max_new_tokens=n, **no_eos, **kw))

    def generate(inputs, n, **kwargs):
        return model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kwargs)

    def plain(n):
        generate(lvlm.encode_image_branch(image, QUESTION), n)

    def cot(n):
        generate(lvlm.encode_cot(image, RATIONALE, QUESTION), n)

    def red_fast(n):
        result = red(n).decode(image, QUESTION, [RATIONALE])
        assert len(result.token_ids) == n

    def red_processor(n):
        processor = RationaleEnhancedLogitsProcessor.from_rationales(lvlm, QUESTION, [RATIONALE], rationale_weight=0.5)
        generate(lvlm.encode_image_branch(image, QUESTION), n, logits_processor=[processor])

    batch = [REDRequest(scene(i, image_side), QUESTION, (RATIONALE,)) for i in range(8)]

    def red_batch8(**kw):
        results = red(new_tokens, **kw).decode_batch(batch)
        assert all(len(r.token_ids) == new_tokens for r in results)

    def red_unpacked_1():
        red(1, pack_tokens=0).decode(image, QUESTION, [RATIONALE])

    n = new_tokens
    times = median_times(
        {
            "plain_1": lambda: plain(1), f"plain_{n}": lambda: plain(n),
            "cot_1": lambda: cot(1), f"cot_{n}": lambda: cot(n),
            "red_1": lambda: red_fast(1), f"red_{n}": lambda: red_fast(n),
            "processor": lambda: red_processor(n),
            "batch8": red_batch8,
            "red_1_unpacked": red_unpacked_1, "batch8_unpacked": lambda: red_batch8(pack_tokens=0),
        },
        repeats,
    )
    plain_step = (times[f"plain_{n}"] - times["plain_1"]) / (n - 1)
    red_step = (times[f"red_{n}"] - times["red_1"]) / (n - 1)
    prompt = lvlm.encode_image_branch(image, QUESTION)["input_ids"].shape[1]
    return {
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "image_prompt_tokens": prompt,
        "rationale_tokens": len(lvlm.tokenizer(RATIONALE)["input_ids"]),
        "seconds": {k: round(v, 4) for k, v in times.items()},
        "decode_step_ratio": red_step / plain_step,
        "prefill_ratio_vs_cot": times["red_1"] / times["cot_1"],
        "e2e_ratio_vs_cot": times[f"red_{n}"] / times[f"cot_{n}"],
        "batch8_speedup": (8 * n / times["batch8"]) / (n / times[f"red_{n}"]),
        "processor_vs_fast": times["processor"] / times[f"red_{n}"],
        "packed_prefill_gain": times["red_1_unpacked"] / times["red_1"],
        "batch8_packed_gain": times["batch8_unpacked"] / times["batch8"],
    }


RATIOS = ("decode_step_ratio", "prefill_ratio_vs_cot", "e2e_ratio_vs_cot", "batch8_speedup", "processor_vs_fast",
          "packed_prefill_gain", "batch8_packed_gain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--families", default=None, help="default: qwen2_vl,llava_clip (qwen2_vl at 2b / 7b)")
    parser.add_argument("--size", default="bench", choices=["tiny", "bench", "2b", "7b"],
                        help="tiny: a smoke run for tests; 2b / 7b: random weights at Qwen2-VL-2B / -7B sizes (GPU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.new_tokens < 2:
        parser.error(f"--new-tokens must be at least 2 (decode steps are measured as a difference), got {args.new_tokens}")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    if torch.device(args.device).type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    real = args.size in ("2b", "7b")
    family_names = (args.families or ("qwen2_vl" if real else "qwen2_vl,llava_clip")).split(",")
    if real and family_names != ["qwen2_vl"]:
        parser.error(f"--size {args.size} is built for qwen2_vl only, got --families {args.families}")
    side = 112 if args.size == "tiny" else 448
    dtype = getattr(torch, args.dtype)
    families = {f: bench_family(f, args.size, args.new_tokens, args.repeats, side, args.device, dtype) for f in family_names}
    summary = {key: round(statistics.mean(r[key] for r in families.values()), 3) for key in RATIOS}
    report = {
        **summary,
        "families": {f: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for f, r in families.items()},
        "setting": {"new_tokens": args.new_tokens, "repeats": args.repeats, "size": args.size,
                    "device": args.device, "dtype": args.dtype,
                    "gpu": torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else None,
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()},
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'ratio':24}" + "".join(f"{f:>14}" for f in families) + f"{'mean':>10}")
    for key in RATIOS:
        print(f"{key:24}" + "".join(f"{families[f][key]:>14.3f}" for f in families) + f"{summary[key]:>10.3f}")


if __name__ == "__main__":
    main()
