"""The garbage collector's settings at start-up and around training (taskcli/collector.py): what is out of the
collector's sight when, and that nothing stays out of it (no object kept for good)."""

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from conftest import REPO


class Node:
    """A cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


def test_training_hides_older_objects_then_gives_them_back():
    from taskcli import collector

    before = gc.get_threshold()
    node = Node()
    ref = weakref.ref(node)
    with collector.training():
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert ref() is not None  # older than the loop: not walked inside it
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    gc.collect()
    assert ref() is None  # and freed once the loop is over


def test_pause_then_resume_restores_the_thresholds_once():
    from taskcli import collector

    before = gc.get_threshold()
    collector.pause()
    try:
        assert gc.get_threshold()[0] == collector.STARTUP_THRESHOLD and gc.isenabled()
        collector.pause()  # a second pause keeps the first's thresholds to go back to
    finally:
        collector.resume()
    assert gc.get_threshold() == before
    collector.resume()  # nothing paused: no change
    assert gc.get_threshold() == before
    gc.unfreeze()


def test_the_trainers_loop_runs_with_the_loaded_objects_frozen(cli, tmp_path, one_torch_thread):
    """finetune wraps trainer.train(): its gc.collect() (Accelerate's free_memory) walks only the loop's objects."""
    from transformers import TrainerCallback

    from taskcli.finetune import finetune

    seen = []

    class Watch(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen.append(gc.get_freeze_count())

    finetune("token-classification", smoke=True, callbacks=[Watch()],
             sets=[f"train.output_dir={tmp_path / 'out'}", "train.max_steps=2"])
    assert seen and seen[0] > 100_000, seen  # the libraries, the model and the data
    assert gc.get_freeze_count() == 0


def test_a_taskcli_process_collects_as_usual_once_loaded(trained, tmp_path):
    """`taskcli infer` (cli.run) starts paused and is back on Python's thresholds after loading the model, with the
    start-up's objects frozen."""
    model = trained("token-classification")
    # read at exit: infer's process ends in collector.end, which runs the atexit handlers and then leaves
    code = ("import atexit, gc, json, sys\nfrom taskcli import cli\n"
            f"sys.argv = ['taskcli', 'infer', 'ner', '--model', {str(model)!r}, 'Alice works in Paris .', '--json']\n"
            "atexit.register(lambda: print(json.dumps([gc.get_threshold(), gc.get_freeze_count()])))\n"
            "cli.run()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    thresholds, frozen = json.loads(out.stdout.splitlines()[-1])
    assert tuple(thresholds) == gc.get_threshold() and frozen > 100_000


@pytest.fixture(autouse=True)
def _clean_collector():
    yield
    gc.unfreeze()


TEARDOWN_PROBE = """
import atexit, sys, threading, time
from pathlib import Path
from taskcli import collector

class Freed:
    def __del__(self):
        print("teardown ran", flush=True)

kept = Freed()  # a module global: freed in the interpreter's teardown only
atexit.register(lambda: print("atexit ran", flush=True))
threading.Thread(target=lambda: (time.sleep(0.2), Path(sys.argv[2]).write_text("done"))).start()
if sys.argv[1] == "skip":
    collector.skip_teardown()
collector.end(int(sys.argv[3]))
print("end returned", flush=True)
"""


@pytest.mark.parametrize("ask, code", [("skip", 0), ("keep", 0), ("skip", 1)])
def test_end_leaves_out_only_the_teardown_after_a_command_that_asked(tmp_path, ask, code):
    """infer asks (cli.run calls `end`): the atexit handlers and a running thread still finish, the objects are not
    freed one by one. A command that did not ask, or failed, ends as Python always does."""
    marker = tmp_path / "thread.txt"
    done = subprocess.run([sys.executable, "-c", TEARDOWN_PROBE, ask, str(marker), str(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "atexit ran" in done.stdout and marker.read_text() == "done"
    skipped = ask == "skip" and code == 0
    assert ("end returned" not in done.stdout) == skipped
    assert ("teardown ran" not in done.stdout) == skipped


EXECUTOR_PROBE = """
from concurrent.futures import ThreadPoolExecutor
from taskcli import collector

pool = ThreadPoolExecutor(1)  # never shut down: its worker waits until Python's exit wakes it
print(pool.submit(lambda: "work done").result(), flush=True)
collector.skip_teardown()
collector.end(0)
print("end returned", flush=True)
"""


def test_end_leaves_a_waiting_executor_worker_to_pythons_exit():
    """A library's ThreadPoolExecutor left open has an idle worker that only Python's own exit stops: `end` waited for
    it forever (openvino_telemetry's sender, which OpenVINO opens when it reads an ONNX file: bench/openvino_session.py
    never finished). `end` now hands such an exit back to Python."""
    done = subprocess.run([sys.executable, "-c", EXECUTOR_PROBE], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["work done", "end returned"]


def test_infer_asks_to_leave_out_the_teardown(cli, trained):
    from taskcli import collector

    collector._teardown["skip"] = False
    result = cli("infer", "ner", "Alice works in Paris .", "--model", trained("token-classification"), "--json")
    assert result.exit_code == 0, result.stderr
    assert collector._teardown["skip"] is True
    collector._teardown["skip"] = False


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_flush_that_fails_is_left_to_pythons_own_exit():
    """stdout on a full disk: `end` returns instead of raising, and Python's exit reports the failed write."""
    code = ("import sys\nfrom taskcli import collector\nsys.stdout = open(1, 'w', buffering=65536, closefd=False)\n"
            "print('a row')\ncollector.skip_teardown()\n"
            "collector.end(0)\nsys.stderr.write('end returned\\n')")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert "end returned" in done.stderr and done.returncode != 0
