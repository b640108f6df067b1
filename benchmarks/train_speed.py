"""Training throughput of the embedded model (examples/s), per setting, as ratios within one run.

Each setting trains the shipped architecture from scratch for ``--steps`` steps through
``redgraph.lab.train`` (exactly what ``redgraph embedded train`` runs); its rate is the examples of
the steps after the first ``--skip`` divided by their wall time (so model building, worker start
and warm-up are left out). Settings run in turn, ``--rounds`` times, and each keeps its median.

    python benchmarks/train_speed.py --json
    python benchmarks/train_speed.py --json --device cuda --batch-size 256 --workers 8 --steps 40
    python benchmarks/train_speed.py --json --settings float32_accumulate2,bf16_accumulate2 --steps 3 --skip 1 --rounds 1

Settings (``legacy`` is the shipped model's training: float32, SDPA attention, stream 1, one batch
per step; the others use the device's default attention, eager on CPU, unless named):
    legacy                float32, examples drawn in-process in order
    bf16_sdpa             bf16 autocast, SDPA attention, stream 2, in-process
    bf16                  bf16 autocast, stream 2, in-process (the default command)
    bf16_workers          bf16 autocast, stream 2, ``--workers`` data-loader processes
    bf16_accumulate2      bf16 autocast, the step in 2 micro-batches grouped by length
    bf16_accumulate2_workers   both
    bf16_accumulate2_cell      bf16 autocast, 2 micro-batches, and the cell loss (``--cell-weight 1``)
    float32_accumulate2        float32, 2 micro-batches (what ``--precision auto`` trains with on a CPU
                               without native bf16)
    float32_accumulate2_tools_live     the same, 60% of charts and documents drawn by matplotlib and in real
                                       fonts as needed (``--tool-share 0.6``), a quarter degraded (``--augment``)
    float32_accumulate2_tools_shards   the same, the charts read from ``--chart-shards`` (drawn ahead)

``--settings`` runs only the named ones (and ``legacy``, the reference). The report also gives
``bf16_matmul_speedup``: the measurement ``--precision auto`` decides by (a bf16 matrix product's
speed over a float32 one's, on this machine).

Every setting trains with the auxiliary scene loss (``--aux-weight 10``), as the shipped model did.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from redgraph.lab.architecture import Dimensions  # noqa: E402
from redgraph.lab.precision import bf16_speedup  # noqa: E402
from redgraph.lab.train import train  # noqa: E402
from redgraph.lab.train_config import TrainConfig  # noqa: E402

TINY = Dimensions(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vision_hidden=32, vision_layers=1,
                  vision_heads=2)


TOOLS = {"tool_share": 0.6, "augment": 0.25}


def settings(workers: int, shards: str | None = None) -> dict[str, tuple[dict, int, str | None]]:
    """name -> (TrainConfig fields, data workers, attention implementation)"""
    return {
        "legacy": ({"precision": "float32", "data_stream": 1}, 0, "sdpa"),
        "bf16_sdpa": ({}, 0, "sdpa"),
        "bf16": ({}, 0, None),
        "bf16_workers": ({}, workers, None),
        "bf16_accumulate2": ({"accumulate": 2}, 0, None),
        "bf16_accumulate2_workers": ({"accumulate": 2}, workers, None),
        "bf16_accumulate2_cell": ({"accumulate": 2, "cell_weight": 1.0}, 0, None),
        "float32_accumulate2": ({"precision": "float32", "accumulate": 2}, 0, None),
        # the issue-36 mixture: 60% of charts and documents drawn by matplotlib / in real fonts, a quarter
        # of pictures degraded; charts drawn as needed, or read from --chart-shards (drawn ahead)
        "float32_accumulate2_tools_live": ({"precision": "float32", "accumulate": 2, **TOOLS}, 0, None),
        "float32_accumulate2_tools_shards": ({"precision": "float32", "accumulate": 2, **TOOLS, "chart_shards": shards},
                                             0, None),
    }


def rate(fields: dict, workers: int, attention: str | None, args) -> float:
    stamps: dict[int, float] = {}
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, threads=args.threads, aux_weight=10.0,
                         dimensions=TINY if args.tiny else Dimensions(), **fields)
    train(None, config, device=args.device, workers=workers, attention=attention,
          on_progress=lambda step, _: stamps.__setitem__(step, time.perf_counter()))
    timed_steps = args.steps - args.skip
    return timed_steps * args.batch_size / (stamps[args.steps] - stamps[args.skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny", action="store_true", help="a tiny model: a smoke run for tests")
    parser.add_argument("--chart-shards", default=None, help="charts drawn ahead (`redgraph embedded render`) for "
                        "the float32_accumulate2_tools_shards setting")
    parser.add_argument("--settings", default=None, help="comma-separated settings to run (legacy always runs)")
    args = parser.parse_args()
    chosen = settings(args.workers, args.chart_shards)
    if args.chart_shards is None:
        chosen.pop("float32_accumulate2_tools_shards")
    if args.settings is not None:
        names = ["legacy"] + [n.strip() for n in args.settings.split(",") if n.strip() and n.strip() != "legacy"]
        unknown = [n for n in names if n not in chosen]
        if unknown:
            parser.error(f"--settings: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(chosen)}")
        chosen = {n: chosen[n] for n in names}
    if args.skip < 1 or args.steps <= args.skip:
        parser.error(f"--steps ({args.steps}) must exceed --skip ({args.skip}), which must be at least 1")
    samples: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(args.rounds):
        for name, (fields, workers, attention) in chosen.items():
            samples[name].append(rate(fields, workers, attention, args))
    rates = {name: statistics.median(values) for name, values in samples.items()}
    report = {
        "examples_per_second": {name: round(value, 1) for name, value in rates.items()},
        "speedup_vs_legacy": {name: round(value / rates["legacy"], 3) for name, value in rates.items()},
        "bf16_matmul_speedup": round(bf16_speedup(), 3) if args.device == "cpu" else None,
        "setting": {"steps": args.steps, "skip": args.skip, "batch_size": args.batch_size, "threads": args.threads,
                    "workers": args.workers, "rounds": args.rounds, "device": args.device, "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "model": "tiny" if args.tiny else "embedded (5.2M)"},
    }
    if args.json:
        print(json.dumps(report))
        return
    for name in rates:
        print(f"{name:28} {rates[name]:8.1f} examples/s  {rates[name] / rates['legacy']:6.3f}x")


if __name__ == "__main__":
    main()
