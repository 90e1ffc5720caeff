"""taskcli push DIR ORG/NAME and finetune --push-to-hub, against the replay Hub (tests/replay/hubserver.py) with
its upload API, so huggingface_hub's real client does the uploading: what arrives is what the run wrote, byte for
byte, without checkpoints; a failed gate pushes nothing; no token, a refused token and a failing Hub are one line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error

sys.path.insert(0, str(Path(__file__).resolve().parent / "replay"))
from hubserver import ReplayHub  # noqa: E402

TOKEN = "hf_replay_write_token"


def _online(mp: pytest.MonkeyPatch, url: str, token: str | None = TOKEN) -> None:
    """huggingface_hub talks to the replay Hub with `token` (conftest makes the tests offline at import)."""
    from huggingface_hub import constants

    mp.setattr(constants, "HF_HUB_OFFLINE", False)
    mp.setattr(constants, "ENDPOINT", url)
    mp.setattr(constants, "HF_TOKEN_PATH", "/nonexistent/taskcli-test/token")  # never a developer's own login
    if token is None:
        mp.delenv("HF_TOKEN", raising=False)
    else:
        mp.setenv("HF_TOKEN", token)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """An empty Hub (no replay cache needed) that accepts one write token."""
    server = ReplayHub(tmp_path_factory.mktemp("hub"), token=TOKEN)
    with server as url, pytest.MonkeyPatch.context() as mp:
        _online(mp, url)
        yield server


@pytest.fixture(scope="module")
def pushed_run(hub, cli, tmp_path_factory, one_torch_thread):
    """finetune --smoke with its report, a gate that holds and --push-to-hub: (the run folder, the CLI result)."""
    out = tmp_path_factory.mktemp("runs") / "tc-smoke"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKCLI_REPORT", "1")
        result = cli("finetune", "text-classification", "--smoke", "-o", out, "--set", "train.max_steps=4",
                     "--gate", "accuracy>=0", "--push-to-hub", "me/tc-smoke", "--json")
    assert result.exit_code == 0, result.stderr
    return out, result


def _snapshot(hub: ReplayHub, repo_id: str) -> Path:
    folder = hub.cache_dir / f"models--{repo_id.replace('/', '--')}"
    return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _expected(run: Path) -> dict[str, bytes]:
    """The run's files a push must carry: everything but checkpoint-*/, optimizer state and the run marker."""
    return {name: data for name, data in _tree(run).items()
            if not name.startswith("checkpoint-") and name != ".taskcli-run"
            and Path(name).name not in ("optimizer.pt", "scheduler.pt", "rng_state.pth")}


def test_finetune_push_to_hub_uploads_the_run_byte_for_byte(hub, pushed_run):
    out, result = pushed_run
    arrived = _tree(_snapshot(hub, "me/tc-smoke"))
    assert arrived == _expected(out)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "recipe.yaml", "metrics.json", "README.md",
                 "report/confusion_matrix.png"):
        assert name in arrived, sorted(arrived)
    assert any(p.name.startswith("checkpoint-") for p in out.iterdir())  # the run had checkpoints: none went up
    assert not any(name.startswith("checkpoint-") or name.endswith("optimizer.pt") for name in arrived)
    pushed = json.loads(result.stdout)["pushed"]
    assert pushed["repo"] == "me/tc-smoke" and sorted(pushed["files"]) == sorted(arrived)
    assert pushed["left_out"] and all(name.startswith("checkpoint-") for name in pushed["left_out"])
    assert "note: not pushed: checkpoint-" in result.stderr  # said, not silently dropped
    commit = hub.commits[0]
    assert commit["repo"] == "me/tc-smoke" and commit["oid"] == pushed["commit"]
    assert commit["summary"].startswith(f"taskcli run {out.name}: text-classification/distilbert (")
    assert "accuracy=" in commit["summary"]
    assert commit["description"].startswith("Ran as: taskcli ")  # the command as typed
    assert hub.created["me/tc-smoke"].get("visibility") != "private"


def test_a_pushed_repo_downloads_back(hub, pushed_run, tmp_path):
    """What arrived is a Hub repo like any other: huggingface_hub's download (a process of its own, which reads
    HF_ENDPOINT at import) gives back the run's own bytes."""
    import subprocess

    out, _ = pushed_run
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1")
    code = f"from huggingface_hub import snapshot_download; print(snapshot_download('me/tc-smoke', cache_dir={str(tmp_path)!r}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _tree(Path(done.stdout.strip().splitlines()[-1])) == _expected(out)


def test_push_dir_private_and_again(hub, pushed_run, cli):
    out, _ = pushed_run
    result = cli("push", out, "me/again", "--private")
    assert result.exit_code == 0, result.stderr
    assert "pushed" in result.stdout and "me/again" in result.stdout
    assert _tree(_snapshot(hub, "me/again")) == _expected(out)
    assert hub.created["me/again"]["visibility"] == "private"
    # a second push of the same run to the same repo changes nothing there and still succeeds
    commits = len(hub.commits)
    assert cli("push", out, "me/again").exit_code == 0
    assert len(hub.commits) == commits


def test_a_failed_gate_pushes_nothing(hub, cli, tmp_path, one_torch_thread):
    before = list(hub.requests)
    result = cli("finetune", "text-classification", "--smoke", "-o", tmp_path / "run", "--set",
                 "train.max_steps=2", "--gate", "accuracy>=2", "--push-to-hub", "me/gated")
    assert result.exit_code == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("gate failed: accuracy") and lines[-1] == "nothing was pushed to me/gated: a gate failed"
    # not one request for it reached the Hub (the server logs a request after answering it: the previous test's last
    # one may land in the list during this test, so only this repo's are looked for)
    assert "me/gated" not in hub.created and not [r for r in hub.requests[len(before):] if "me/gated" in r]
    assert (tmp_path / "run" / "model.safetensors").is_file()  # the run itself is kept


def test_resume_of_a_finished_run_pushes_nothing(hub, cli, pushed_run, one_torch_thread):
    out, _ = pushed_run
    before = _tree(out)
    result = cli("finetune", "text-classification", "--smoke", "-o", out, "--set", "train.max_steps=4", "--resume",
                 "--push-to-hub", "me/resumed")
    assert result.exit_code == 0, result.stderr
    assert f"nothing was pushed to me/resumed (nothing was trained); push the finished run with `taskcli push {out} " \
           "me/resumed`" in result.stderr
    assert "me/resumed" not in hub.created and _tree(out) == before


def test_no_token_is_one_line_before_any_training(hub, cli, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        _online(mp, hub.url, token=None)
        result = cli("finetune", "text-classification", "--smoke", "-o", tmp_path / "run", "--push-to-hub", "me/x")
        assert_clean_error(result, "not logged in", "hf auth login", "HF_TOKEN")
        assert not (tmp_path / "run").exists()  # said before anything ran
        assert_clean_error(cli("push", tmp_path, "me/x"), "not a finished taskcli run")


def test_push_refuses_what_is_not_a_finished_run(hub, cli, tmp_path, pushed_run):
    assert_clean_error(cli("push", tmp_path / "missing", "me/x"), "no such directory")
    (tmp_path / "config.json").write_text("{}")
    assert_clean_error(cli("push", tmp_path, "me/x"), "not a finished taskcli run", "recipe.yaml")
    out, _ = pushed_run
    running = tmp_path / "running"
    running.mkdir()
    for name in ("config.json", "recipe.yaml"):
        (running / name).write_bytes((out / name).read_bytes())
    (running / ".taskcli-run").write_text(json.dumps({"status": "running"}))
    assert_clean_error(cli("push", running, "me/x"), "did not finish")
    assert_clean_error(cli("push", out, "me/x/y"), "not a Hub repo id")
    assert "me/x" not in hub.created


@pytest.mark.parametrize("fail, token, fragments", [
    ({"create": 403}, TOKEN, ["may not write to me/refused", "403"]),
    ({"commit": 500}, TOKEN, ["the Hub failed while committing to me/refused", "500", "nothing was committed"]),
    ({}, "hf_wrong_token", ["did not accept the token", "401", "hf auth login"]),
])
def test_an_upload_error_is_one_line(cli, tmp_path, pushed_run, fail, token, fragments):
    out, _ = pushed_run
    server = ReplayHub(tmp_path, token=TOKEN, fail=fail)
    with server as url, pytest.MonkeyPatch.context() as mp:
        _online(mp, url, token)
        result = cli("push", out, "me/refused")
    assert_clean_error(result, *fragments)
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not server.commits


def test_unreachable_hub_is_one_line(cli, pushed_run):
    out, _ = pushed_run
    with pytest.MonkeyPatch.context() as mp:
        _online(mp, "http://127.0.0.1:9")
        assert_clean_error(cli("push", out, "me/x"), "cannot reach the Hub at http://127.0.0.1:9")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest's offline tests are untouched
