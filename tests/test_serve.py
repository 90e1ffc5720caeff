"""`taskcli serve`: the real server on 127.0.0.1, concurrent requests from a real HTTP client; answers equal
`infer --json`; bad requests get a 400 with one line and the server goes on."""

import base64
import json
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
    def __init__(self, *args):
        self.url = f"http://127.0.0.1:{_port()}"
        self.proc = subprocess.Popen([sys.executable, "-m", "taskcli", "serve", *map(str, args), "--port",
                                      self.url.rsplit(":", 1)[1]], cwd=REPO, stderr=subprocess.PIPE, text=True)
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


@pytest.mark.parametrize("body, fragment", [
    (b"not json", "the body is not JSON"),
    (b'{"inputs": [""]}', "input 1 has an empty 'text'"),
    (b'{"inputs": []}', "no inputs"),
    (b'{"inputs": [5]}', "input 1 is a int"),
    (b'{"text": "x"}', 'send {"inputs": [...]} or {"input": ...}'),
])
def test_bad_requests_get_a_400_and_the_server_goes_on(ner_server, body, fragment):
    response = httpx.post(f"{ner_server.url}/predict", content=body, timeout=60)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text
    assert "--skip-bad" not in response.json()["error"] and "\n" not in response.json()["error"]
    ok = httpx.post(f"{ner_server.url}/predict", json={"input": "Alice"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["results"][0]["input"] == "Alice"


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
                          text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(hide)})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "needs fastapi and uvicorn" in lines[0] and "pip install 'taskcli[serve]'" in lines[0]
