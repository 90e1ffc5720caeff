"""Does `taskcli serve ner` keep its memory bounded over many requests of varied sizes? A DistilBERT-base-size model
answers --requests requests from 8 concurrent clients, each of 1-32 sentences of 1-250 words (median 4), so the
worker's batches take many different row counts and lengths (each a new shape for oneDNN's linear layers). Its RSS is
sampled every 0.1 s: after start-up, after a warm-up, after each quarter of the requests, and its peak. The growth
over the last half is the figure to watch: a bounded server levels off. A second server runs the same requests with
oneDNN's two primitive caches at their 1,024-entry defaults (what `taskcli serve` did before
cpu_linear._cap_caches), for comparison; `--capped-only` skips it.

    .venv/bin/python bench/bench_serve_memory.py [--requests 240] [--capped-only]
"""

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_ner_infer import build_model, sentences  # noqa: E402
from bench_serve import start_server  # noqa: E402

WORDS = ("Alice Martin works for Globex in Tokyo and Paris while the team from Acme Corp visited Berlin on "
         "Monday after shares rose sharply because investors said the new office would grow").split()
UNCAPPED = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"}


def requests_of(n: int, seed: int) -> list[list[str]]:
    """n requests of 1-32 sentences each, of 1-250 words (a long tail: most short)."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(min(250, int(rng.paretovariate(1.2) * 4) - 3))) + " ."

    return [[sentence() for _ in range(rng.randint(1, 32))] for _ in range(n)]


class RssSampler(threading.Thread):
    """The server process's resident set, every 0.1 s, in MB."""

    def __init__(self, pid: int):
        import psutil

        super().__init__(daemon=True)
        self.process, self.peak, self.now, self.stop = psutil.Process(pid), 0.0, 0.0, threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            self.now = self.process.memory_info().rss / 2**20
            self.peak = max(self.peak, self.now)


def send(url: str, batch: list[list[str]], clients: int = 8) -> None:
    import httpx

    async def client(http, k: int):
        for inputs in batch[k::clients]:
            (await http.post(f"{url}/predict", json={"inputs": inputs})).raise_for_status()

    async def main():
        async with httpx.AsyncClient(timeout=300) as http:
            await asyncio.gather(*(client(http, k) for k in range(clients)))

    asyncio.run(main())


def serve(model: str, env: dict, reqs: list[list[str]], label: str) -> None:
    import httpx

    server, url = start_server(model, [], env)
    sampler = RssSampler(server.pid)
    try:
        sampler.start()
        time.sleep(0.3)
        marks = [("started", sampler.now)]
        send(url, requests_of(8, seed=99))
        marks.append(("warm-up", sampler.now))
        start, quarter = time.perf_counter(), len(reqs) // 4
        for q in range(4):
            send(url, reqs[q * quarter:(q + 1) * quarter])
            time.sleep(0.3)
            marks.append((f"{q + 1}/4", sampler.now))
        seconds = time.perf_counter() - start
        calls = httpx.get(f"{url}/health").json()["predict_calls"]
    finally:
        sampler.stop.set()
        server.terminate()
        server.wait()
    inputs = sum(len(r) for r in reqs[:4 * quarter])
    print(f"| {label} | " + " | ".join(f"{mb:,.0f}" for _, mb in marks) + f" | {sampler.peak:,.0f} | "
          f"{marks[-1][1] - marks[-3][1]:+,.0f} | {inputs / seconds:.1f} |   ({calls} predict calls)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--capped-only", action="store_true")
    args = parser.parse_args()
    reqs = requests_of(args.requests, seed=1)
    words = [len(s.split()) for r in reqs for s in r]
    print(f"{args.requests} requests, {len(words):,} sentences ({min(words)}-{max(words)} words, median "
          f"{sorted(words)[len(words) // 2]}), 8 concurrent clients, DistilBERT-base size, batch 32; server RSS in MB")
    print("| server | started | warm-up | 1/4 | 2/4 | 3/4 | 4/4 | peak | last half | sentences/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        build_model(tmp, sentences(1000))
        serve(tmp, {}, reqs, "taskcli serve (caches capped)")
        if not args.capped_only:
            serve(tmp, UNCAPPED, reqs, "oneDNN caches at 1,024 entries")
