"""How the packing size of RED's prefill (``REDConfig.pack_tokens``) changes answer time, per model.

For each model, one question (image + one rationale) and eight questions in one ``decode_batch``
are answered with every branch prefilled in a forward of its own (``pack_tokens=0``) and with
rows of up to N tokens packed into one forward, for several N. Times are medians of interleaved
repeats; each figure is the time with packing / the time without, within one run (below 1: faster).

    python benchmarks/packing.py --json
    python benchmarks/packing.py --json --device cuda --dtype bfloat16 --models 2b

Models: ``embedded`` (the shipped model: ~110-token image prompts, 2-token answers), ``bench``
(tiny random Qwen2-VL and LLaVA, 292-token image prompts, 32 new tokens), ``2b`` / ``7b``
(random Qwen2-VL at those sizes; GPU), ``tiny`` (a smoke run for tests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from red_speed import QUESTION, RATIONALE, median_times, scene  # noqa: E402

from redgraph.decoding import REDConfig, REDDecoder, REDRequest  # noqa: E402
from redgraph.decoding.packing import auto_pack_tokens  # noqa: E402


def workloads(name: str, device: str, dtype):
    """(label, lvlm, requests, new tokens, end-of-sequence ids) for one --models entry."""
    if name == "embedded":
        from redgraph.data import generate_items
        from redgraph.models.loading import load_embedded

        lvlm = load_embedded(device=device)
        items = list(generate_items("test", 8))
        requests = [REDRequest(item.image(), item.question, (item.gold_rationale,)) for item in items]
        return [("embedded", lvlm, requests, 32, None)]
    from redgraph.models import build_tiny_lvlm

    if name not in ("tiny", "bench", "2b", "7b"):
        raise SystemExit(f"unknown model {name!r}; choose from embedded, bench, 2b, 7b, tiny")
    families = ["qwen2_vl"] if name in ("2b", "7b") else ["qwen2_vl", "llava_clip"]
    out = []
    for family in families:
        lvlm = build_tiny_lvlm(family, size=name, device=device, dtype=dtype)
        requests = [REDRequest(scene(i, 448), QUESTION, (RATIONALE,)) for i in range(8)]
        out.append((f"{name} {family}", lvlm, requests, 32, ()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--models", default="embedded,bench", help="comma-separated: embedded, bench, 2b, 7b, tiny")
    parser.add_argument("--sizes", default="128,256,512,4096", help="pack_tokens values to compare with 0")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    sizes = [int(s) for s in args.sizes.split(",")]
    report = {"device": args.device, "dtype": args.dtype, "default_pack_tokens": auto_pack_tokens(args.device),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    for name in args.models.split(","):
        for label, lvlm, requests, new_tokens, eos in workloads(name, args.device, getattr(torch, args.dtype)):
            def job(pack: int, count: int):
                config = REDConfig(rationale_weight=1.0, max_new_tokens=new_tokens, eos_token_ids=eos, pack_tokens=pack)
                return lambda: REDDecoder(lvlm, config).decode_batch(requests[:count])

            jobs = {f"{count}q_{pack}": job(pack, count) for count in (1, 8) for pack in [0, *sizes]}
            times = median_times(jobs, args.repeats)
            report["models"][label] = {
                "seconds_unpacked": {count: round(times[f"{count}q_0"], 4) for count in (1, 8)},
                **{f"{count}q_ratio_{pack}": round(times[f"{count}q_{pack}"] / times[f"{count}q_0"], 3)
                   for count in (1, 8) for pack in sizes},
            }
    if args.json:
        print(json.dumps(report))
        return
    for label, figures in report["models"].items():
        print(label, figures)


if __name__ == "__main__":
    main()
