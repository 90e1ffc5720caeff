"""The garbage collector's settings at start-up and around training (taskcli/collector.py): what is out of the
collector's sight when, and that nothing stays out of it (no object kept for good)."""

import gc
import json
import subprocess
import sys
import weakref

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
    code = ("import gc, json, sys\nfrom taskcli import cli\n"
            f"sys.argv = ['taskcli', 'infer', 'ner', '--model', {str(model)!r}, 'Alice works in Paris .', '--json']\n"
            "try:\n    cli.run()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    thresholds, frozen = json.loads(out.stdout.splitlines()[-1])
    assert tuple(thresholds) == gc.get_threshold() and frozen > 100_000


@pytest.fixture(autouse=True)
def _clean_collector():
    yield
    gc.unfreeze()
