"""taskcli tune: Optuna trials as ordinary smoke runs, the study in SQLite (resumed after kill -9), pruning, best.yaml
that finetune reproduces, the gates on the best trial, the refusals, and the trials of a two-process (torchrun, gloo)
launch in step."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, assert_clean_error, slow_tier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = "tune.space={train.learning_rate: {log_uniform: [1e-4, 1e-2]}, train.batch_size: {choice: [4, 8]}}"
# a few steps with an evaluation every two, so that each trial reports to the pruner and stays a few seconds
SMALL = ["--smoke", "--set", SPACE, "--set", "train.max_steps=4", "--set", "train.eval_steps=2",
         "--set", "train.eval_strategy=steps"]


def test_trials_are_runs_and_best_yaml_reproduces_the_best_one(cli, tmp_path):
    out = tmp_path / "study"
    result = cli("tune", "text-cls", *SMALL, "--trials", "3", "-o", out, "--gate", "accuracy>=0", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["finished"] == 3 and [r["trial"] for r in report["trials"]] == [0, 1, 2]
    assert report["metric"] == "accuracy" and report["direction"] == "max" and report["gates_failed"] == []
    for row in report["trials"]:
        saved = yaml.safe_load((out / f"trial-{row['trial']:03d}" / "recipe.yaml").read_text())
        assert saved["train"]["learning_rate"] == pytest.approx(row["params"]["train.learning_rate"], rel=1e-12)
        assert saved["train"]["batch_size"] == row["params"]["train.batch_size"] and saved["tune"] is None
        assert 1e-4 <= row["params"]["train.learning_rate"] <= 1e-2 and row["state"] in ("complete", "pruned")
    best = report["best"]
    values = [r["value"] for r in report["trials"] if r["state"] == "complete"]
    assert best["value"] == max(values) and best["output_dir"] == str(out / f"trial-{best['trial']:03d}")
    assert {p.rsplit("/", 1)[-1] for p in report["plots"]} == {"history.png", "importance.png"}
    assert all(os.path.getsize(p) > 1000 for p in report["plots"])
    assert (out / "study.db").is_file()

    again = cli("finetune", "text-cls", "--recipe", out / "best.yaml", "-o", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.stderr
    redone = json.loads(again.stdout)["metrics"]
    trial = json.loads((out / f"trial-{best['trial']:03d}" / "metrics.json").read_text())
    for name in ("loss", "accuracy", "f1"):
        assert redone[name] == pytest.approx(trial[name], abs=1e-6), name

    # the finished study again: no new trial, the same best, and a gate it fails exits 3 with its line
    gated = cli("tune", "text-cls", *SMALL, "--trials", "3", "-o", out, "--resume", "--gate", "accuracy>=1.01")
    assert gated.exit_code == 3 and "gate failed: accuracy" in gated.stderr
    assert "tune: trial" not in gated.stderr and "best: trial" in gated.stdout
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000", "trial-001", "trial-002"]
    assert_clean_error(cli("tune", "text-cls", *SMALL, "--trials", "3", "-o", out), "holds a tune study", "--resume")
    from filelock import FileLock

    with FileLock(out / ".taskcli-tune.lock"):  # another tune at work on the study
        busy = cli("tune", "text-cls", *SMALL, "--trials", "4", "-o", out, "--resume")
    assert_clean_error(busy, "in use by another taskcli tune")
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000", "trial-001", "trial-002"]


def test_kill_9_mid_study_then_resume_keeps_the_finished_trials(cli, tmp_path):
    out, log = tmp_path / "study", tmp_path / "stderr.txt"
    # TMPDIR: a killed run cannot remove its temp folders (the smoke model's); they stay in the test's own
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "taskcli", "tune", "text-cls", *SMALL, "--trials", "3",
                                 "-o", str(out)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 240
    while "tune: trial 0 complete" not in log.read_text() and "tune: trial 0 pruned" not in log.read_text():
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.loads((out / "trial-000" / "metrics.json").read_text())
    made = (out / "trial-000" / "metrics.json").stat().st_mtime_ns

    result = cli("tune", "text-cls", *SMALL, "--trials", "3", "-o", out, "--resume", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["trial"]: r for r in report["trials"]}
    assert report["finished"] == 3
    assert rows[0]["metrics"]["loss"] == first["loss"] and rows[0]["state"] in ("complete", "pruned")
    assert (out / "trial-000" / "metrics.json").stat().st_mtime_ns == made  # kept, not trained again
    killed = [r for r in report["trials"] if r["state"] == "fail"]
    assert len(killed) <= 1  # the trial the kill cut short, if it had begun
    if killed:  # the parameters it had drawn (a kill between two draws leaves some) are tried again next
        retried = rows[killed[0]["trial"] + 1]
        assert killed[0]["params"].items() <= retried["params"].items() and retried["state"] in ("complete", "pruned")


def test_the_pruning_callback_stops_a_trial_behind_the_others():
    import optuna
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from taskcli.tune import pruning_callback

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    leader = study.ask()
    leader.report(0.9, step=2)
    study.tell(leader, 0.9)
    args = TrainingArguments(output_dir="unused", metric_for_best_model="accuracy", use_cpu=True, report_to=[])

    def evaluated(value):
        trial = study.ask()
        callback, control, state = pruning_callback(trial, None, "f1"), TrainerControl(), TrainerState()
        callback.on_train_begin(args, state, control)
        state.global_step = 2
        callback.on_evaluate(args, state, control, metrics={"eval_accuracy": value, "eval_f1": 1.0})
        return callback, control

    behind, stopped = evaluated(0.1)
    assert behind.metric == "accuracy" and behind.pruned and stopped.should_training_stop
    ahead, going = evaluated(0.95)
    assert not ahead.pruned and not going.should_training_stop


def test_a_space_key_that_is_not_a_recipe_field_is_named(cli, tmp_path):
    result = cli("tune", "text-cls", "--smoke", "--trials", "1", "-o", tmp_path / "s", "--set",
                 "tune.space={train.learnin_rate: {log_uniform: [1e-4, 1e-2]}, train.lora.r: {int: [4, 2]}}")
    assert_clean_error(result, "'train.learnin_rate' (did you mean 'train.learning_rate'?) is not a recipe field")
    assert "int: the low end 4 is not below the high end 2" in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_recipe_without_a_search_and_a_metric_without_a_direction_are_refused(cli, tmp_path):
    assert_clean_error(cli("tune", "text-cls", "--smoke", "--trials", "1", "-o", tmp_path / "a"),
                       "has no tune: section", "tune.space")
    assert_clean_error(cli("tune", "text-cls", *SMALL, "--set", "tune.metric=f1", "--trials", "1",
                           "-o", tmp_path / "b"), "tune.direction", "max or min")


def test_a_folder_that_is_not_a_study_is_never_written(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--resume"]):
        result = cli("tune", "text-cls", *SMALL, "--trials", "1", "-o", mine, *extra)
        assert_clean_error(result, str(mine), "no tune study")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"


def test_without_optuna_the_error_says_what_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    result = cli("tune", "text-cls", *SMALL, "--trials", "1", "-o", tmp_path / "s")
    assert_clean_error(result, "needs optuna", "pip install 'taskcli[tune]'")


def test_timeout_starts_no_trial_after_it_passed(cli, tmp_path):
    result = cli("tune", "text-cls", *SMALL, "--trials", "3", "--timeout", "0", "-o", tmp_path / "s", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["finished"] == 1  # checked between trials: the first one runs
    assert "--timeout 0 s passed: 1 of 3 trials finished" in result.stderr


def test_a_trial_behind_the_others_is_pruned_and_its_run_stops_early(cli, tmp_path):
    # judged by the eval loss (it differs between learning rates where the smoke sample's accuracy does not); the
    # random sampler's draws are seeded by train.seed, and after one finished trial the median pruner may stop one
    result = cli("tune", "text-cls", "--smoke", "--set",
                 "tune.space={train.learning_rate: {log_uniform: [1e-7, 1e-2]}}", "--set", "tune.metric=loss",
                 "--set", "tune.startup_trials=1", "--set", "tune.sampler=random",
                 "--set", "train.max_steps=12", "--set", "train.eval_steps=3", "--set", "train.eval_strategy=steps",
                 "--trials", "3", "-o", tmp_path / "s", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["trials"]
    assert rows[0]["state"] == "complete" and "pruned" in [r["state"] for r in rows[1:]]
    for row in rows:
        marker = json.loads((tmp_path / "s" / f"trial-{row['trial']:03d}" / ".taskcli-run").read_text())
        assert marker["status"] == "finished"  # an ordinary run folder, whose training stopped when pruned
        assert (marker["global_step"] < 12) == (row["state"] == "pruned"), row


def _torchrun_tune(tmp_path, *args):
    """`taskcli tune text-cls ... --json` under torchrun as 2 processes on this machine (gloo, one thread each);
    returns torchrun's exit status and each process's (stdout, stderr)."""
    logs = tmp_path / f"logs-{len(list(tmp_path.glob('logs-*')))}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "--log-dir", str(logs), "--redirects", "3", "-m", "taskcli", "tune", "text-cls",
                             *map(str, args), "--json"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=300)
        hung = False
    except subprocess.TimeoutExpired:  # processes out of step wait in a collective for ever
        proc.terminate()  # torchrun stops its workers (each in a session of its own) on SIGTERM
        proc.wait(timeout=60)
        hung = True
    ranks = [tuple(next(logs.glob(f"*/attempt_0/{rank}/{name}.log")).read_text() for name in ("stdout", "stderr"))
             for rank in (0, 1)]
    assert not hung, f"the processes hung: {ranks[0][1][-1500:]}"
    return proc.returncode, ranks


def _study_trials(folder):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}")
    return optuna.load_study(study_name="taskcli-tune", storage=storage).get_trials(deepcopy=False)


def test_two_processes_run_each_trial_once_and_best_yaml_repeats_it_in_one(cli, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "study"
    rc, [(out0, err0), (out1, err1)] = _torchrun_tune(
        tmp_path, "--smoke", "--set", "tune.space={train.learning_rate: {log_uniform: [1e-4, 1e-2]}}",
        "--set", "train.batch_size=4", "--trials", "2", "-o", out)  # the smoke recipe's steps: accuracies differ
    assert rc == 0, err0[-2000:] + err1[-2000:]  # both processes exited 0
    assert out1 == "" and "tune: trial" not in err1, err1[-2000:]  # process 0 alone speaks for the study
    report = json.loads(out0.strip().splitlines()[-1])
    assert report["finished"] == 2 and [r["trial"] for r in report["trials"]] == [0, 1]
    assert [t.state.name for t in _study_trials(out)] == ["COMPLETE", "COMPLETE"]  # 2 trials, not one per process
    assert len({r["value"] for r in report["trials"]}) == 2  # (so that the best one is a choice)
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000", "trial-001"]
    for row in report["trials"]:
        run = out / f"trial-{row['trial']:03d}"
        saved = yaml.safe_load((run / "recipe.yaml").read_text())
        assert saved["train"]["learning_rate"] == pytest.approx(row["params"]["train.learning_rate"], rel=1e-12)
        assert saved["provenance"]["processes"] == 2 and saved["tune"] is None
        assert json.loads((run / ".taskcli-run").read_text())["status"] == "finished"

    # the best trial again in one process at the same global batch (2 x 4): the same model and metrics
    best = out / f"trial-{report['best']['trial']:03d}"
    again = cli("finetune", "text-cls", "--recipe", out / "best.yaml", "--set", "train.batch_size=8",
                "-o", tmp_path / "one", "--json")
    assert again.exit_code == 0, again.stderr
    one = json.loads(again.stdout)
    trial = json.loads((best / "metrics.json").read_text())
    assert one["processes"] == 1 and one["global_batch_size"] == 8
    assert one["metrics"][report["metric"]] == pytest.approx(report["best"]["value"], abs=1e-4)
    for name in ("accuracy", "f1"):
        assert one["metrics"][name] == pytest.approx(trial[name], abs=1e-4), name
    weights = [load_file(run / "model.safetensors") for run in (best, tmp_path / "one")]
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) <= 1e-4


@slow_tier  # ~100 CPU-s; one-process pruning and --resume, and two-process trials, are in the everyday tier
def test_two_processes_stop_a_pruned_trial_together_then_resume_with_a_timeout(tmp_path):
    # as the one-process pruning test: trial 0 (random sampler, seeded) completes; trial 1 is behind it at step 3
    out = tmp_path / "study"
    search = ["--smoke", "--set", "tune.space={train.learning_rate: {log_uniform: [1e-7, 1e-2]}}",
              "--set", "tune.metric=loss", "--set", "tune.startup_trials=1", "--set", "tune.sampler=random",
              "--set", "train.max_steps=12", "--set", "train.eval_steps=3", "--set", "train.eval_strategy=steps",
              "--set", "train.batch_size=4", "-o", out]
    rc, [(out0, err0), (out1, err1)] = _torchrun_tune(tmp_path, *search, "--trials", "2")
    assert rc == 0, err0[-2000:] + err1[-2000:]  # a process still training would have hung the other one
    rows = json.loads(out0.strip().splitlines()[-1])["trials"]
    assert [r["state"] for r in rows] == ["complete", "pruned"] and out1 == ""
    steps = [json.loads((out / f"trial-{n:03d}" / ".taskcli-run").read_text())["global_step"] for n in (0, 1)]
    assert steps[0] == 12 and steps[1] < 12

    # --resume continues the study; --timeout 0 (process 0's clock) lets one more trial run, then every process stops
    rc, [(out0, err0), (out1, err1)] = _torchrun_tune(tmp_path, *search, "--trials", "5", "--resume", "--timeout", "0")
    assert rc == 0, err0[-2000:] + err1[-2000:]
    assert json.loads(out0.strip().splitlines()[-1])["finished"] == 3 and out1 == ""
    assert "--timeout 0 s passed: 3 of 5 trials finished" in err0
    assert len(_study_trials(out)) == 3 and sorted(p.name for p in out.glob("trial-*"))[-1] == "trial-002"


def test_a_refusal_on_process_0_stops_every_process_with_its_line(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, ranks = _torchrun_tune(tmp_path, *SMALL, "--trials", "1", "-o", mine)
    assert rc != 0
    for out, err in ranks:  # process 0 found it (it alone owns the folder) and told process 1: nobody waits
        ours = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(ours) == 1 and "no tune study" in ours[0] and out == "", err[-1500:]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
