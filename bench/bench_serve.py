"""`taskcli serve ner` under load: requests/s and p50/p99 latency with 1, 8 and 32 concurrent clients (one
sentence per request, a DistilBERT-base-size model), against a loop calling pipeline() once per request.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_ner_infer import build_model, sentences  # noqa: E402

REQUESTS = 192


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def load(url: str, texts: list[str], clients: int) -> tuple[float, list[float]]:
    """`clients` concurrent request loops on one asyncio client (cheaper than threads: the load generator shares
    the machine's cores with the server)."""
    import asyncio

    import httpx

    latencies: list[float] = []

    async def client(http, k: int):
        for text in texts[k::clients]:
            start = time.perf_counter()
            (await http.post(f"{url}/predict", json={"input": text})).raise_for_status()
            latencies.append(time.perf_counter() - start)

    async def main():
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            await asyncio.gather(*(client(http, k) for k in range(clients)))

    start = time.perf_counter()
    asyncio.run(main())
    return len(texts) / (time.perf_counter() - start), latencies


def start_server(model: str, options: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`taskcli serve ner --model MODEL --batch-size 32 OPTIONS` on a free port, once /health answers:
    (process, url)."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "taskcli", "serve", "ner", "--model", model, "--port", str(port),
                               "--batch-size", "32", *options],
                              stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    return server, url


if __name__ == "__main__":
    import httpx
    from transformers import pipeline

    texts = sentences(REQUESTS, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        build_model(tmp, sentences(1000))
        pipe = pipeline("token-classification", model=tmp, aggregation_strategy="simple", device="cpu")
        pipe(texts[:4])
        latencies = []
        start = time.perf_counter()
        for text in texts:
            t = time.perf_counter()
            pipe(text)
            latencies.append(time.perf_counter() - t)
        rate = len(texts) / (time.perf_counter() - start)
        print(f"pipeline() loop, one request at a time: {rate:6.1f} req/s   p50 {1000 * statistics.median(latencies):6.1f} ms"
              f"   p99 {1000 * percentile(latencies, 0.99):6.1f} ms")
        server, url = start_server(tmp, ["--max-wait-ms", os.environ.get("MAX_WAIT_MS", "5")])
        try:
            load(url, texts[:8], 1)  # warm-up
            for clients in (1, 8, 32):
                rate, lat = load(url, texts, clients)
                print(f"taskcli serve, {clients:>2} concurrent clients:        {rate:6.1f} req/s   "
                      f"p50 {1000 * statistics.median(lat):6.1f} ms   p99 {1000 * percentile(lat, 0.99):6.1f} ms")
            health = httpx.get(f"{url}/health").json()
            print(f"requests {health['requests']} answered in {health['predict_calls']} predict calls")
        finally:
            server.terminate()
            server.wait()
