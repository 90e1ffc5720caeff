"""Shared test setup: offline Hugging Face libraries, the CLI runner, real-format sample data."""

import hashlib
import json
import os
import shutil

# Before any Hugging Face import: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The run report (plots, worst examples) costs seconds per fine-tune; the tests of the report turn it on (report_on).
os.environ["TASKCLI_REPORT"] = "0"
# Under pytest-xdist (make test: -n 2) each worker gets its share of the cores, before torch is imported: two
# workers each spinning the default thread per core on 2 cores made tiny trainings several times slower.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tiers import FULL_TIER, slow_tier  # noqa: E402,F401 - the two test tiers (tiers.py), for the test modules

REPO = Path(__file__).resolve().parent.parent
# Real-format sample files (unchanged upstream copies; sources and licenses in data/README.md).
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def realdata() -> Path:
    assert DATA.is_dir(), f"real-format samples expected at {DATA}"
    return DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are overhead-bound: one intra-op thread is faster, and on a busy 2-core machine two
    spinning OpenMP threads per process made a smoke fine-tune ~15x slower (60 s vs 3.6 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Under pytest-xdist (make test: --dist loadfile) files are handed to the workers in this order: the slowest
# (measured) first, so no long file starts last and leaves the other worker idle at the end. The Hub replay builds
# its cache and runs two driver processes; test_training launches two-process trainings. test_detection trains the
# smoke DETR before test_export reaches its object-detection case: the other way round, the two workers reached it
# together and one waited on the other's `trained` lock (each took ~44 s over it in one run).
SLOW_FIRST = ("test_replay.py", "test_training.py", "test_detection.py", "test_replay_export.py", "test_export.py",
              "test_audio_tasks.py", "test_tune.py",
              "test_serve_faults.py", "test_preprocess.py", "test_provenance.py", "test_serve.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a plain run keeps the file order
        rank = {name: i for i, name in enumerate(SLOW_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


class Cli:
    """Runs `taskcli ...` in-process; returns click's Result (stdout, stderr, exit_code)."""

    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args, input=None):
        from taskcli.cli import app

        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


def shared_dir(tmp_path_factory) -> Path:
    """A folder all pytest-xdist workers of this run share (the run's own temp folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained(tmp_path_factory, cli):
    """finetune --smoke once per (task, recipe, extra args) for the whole run, shared by eval/infer/parity tests.
    Under pytest-xdist the first worker to ask trains it while the others wait on its lock, then all read it."""
    from filelock import FileLock

    root = shared_dir(tmp_path_factory) / "trained"
    root.mkdir(exist_ok=True)

    def get(task: str, recipe: str | None = None, *extra) -> Path:
        key = "\0".join([task, recipe or "", *map(str, extra)])
        out = root / f"{task}-{recipe or 'default'}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        done = out.with_name(out.name + ".done")  # beside the model folder, so its listing stays the run's own
        with FileLock(out.with_name(out.name + ".lock")):
            if not done.is_file():
                shutil.rmtree(out, ignore_errors=True)  # a failed attempt's leftovers
                args = ["finetune", task, "--smoke", "--output-dir", out, "--overwrite", *extra]
                if recipe:
                    args += ["--recipe", recipe]
                result = cli(*args)
                assert result.exit_code == 0, result.stderr
                done.touch()
        return out

    return get


# Imports infer does not need, whatever the model: training (Trainer, TrainingArguments, peft via the callbacks),
# data loading, metrics and the run report. A start-up guard: what a one-line infer loads, not how long it takes.
NOT_FOR_INFER = ("datasets", "evaluate", "sklearn", "matplotlib", "peft", "transformers.training_args",
                 "transformers.trainer", "transformers.trainer_utils", "taskcli.progress", "taskcli.trainer",
                 "taskcli.report", "taskcli.finetune")


def modules_loaded(args: list, watch: tuple[str, ...]) -> list[str]:
    """Which of `watch` a `taskcli ARGS` run in a fresh interpreter imported (it must exit 0)."""
    import subprocess
    import sys

    code = ("import json, sys; from taskcli.cli import app\n"
            f"try:\n    app({[str(a) for a in args]!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"print(json.dumps([m for m in {list(watch)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def assert_clean_error(result, *fragments):
    """One `error:` line on stderr naming the problem, non-zero exit, no traceback."""
    assert result.exit_code != 0
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert lines and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f.lower() in result.stderr.lower(), result.stderr


@pytest.fixture
def report_on(monkeypatch):
    """Fine-tunes in this test write their run report (conftest turns it off for the others)."""
    monkeypatch.setenv("TASKCLI_REPORT", "1")


def same_rows(a, b, tol: float = 1e-5) -> bool:
    """Equal JSON-like values, floats within `tol`: scores move in the 7th digit with other batch mates (padding)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_rows(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_rows(x, y, tol) for x, y in zip(a, b))
    return a == b
