"""`taskcli serve`: the real server on 127.0.0.1, concurrent requests from a real HTTP client; answers equal
`infer --json`; a bad input is an error row in its place (a 400 when none could be used) and the server goes on;
the worker survives any exception (in-process, with a failing step). The hostile load test is test_serve_faults.py."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, same_rows

httpx = pytest.importorskip("httpx")

TEXTS = ["Alice works for Globex in Paris", "Bob lives in Tokyo", "Carol and Bob met in Berlin today",
         "Initech hired Alice", "Tokyo", "Paris Berlin Tokyo and Alice"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, *args, env: dict | None = None):
        self.url = f"http://127.0.0.1:{_port()}"
        self.proc = subprocess.Popen([sys.executable, "-m", "taskcli", "serve", *map(str, args), "--port",
                                      self.url.rsplit(":", 1)[1]], cwd=REPO, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def ner_server(trained):
    server = Server("ner", "--model", trained("token-classification"), "--max-wait-ms", "20")
    yield server
    server.stop()


def _infer_rows(cli, *args):
    result = cli("infer", *map(str, args), "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]



def test_concurrent_requests_get_infer_json_rows(cli, trained, ner_server):
    expected = _infer_rows(cli, "ner", *TEXTS, "--model", trained("token-classification"))
    health = httpx.get(f"{ner_server.url}/health").json()
    assert health["status"] == "ok" and health["task"] == "token-classification"

    def ask(k):
        response = httpx.post(f"{ner_server.url}/predict", json={"input": TEXTS[k % len(TEXTS)]}, timeout=60)
        return k, response.status_code, response.json()

    before = httpx.get(f"{ner_server.url}/health").json()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(48)))
    after = httpx.get(f"{ner_server.url}/health").json()
    # requests that arrived together shared predict calls
    assert after["requests"] - before["requests"] == 48
    assert after["predict_calls"] - before["predict_calls"] < 48
    for k, status, body in answers:
        assert status == 200, body
        assert same_rows(body["results"], [expected[k % len(TEXTS)]]), (body, expected[k % len(TEXTS)])
    several = httpx.post(f"{ner_server.url}/predict", json={"inputs": TEXTS}, timeout=60).json()["results"]
    assert same_rows(several, expected)


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("body, status, fragment", [
    (b"not json", 400, "the body is not JSON"),
    (b'{"inputs": [""]}', 400, "input 1 has an empty 'text'"),
    (b'{"inputs": []}', 400, "no inputs"),
    (b'{"inputs": [5]}', 400, "input 1 is a int"),
    (b'{"inputs": ["\\ud800"]}', 400, "input 1 holds a lone surrogate"),
    (b'{"text": "x"}', 400, 'send {"inputs": [...]} or {"input": ...}'),
    (b"[" * 100_000, 400, "nested too deeply"),
    (b'{"inputs": [' + b'"a", ' * 64 + b'"a"]}', 400, "65 inputs in one request, more than 64"),
])
def test_bad_requests_get_a_400_and_the_server_goes_on(ner_server, body, status, fragment):
    response = httpx.post(f"{ner_server.url}/predict", content=body, headers=JSON, timeout=60)
    assert response.status_code == status and fragment in response.json()["error"], response.text
    assert "--skip-bad" not in response.json()["error"] and "\n" not in response.json()["error"]
    ok = httpx.post(f"{ner_server.url}/predict", json={"input": "Alice"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["results"][0]["input"] == "Alice"


def test_a_bad_input_is_an_error_row_in_its_place(cli, trained, ner_server):
    """As infer --skip-bad: the others are answered, the bad ones name the client's input index."""
    expected = _infer_rows(cli, "ner", TEXTS[0], TEXTS[1], "--model", trained("token-classification"))
    inputs = [TEXTS[0], "", "\ud800", 7, TEXTS[1]]
    response = httpx.post(f"{ner_server.url}/predict", content=json.dumps({"inputs": inputs}), headers=JSON,
                          timeout=60)  # (ASCII JSON: the lone surrogate travels as its escape, as clients send it)
    assert response.status_code == 200, response.text
    rows = response.json()["results"]
    assert [row["input"] for row in rows] == inputs
    assert same_rows([rows[0], rows[4]], expected)
    assert rows[1]["error"] == "input 2 has an empty 'text'"
    assert rows[2]["error"].startswith("input 3 holds a lone surrogate") and rows[3]["error"].startswith("input 4 ")


def test_only_json_and_no_docs_or_cors_by_default(ner_server):
    plain = httpx.post(f"{ner_server.url}/predict", content=b'{"input": "Alice"}',
                       headers={"Content-Type": "text/plain", "Origin": "http://evil.example"}, timeout=60)
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]
    assert "access-control-allow-origin" not in plain.headers
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{ner_server.url}{path}", timeout=60).status_code == 404, path
    preflight = httpx.options(f"{ner_server.url}/predict", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}, timeout=60)
    assert "access-control-allow-origin" not in preflight.headers


def test_health_reports_the_worker_and_its_queue(ner_server):
    health = httpx.get(f"{ner_server.url}/health", timeout=60).json()
    assert health["worker"] == "alive" and health["queue"] == 0 and health["queue_limit"] == 32


def _predictor(trained):
    from taskcli import model_loading, serve

    run, model = model_loading.load_for_inference("ner", str(trained("token-classification")), None, None, False)
    return run, serve.Predictor(run, model, {}, max_wait_s=0.05)


def _ask(predictor, inputs):
    return predictor.submit(inputs).result(timeout=60)


def test_a_failing_batch_is_retried_input_by_input_and_the_worker_lives_on(trained):
    """A step that raises for one text (as the tokenizer did for a lone surrogate): its row gets one line, the
    request's other inputs and the requests batched with it are answered, and the worker goes on."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    run, predictor = _predictor(trained)
    try:
        good = _ask(predictor, ["Alice works in Paris", "Bob"])
        assert good[0] == 200

        encode = predictor.steps.encode

        def breaks_on_boom(ctx, parsed):
            if any("boom" in str(p) for p in parsed):
                raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
            return encode(ctx, parsed)

        predictor.steps = dataclasses.replace(predictor.steps, encode=breaks_on_boom)
        with ThreadPoolExecutor(3) as pool:  # sent together: one batch holding the bad text
            answers = list(pool.map(lambda inputs: _ask(predictor, inputs),
                                    [["Alice works in Paris", "boom", "Bob"], ["Alice works in Paris"], ["boom"]]))
        mixed, alone, broken = answers
        assert mixed[0] == 200 and mixed[1]["results"][0] == good[1]["results"][0]
        assert mixed[1]["results"][2] == good[1]["results"][1]
        assert mixed[1]["results"][1]["error"].startswith("internal error while predicting (TypeError")
        assert alone == (200, {"results": [good[1]["results"][0]]})
        assert broken[0] == 500 and "\n" not in broken[1]["error"] and "TypeError" in broken[1]["error"]

        def parse_crashes(ctx, item):
            raise RuntimeError("a bug of ours")

        predictor.steps = dataclasses.replace(predictor.steps, parse=parse_crashes)
        status, body = _ask(predictor, ["Alice"])
        assert status == 500 and body["error"].startswith("internal error while reading input 1 (RuntimeError")
        predictor.steps = dataclasses.replace(predictor.steps, parse=None)  # not even callable: still answered
        assert _ask(predictor, ["Alice"])[0] == 500
        assert predictor.health()["worker"] == "alive" and predictor.health()["internal_errors"] >= 4
    finally:
        run.close()


def _single_forward_tasks() -> list[str]:
    from taskcli import registry
    from taskcli.generation import GenerationOptions

    return [t.name for t in registry.all_tasks() if t.infer_options is not GenerationOptions]


@pytest.mark.parametrize("task", _single_forward_tasks())
def test_every_single_forward_task_warms_up_on_inputs_it_reads(task):
    """What a compiled server runs before it listens (Predictor.warm_up): the task's own inputs (QA's question and
    context, fill-mask's mask) or its modality's (texts, generated PNGs and WAVs), one alone then two together, each
    answered by the model; the clients' predict count starts at 0."""
    from taskcli import model_loading
    from taskcli.serve_worker import Predictor

    run, model = model_loading.load_for_inference(task, None, None, None, True)
    try:
        predictor = Predictor(run, model, {}, max_wait_s=0.01)
        answered, predict = [], predictor._predict
        predictor._predict = lambda rows: (predict(rows), answered.append([r.result is not None for r in rows]))
        assert predictor.warm_up() > 0
        assert answered == [[True], [True, True]] and predictor.health()["predict_calls"] == 0
    finally:
        run.close()


def test_a_warm_up_input_that_fails_stops_the_start_in_one_line(trained):
    import dataclasses

    run, predictor = _predictor(trained)
    try:
        predictor.run = dataclasses.replace(run, task=dataclasses.replace(run.task, warm_up=("Alice", "")))
        with pytest.raises(Exception) as err:
            predictor.warm_up()
        assert err.value.message == "warming the compiled model up failed: input 2 has an empty 'text'"
    finally:
        run.close()


def test_a_compiled_server_compiles_before_it_listens(trained, tmp_path):
    """With infer.compile the first requests no longer wait for the compiler: when /health first answers, inductor
    has written its kernels and no client request has run; the answers are the eager server's."""
    model = trained("token-classification")
    server = Server("ner", "--model", model, "--set", "infer.compile=true",
                    env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    try:
        health = httpx.get(f"{server.url}/health", timeout=10).json()
        assert list(tmp_path.rglob("*.py")), "no kernels when the server began to listen"
        assert health["predict_calls"] == health["requests"] == 0
        compiled = httpx.post(f"{server.url}/predict", json={"inputs": TEXTS[:3]}, timeout=60).json()
    finally:
        server.stop()
    assert "warmed up in" in server.proc.stderr.read()
    eager = Server("ner", "--model", model)
    try:
        expected = httpx.post(f"{eager.url}/predict", json={"inputs": TEXTS[:3]}, timeout=60).json()
    finally:
        eager.stop()
    assert same_rows(expected, compiled, tol=1e-4), (expected, compiled)


def test_a_text_is_never_read_as_a_server_file(ner_server, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("Alice\nBob\nCarol\n")
    rows = httpx.post(f"{ner_server.url}/predict", json={"input": str(secret)}, timeout=60).json()["results"]
    assert len(rows) == 1 and rows[0]["input"] == str(secret)


def test_image_files_are_sent_as_base64(cli, trained, tmp_path):
    model = trained("image-classification")
    photos = sorted((REPO / "taskcli" / "samples" / "image-classification").rglob("*.jpg"))[:3]
    expected = _infer_rows(cli, "image-classification", *photos, "--model", model)
    server = Server("image-classification", "--model", model)
    try:
        inputs = [{"name": p.name, "base64": base64.b64encode(p.read_bytes()).decode()} for p in photos]
        rows = httpx.post(f"{server.url}/predict", json={"inputs": inputs}, timeout=60).json()["results"]
        assert [r["input"] for r in rows] == [p.name for p in photos]
        assert same_rows([{k: v for k, v in r.items() if k != "input"} for r in rows],
                      [{k: v for k, v in r.items() if k != "input"} for r in expected])
        bad = httpx.post(f"{server.url}/predict", json={"inputs": ["/etc/hosts"]}, timeout=60)
        assert bad.status_code == 400 and "takes files" in bad.json()["error"]
        # an empty upload never falls through to reading its name as a path on the server
        empty = httpx.post(f"{server.url}/predict", json={"input": {"name": str(photos[0]), "base64": ""}}, timeout=60)
        assert empty.status_code == 400 and "the file is empty" in empty.json()["error"], empty.text
    finally:
        server.stop()


def test_missing_server_packages_are_named(tmp_path):
    """Without the serve extra: one line naming it (fastapi hidden from the import system)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nimport importlib.abc\nclass Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastapi', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(name)\n        return None\n"
        "sys.meta_path.insert(0, Block())\n")
    done = subprocess.run([sys.executable, "-m", "taskcli", "serve", "ner", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(hide)})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "needs fastapi and uvicorn" in lines[0] and "pip install 'taskcli[serve]'" in lines[0]


def test_sigterm_ends_a_smoke_server_without_leaving_its_model(tmp_path):
    """uvicorn raises the SIGTERM it shut down on again: under Python's default handler the process died before it
    removed --smoke's tiny model from the temp dir (one folder left per stopped server)."""
    server = Server("ner", "--smoke", env={"TMPDIR": str(tmp_path)})
    assert [p.name for p in tmp_path.glob("taskcli-smoke-*")], "the smoke model is not where the test looks"
    assert httpx.post(f"{server.url}/predict", json={"input": TEXTS[0]}, timeout=60).status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert "Traceback" not in server.proc.stderr.read()
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith("torchinductor_")]
