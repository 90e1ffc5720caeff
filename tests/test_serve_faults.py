"""`taskcli serve` under hostile load: the real servers (NER and image classification) on 127.0.0.1, hostile and
malformed requests interleaved with good ones from concurrent clients, slow clients trickling headers, then SIGTERM
with a request still in progress. Afterwards every good request got its right answer (`infer --json`'s), the
servers still answer /health, no upload is left on disk, RSS stayed bounded, and both stop within
--graceful-timeout. Bounded in count and time: ROUNDS rounds, every wait has a deadline."""

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, same_rows

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
TEXTS = ["Alice works for Globex in Paris", "Bob lives in Tokyo", "Carol and Bob met in Berlin today"]
ROUNDS = 3
SLOW_CLIENTS = 12
READ_TIMEOUT = 2  # --read-timeout of the servers: slow clients are cut after it
GRACEFUL = 1  # --graceful-timeout: shorter than READ_TIMEOUT, so it, not the body timeout, ends the request
RSS_GROWTH_MB = 400  # generous: the bomb alone would add 1.2 GB, a decoded 12000x12000 PNG 2 GB
FIGURES = {}  # what the run measured, printed at the end (pytest -s shows it)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Server:
    """`taskcli serve` in a subprocess with small limits, its own TMPDIR (checked for leftovers) and an API key."""

    def __init__(self, task: str, model, tmp, *extra: str):
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        tmp.mkdir()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskcli", "serve", task, "--model", str(model), "--port", str(self.port),
             "--max-body-mb", "1", "--max-inputs", "8", "--read-timeout", str(READ_TIMEOUT),
             "--graceful-timeout", str(GRACEFUL), "--max-wait-ms", "10", "--max-image-pixels", "4000000", *extra],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TMPDIR": str(tmp), "TASKCLI_API_KEY": KEY})

    def wait_ready(self):
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                if httpx.get(f"{self.url}/health", headers=AUTH, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    def post(self, body, headers=AUTH, **kw):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()  # ASCII: lone surrogates escaped
        return httpx.post(f"{self.url}/predict", content=content, headers=headers, timeout=60, **kw)

    def raw(self, data: bytes, timeout: float = 10) -> bytes:
        """Send bytes on a socket of its own and read the answer until the server closes or `timeout`."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except (socket.timeout, ConnectionResetError):
                pass
            return answer

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _infer_rows(cli, *args):
    result = cli("infer", *map(str, args), "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _bomb_png() -> bytes:
    """20000x20000 pixels (1.2 GB as RGB) in 48 KB: one bit per pixel, all zero, compressed."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, "PNG")
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _trickle(server: Server, n: int) -> list[float]:
    """`n` clients sending a request's headers one byte every 0.2 s: seconds until the server closed each."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(n)]
    start, closed = time.monotonic(), {}
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 200
    k = 0
    while len(closed) < n and time.monotonic() - start < READ_TIMEOUT + 8:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            try:
                sock.send(head[k % len(head):k % len(head) + 1])
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        closed[i] = time.monotonic() - start
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:  # reset or broken pipe: closed by the server
                closed[i] = time.monotonic() - start
        k += 1
        time.sleep(0.2)
    for sock in socks:
        sock.close()
    return [closed.get(i, float("inf")) for i in range(n)]


def test_hostile_requests_do_not_break_the_server(cli, trained, tmp_path):
    started = time.monotonic()
    ner_model, img_model = trained("token-classification"), trained("image-classification")
    photos = sorted((REPO / "taskcli" / "samples" / "image-classification").rglob("*.jpg"))[:3]
    expected_text = _infer_rows(cli, "ner", *TEXTS, "--model", ner_model)
    expected_img = _infer_rows(cli, "image-classification", *photos, "--model", img_model)
    bomb = _bomb_png()
    ner = Server("ner", ner_model, tmp_path / "ner-tmp")
    img = Server("image-classification", img_model, tmp_path / "img-tmp", "--cors-origin", "http://app.example", "--docs")
    try:
        ner.wait_ready()
        img.wait_ready()
        setup_s = time.monotonic() - started
        started = time.monotonic()
        photo_inputs = [{"name": p.name, "base64": _b64(p.read_bytes())} for p in photos]
        good = [  # (server, body, expected rows)
            (ner, {"input": TEXTS[0]}, expected_text[:1]),
            (ner, {"inputs": TEXTS}, expected_text),
            (img, {"inputs": photo_inputs}, expected_img),
            (img, {"input": photo_inputs[1]}, expected_img[1:2]),
        ]
        for server, body, _ in good[:3]:  # warm: the first predict call allocates what later ones reuse
            assert server.post(body).status_code == 200
        rss_before = {name: _rss_mb(s.proc.pid) for name, s in (("ner", ner), ("img", img))}

        sent = {"good": 0, "bad": 0}
        lock = threading.Lock()

        def bad(expect_status, fragment, send):
            """A hostile request: its status and a fragment of its one-line error."""
            response = send()
            with lock:
                sent["bad"] += 1
            assert response.status_code == expect_status, (fragment, response.status_code, response.text)
            error = response.json()["error"]
            assert fragment in error and "\n" not in error and "--skip-bad" not in error, error
            assert str(tmp_path) not in response.text and "/tmp/" not in response.text, response.text

        def bad_raw(expect_status: int, data: bytes):
            """A hostile request written on a socket as is: the status line the server answers with."""
            answer = ner.raw(data)
            with lock:
                sent["bad"] += 1
            assert answer.startswith(f"HTTP/1.1 {expect_status} ".encode()), answer[:200]

        jpg = photos[0].read_bytes()
        hostile = [
            lambda: bad(400, "lone surrogate", lambda: ner.post(b'{"inputs": ["\\ud800"]}')),
            lambda: bad(400, "bomb.png: it is 400,000,000 pixels, more than the limit of 4,000,000",
                        lambda: img.post({"input": {"name": "bomb.png", "base64": _b64(bomb)}})),
            lambda: bad(400, "base64 is not valid", lambda: img.post({"input": {"name": "x.jpg", "base64": "@@@"}})),
            lambda: bad(400, "the file is empty", lambda: img.post({"input": {"name": "/etc/\x00passwd", "base64": ""}})),
            lambda: bad(413, "the body is over 1 MB", lambda: ner.post(b'{"input": "' + b"a" * (1 << 20) + b'"}')),
            lambda: bad(415, "not text/plain", lambda: ner.post({"input": "Alice"}, headers={
                "Authorization": AUTH["Authorization"], "Content-Type": "text/plain"})),
            lambda: bad(401, "missing or wrong API key", lambda: ner.post({"input": "Alice"}, headers={
                "Authorization": "Bearer wrong", "Content-Type": "application/json"})),
            lambda: bad(401, "missing or wrong API key", lambda: httpx.get(f"{img.url}/health", timeout=60)),
            lambda: bad(400, "9 inputs in one request, more than 8", lambda: ner.post({"inputs": ["a"] * 9})),
            lambda: bad(400, "the body is not JSON", lambda: ner.post(b"\xff\xfe not json")),
            lambda: bad(400, "nested too deeply", lambda: ner.post(b"[" * 200_000)),
            lambda: bad(400, "takes files", lambda: img.post({"input": "/etc/passwd"})),
            # headers still incomplete after 16 KiB (h11); a body declared 64 MB (refused before it is read)
            lambda: bad_raw(400, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000),
            lambda: bad_raw(413, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 67108864\r\n\r\n{"),
        ]

        def good_client(k: int) -> list:
            """Good requests in a loop while the hostile ones go: (got, expected) pairs."""
            out = []
            for j in range(ROUNDS * 3):
                server, body, expected = good[(k + j) % len(good)]
                response = server.post(body)
                out.append((response.status_code, response.json(), expected))
            return out

        with ThreadPoolExecutor(5) as pool:
            clients = [pool.submit(good_client, k) for k in range(4)]
            slow = pool.submit(_trickle, ner, SLOW_CLIENTS)
            for _ in range(ROUNDS):
                for attack in hostile:
                    attack()
                # a request with a NUL in its name and one good and one bomb input: rows in place, 200
                mixed = img.post({"inputs": [{"name": "a\x00b.jpg", "base64": _b64(jpg)},
                                             {"name": "bomb.png", "base64": _b64(bomb)}]})
                assert mixed.status_code == 200, mixed.text
                rows = mixed.json()["results"]
                assert rows[0]["input"] == "a\x00b.jpg" and same_rows(rows[0]["labels"], expected_img[0]["labels"])
                assert "decoded pixels" in rows[1]["error"]
                sent["bad"] += 1
            answers = [a for c in clients for a in c.result(timeout=120)]
            closed_after = slow.result(timeout=60)
        sent["good"] = len(answers)
        for status, body, expected in answers:
            assert status == 200, body
            assert same_rows([{k: v for k, v in r.items() if k != "input"} for r in body["results"]],
                             [{k: v for k, v in r.items() if k != "input"} for r in expected]), (body, expected)
        # slow clients were cut after --read-timeout, not held open
        assert max(closed_after) < READ_TIMEOUT + 3, closed_after

        for server in (ner, img):
            health = httpx.get(f"{server.url}/health", headers=AUTH, timeout=10).json()
            assert health["worker"] == "alive" and health["queue"] == 0, health
            left = [p for p in server.tmp.rglob("*")]
            assert not [p for p in left if "taskcli-serve" in p.name], left
            assert sum(p.stat().st_size for p in left if p.is_file()) < 1 << 20, left  # no upload kept on disk
        # what --cors-origin and --docs open, on the image server only
        def preflight(server, origin):
            return httpx.options(f"{server.url}/predict", timeout=10, headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"}).headers
        assert preflight(img, "http://app.example").get("access-control-allow-origin") == "http://app.example"
        assert "access-control-allow-origin" not in preflight(img, "http://evil.example")
        assert "access-control-allow-origin" not in preflight(ner, "http://app.example")
        assert httpx.get(f"{img.url}/openapi.json", timeout=10).status_code == 200
        assert httpx.get(f"{ner.url}/openapi.json", timeout=10).status_code == 404
        rss_after = {name: _rss_mb(s.proc.pid) for name, s in (("ner", ner), ("img", img))}
        for name in rss_before:
            assert rss_after[name] < rss_before[name] + RSS_GROWTH_MB, (rss_before, rss_after)

        # SIGTERM with a request still in progress (its body never finishes): gone within --graceful-timeout
        hanging = []
        for server in (ner, img):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"inp")
            hanging.append(sock)
        time.sleep(0.3)
        term = time.monotonic()
        for server in (ner, img):
            server.proc.send_signal(signal.SIGTERM)
        for server in (ner, img):
            server.proc.wait(timeout=GRACEFUL + 10)
        stop_s = time.monotonic() - term
        for sock in hanging:
            sock.close()
        assert stop_s < GRACEFUL + 5, stop_s
        for server in (ner, img):
            log = server.proc.stderr.read()
            assert "Traceback" not in log and "internal error" not in log, log
        FIGURES.update(requests=sent["good"] + sent["bad"] + SLOW_CLIENTS, good=sent["good"],
                       bad=sent["bad"] + SLOW_CLIENTS, slow_clients=SLOW_CLIENTS, rss_before_mb=rss_before,
                       rss_after_mb=rss_after, slowest_cut_s=round(max(closed_after), 2), sigterm_s=round(stop_s, 2),
                       setup_s=round(setup_s, 1), load_s=round(time.monotonic() - started, 1))
        print(f"\nserve load-and-fault figures: {json.dumps(FIGURES)}")
        assert time.monotonic() - started < 60, FIGURES
    finally:
        ner.kill()
        img.kill()


def test_infer_names_a_decompression_bomb_and_skips_it(cli, trained, tmp_path):
    """The pixel limit is images.py's, so the CLI gets it too: one line naming the file (Pillow's
    DecompressionBombError escaped unnamed before), an error row with --skip-bad."""
    from conftest import assert_clean_error

    bomb = tmp_path / "huge.png"
    bomb.write_bytes(_bomb_png())
    model = trained("image-classification")
    assert_clean_error(cli("infer", "image-classification", bomb, "--model", model), f"cannot read image {bomb}",
                       "400,000,000 pixels, more than the limit of 89,478,485 decoded pixels")
    photo = sorted((REPO / "taskcli" / "samples" / "image-classification").rglob("*.jpg"))[0]
    rows = _infer_rows(cli, "image-classification", bomb, photo, "--model", model, "--skip-bad")
    assert "decoded pixels" in rows[0]["error"] and "labels" in rows[1]


def test_audio_duration_is_checked_from_the_header_before_decoding(monkeypatch):
    import numpy as np
    import soundfile as sf

    from taskcli import audio

    flac = io.BytesIO()
    sf.write(flac, np.zeros(16000 * 3, dtype=np.float32), 16000, format="FLAC")
    upload = {"bytes": flac.getvalue(), "path": "long.flac"}
    assert audio.decode(upload)[0].shape == (48000, 1)  # no limit: infer reads the user's own files whole
    monkeypatch.setattr(audio, "MAX_SECONDS", 2.5)
    read = []
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **kw: read.append(1))
    with pytest.raises(audio.BadAudio, match=r"long.flac: it is 3.0 s long, more than the limit of 2.5 s"):
        audio.decode(upload)
    assert not read  # refused from the header: nothing was decoded
    pcm = {"bytes": np.zeros(16000, dtype="<i2").tobytes(), "path": "clip.pcm"}  # raw bytes, as serve gets them
    monkeypatch.undo()
    arr, rate = audio.decode(pcm)
    assert arr.shape == (16000, 1) and rate == 16000


# the server's predict call waits until the test creates the gate file: a slow model the test controls
_GATE_HOOK = '''import os, time
from taskcli import inference
_predict = inference.predict
def _gated(*args, **kwargs):
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["TASKCLI_TEST_GATE"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _predict(*args, **kwargs)
inference.predict = _gated
'''


def _health_until(server: Server, ready, what: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(f"{server.url}/health", headers=AUTH, timeout=10).json()
        if ready(health):
            return health
        time.sleep(0.02)
    raise AssertionError(f"{what}: {health}")


def test_a_full_queue_is_a_503_with_retry_after_and_the_waiting_requests_are_answered(cli, trained, tmp_path,
                                                                                         monkeypatch):
    """--max-queue 1: one request held by the worker (its predict waits on a gate), one waiting, the third refused
    at once with 503 and Retry-After; once the gate opens, the two are answered right and the server goes on."""
    model = trained("token-classification")
    expected = _infer_rows(cli, "ner", *TEXTS[:2], "--model", model)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_GATE_HOOK)
    gate = tmp_path / "gate"
    monkeypatch.setenv("PYTHONPATH", str(hook))
    monkeypatch.setenv("TASKCLI_TEST_GATE", str(gate))
    server = Server("ner", model, tmp_path / "tmp", "--max-queue", "1")
    try:
        server.wait_ready()
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(server.post, {"input": TEXTS[0]})
            _health_until(server, lambda h: h["busy_s"] > 0 and h["queue"] == 0, "the worker did not take it")
            waiting = pool.submit(server.post, {"input": TEXTS[1]})
            health = _health_until(server, lambda h: h["queue"] == 1, "the second request did not queue")
            assert health["queue_limit"] == 1 and health["worker"] == "alive"
            started = time.monotonic()
            refused = server.post({"input": TEXTS[2]})
            assert time.monotonic() - started < 5  # refused at once, not queued behind the gate
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
            assert refused.json()["error"] == "the server is busy: 1 requests are waiting"
            assert not held.done() and not waiting.done()
            gate.touch()
            answers = [held.result(timeout=60), waiting.result(timeout=60)]
        for answer, row in zip(answers, expected):
            assert answer.status_code == 200 and same_rows(answer.json()["results"], [row]), answer.text
        again = server.post({"input": TEXTS[0]})
        assert again.status_code == 200 and same_rows(again.json()["results"], expected[:1])
        assert httpx.get(f"{server.url}/health", headers=AUTH, timeout=10).json()["queue"] == 0
    finally:
        gate.touch()
        server.kill()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the worker's end, on purpose
def test_a_dead_worker_is_a_503_on_health_and_predict_never_a_hang(trained):
    """The worker only ends on what is not an Exception (a SystemExit here, raised in its loop): the request it
    held and the ones queued are answered 503, /health says 503 'dead', and a new /predict is a 503 at once
    (before, it waited forever on a queue nobody read)."""
    from fastapi.testclient import TestClient

    from taskcli import model_loading, serve

    run, mdl = model_loading.load_for_inference("ner", str(trained("token-classification")), None, None, False)
    predictor = serve.Predictor(run, mdl, {}, max_wait_s=0.01)
    client = TestClient(serve.app_for(predictor, "ner-model"))
    try:
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={"input": TEXTS[0]}).status_code == 200

        def dies(jobs):
            raise SystemExit("killed")  # ends a thread quietly, past the loop's `except Exception`

        predictor._answer = dies
        held = predictor.submit([TEXTS[0]])
        assert held.result(timeout=10) == (503, serve.WORKER_STOPPED)
        predictor.worker.join(timeout=10)
        assert not predictor.worker.is_alive()
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["worker"] == "dead", health.text
        assert health.json()["status"] == "worker stopped"
        answer: list = []
        asking = threading.Thread(target=lambda: answer.append(client.post("/predict", json={"input": "Bob"})),
                                  daemon=True)  # (daemon: a hang fails the test instead of blocking pytest's exit)
        asking.start()
        asking.join(timeout=10)
        assert answer, "/predict hung on a dead worker"
        assert answer[0].status_code == 503 and answer[0].json() == serve.WORKER_STOPPED
        assert predictor.submit(["Bob"]).result(timeout=10) == (503, serve.WORKER_STOPPED)
    finally:
        client.close()
        run.close()


def test_audio_is_served_from_base64_and_a_recording_over_the_limit_is_its_error_row(cli, trained, tmp_path):
    """A real audio-classification server: a bundled recording sent as {"name", "base64"} gets infer --json's row;
    one longer than --max-audio-seconds (1 s; a 1.4 s ASR sample) is an error row naming it, in its place."""
    model = trained("audio-classification")
    short = REPO / "taskcli" / "samples" / "audio-classification" / "yes" / "yes_00.flac"  # 0.47 s
    long = REPO / "taskcli" / "samples" / "automatic-speech-recognition" / "clip_00.flac"  # 1.39 s
    [expected] = _infer_rows(cli, "audio-classification", short, "--model", model)
    server = Server("audio-classification", model, tmp_path / "tmp", "--max-audio-seconds", "1")
    try:
        server.wait_ready()
        response = server.post({"inputs": [{"name": "x.flac", "base64": _b64(short.read_bytes())},
                                           {"name": "long.flac", "base64": _b64(long.read_bytes())}]})
        assert response.status_code == 200, response.text
        good, too_long = response.json()["results"]
        assert good["input"] == "x.flac" and "labels" in good
        assert same_rows({**good, "input": None}, {**expected, "input": None}), (good, expected)
        assert too_long == {"input": "long.flac", "error": "cannot read audio file long.flac: it is 1.4 s long, "
                                                           "more than the limit of 1 s"}, too_long
        alone = server.post({"input": {"name": "long.flac", "base64": _b64(long.read_bytes())}})
        assert alone.status_code == 400 and "long.flac" in alone.json()["error"], alone.text
        assert not [p for p in server.tmp.rglob("*") if p.is_file()]  # decoded in memory
    finally:
        server.kill()
