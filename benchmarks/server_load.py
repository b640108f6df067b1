"""Throughput of ``redgraph serve`` under concurrent clients, and its memory over many requests.

    python benchmarks/server_load.py --json

- ``concurrency8_speedup``: completion tokens per second with 8 concurrent clients / with 1 client,
  the same requests in both (RED chat completions with a rationale, over real HTTP). Goal >= 3:
  concurrent requests must share batched decoding, not queue one by one.
- ``rss_growth_mb_500``: the server's resident memory after 500 more requests (8 at a time) minus
  before them, in MiB, after a warm-up of the same requests. Goal <= 50.

The server runs in its own process (the embedded model unless ``--model``); clients are threads
here. Both rates come from one run, so the ratio is not skewed by machine noise between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder; default: the embedded model")
    parser.add_argument("--tiny", action="store_true",
                        help="serve a tiny random Qwen2-VL instead: its answers run to max_tokens, so decoding, "
                             "not prefill, dominates")
    parser.add_argument("--per-client", type=int, default=8, help="requests each client sends in the speed test")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rss-requests", type=int, default=500)
    args = parser.parse_args()

    import httpx
    import psutil

    from redgraph.data import generate_items
    from redgraph.models.images import image_data_url

    if args.tiny:
        from redgraph.models import build_tiny_lvlm

        args.model = tempfile.mkdtemp(prefix="redgraph-tiny-")
        build_tiny_lvlm("qwen2_vl").save(args.model)
    port = free_port()
    command = [sys.executable, "-m", "redgraph.cli", "serve", "--port", str(port), "--max-pending", "64"]
    if args.model:
        command += ["--model", args.model]
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        model_name = wait_for(url, server, log)
        items = list(generate_items("test", 16))
        bodies = [{
            "model": model_name, "max_tokens": args.max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": item.question},
                                                      {"type": "image_url", "image_url": {"url": image_data_url(item.image())}}]}],
            "rationale": item.gold_rationale, "rationale_weight": 1.0,
        } for item in items]
        client = httpx.Client(timeout=300)

        def send(body: dict) -> int:
            response = client.post(url + "/v1/chat/completions", json=body)
            response.raise_for_status()
            return response.json()["usage"]["completion_tokens"]

        for body in bodies[:4]:
            send(body)  # warm-up
        work = [bodies[i % len(bodies)] for i in range(8 * args.per_client)]

        def rate(clients: int) -> tuple[float, int, float]:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                tokens = sum(pool.map(send, work))
            seconds = time.perf_counter() - started
            return tokens / seconds, tokens, seconds

        def batching() -> tuple[int, int]:
            health = client.get(url + "/health").json()
            return health["batches"], health["batched_requests"]

        one, tokens_one, seconds_one = rate(1)
        before = batching()
        eight, tokens_eight, seconds_eight = rate(8)
        after = batching()
        mean_batch = (after[1] - before[1]) / max(1, after[0] - before[0])

        process = psutil.Process(server.pid)
        rss_before = process.memory_info().rss
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, [bodies[i % len(bodies)] for i in range(args.rss_requests)]))
        rss_after = process.memory_info().rss
    finally:
        server.terminate()
        server.wait(30)

    result = {
        "concurrency8_speedup": round(eight / one, 3),
        "tokens_per_s_1_client": round(one, 2),
        "tokens_per_s_8_clients": round(eight, 2),
        "completion_tokens": [tokens_one, tokens_eight],
        "seconds": [round(seconds_one, 2), round(seconds_eight, 2)],
        "requests_per_rate": len(work),
        "mean_batch_8_clients": round(mean_batch, 2),
        "max_tokens": args.max_tokens,
        "rss_growth_mb_500": round((rss_after - rss_before) / 2**20, 2),
        "rss_mb_before": round(rss_before / 2**20, 1),
        "rss_requests": args.rss_requests,
        "model": "tiny random qwen2_vl" if args.tiny else args.model or "embedded",
        "cpu_threads": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


def wait_for(url: str, server: subprocess.Popen, log) -> str:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited: {log.read().decode()[-2000:]}")
        try:
            return httpx.get(url + "/health", timeout=1).json()["model"]
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the server did not start within 120 s")


if __name__ == "__main__":
    main()
