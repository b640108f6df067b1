"""How long the embedded model takes to load, offline, on this machine.

    python benchmarks/embedded_load.py --json

Prints ``load_seconds`` (``load_embedded()`` in a process that has already imported torch and
transformers), ``cold_start_seconds`` (a fresh Python process: imports + load), and the size of
the shipped files.
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
    report = {
        "load_seconds": round(statistics.median(warm), 3),
        "cold_start_seconds": round(statistics.median(cold), 3),
        "shipped_mb": round(sum(f.stat().st_size for f in EMBEDDED_DIR.iterdir()) / 1e6, 2),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
