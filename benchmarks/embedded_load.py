"""How long the embedded model takes to load, offline, on this machine.

    python benchmarks/embedded_load.py --json

Prints ``load_seconds`` (``load_embedded()`` in a process that has already imported torch and
transformers), ``cold_start_seconds`` (a fresh Python process: imports + load), ``cold_ask_seconds``
(a fresh ``redgraph ask`` on a bundled example, end to end: imports, load, the graph, a SQLite
checkpoint, the trace) with ``cold_ask_import_seconds`` (the same command's imports alone, from
``python -X importtime``), and the size of the shipped files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def top_level_import_seconds(report: str) -> float:
    """The sum of the cumulative times of top-level imports in ``python -X importtime`` output
    (nested ones are inside them): all the time a process spent importing."""
    import re

    total = 0
    for line in report.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)\S", line)
        if found and len(found.group(2)) == 2:
            total += int(found.group(1))
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import transformers  # noqa: F401  (imports are timed separately, in the cold start)

    from redgraph.models.embedded import EMBEDDED_DIR, load_embedded

    load_embedded()  # warm the file cache
    warm = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        load_embedded()
        warm.append(time.perf_counter() - started)
    cold = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from redgraph.models.embedded import load_embedded; load_embedded()"],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        cold.append(time.perf_counter() - started)
    import tempfile
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "redgraph" / "examples" / "bars.png"
    ask = [sys.executable, "-m", "redgraph.cli", "ask", str(example), "Which bar is the tallest?", "--json"]
    asks, imports = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as home:  # no checkpoint file yet: as on a fresh machine
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "REDGRAPH_HOME": home}
            started = time.perf_counter()
            subprocess.run(ask, check=True, env=env, capture_output=True)
            asks.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "REDGRAPH_HOME": home}
            timed = subprocess.run([sys.executable, "-X", "importtime", *ask[1:]], check=True, env=env,
                                   capture_output=True, text=True)
            imports.append(top_level_import_seconds(timed.stderr))
    report = {
        "load_seconds": round(statistics.median(warm), 3),
        "cold_start_seconds": round(statistics.median(cold), 3),
        "cold_ask_seconds": round(statistics.median(asks), 3),
        "cold_ask_import_seconds": round(statistics.median(imports), 3),
        "shipped_mb": round(sum(f.stat().st_size for f in EMBEDDED_DIR.iterdir()) / 1e6, 2),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
