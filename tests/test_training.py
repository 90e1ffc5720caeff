"""Training mechanics: data-parallel launch, gradient accumulation, resume, outputs that transformers loads."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, slow_tier

SHORT = ["--set", "train.eval_strategy=no", "--set", "train.epochs=4"]


def _finetune(out, *extra, processes=1, with_stderr=False):
    cmd = [sys.executable, "-m", "taskcli", "finetune", "ner", "--smoke", "--output-dir", str(out), "--json",
           "--num-processes", str(processes), *SHORT, *extra]
    temp = out.parent / "temp"  # the run's temp dir: what the launch leaves there is looked at below
    temp.mkdir()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env=dict(os.environ, TMPDIR=str(temp)))
    assert done.returncode == 0, done.stderr[-2000:]
    # torch's compile cache (torchinductor_USER) is one folder every run reuses, by its design; nothing else stays
    left = sorted(p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_"))
    assert not left, f"left in the temp dir: {left}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return (result, done.stderr) if with_stderr else result


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The one-process run at batch 8 that the two-process and two-node runs are compared with, run once per
    weights setting: (its output folder, its --json result)."""
    runs = {}

    def get(*weights):
        if weights not in runs:
            out = tmp_path_factory.mktemp("one") / "one"
            runs[weights] = out, _finetune(out, "--set", "train.batch_size=8", *weights)
        return runs[weights]

    return get


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The two-process run at batch 4 a process (global batch 8), once per weights setting: (its output folder, its
    --json result, its stderr)."""
    runs = {}

    def get(*weights):
        if weights not in runs:
            out = tmp_path_factory.mktemp("two") / "two"
            runs[weights] = (out, *_finetune(out, "--set", "train.batch_size=4", *weights, processes=2,
                                             with_stderr=True))
        return runs[weights]

    return get


# class weights under DDP (the same counts on every process): the slow tier; one process's weighted loss is
# test_gradient_accumulation_matches_the_full_batch[class-weights] below, every run
@pytest.mark.parametrize("weights", [[], pytest.param(["--class-weights", "auto"], marks=slow_tier)],
                         ids=["plain", "class-weights"])
def test_two_processes_match_one_at_the_same_global_batch(cli, weights, one_process, two_processes):
    one_dir, one = one_process(*weights)
    two_dir, two, _ = two_processes(*weights)
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["global_batch_size"] == two["global_batch_size"] == 8
    for name in ("precision", "recall", "f1", "accuracy"):
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], abs=1e-4), name
    # The eval loss logged during a DDP run averages per-shard batches, so compare the two models on equal
    # footing: the same single-process eval of each saved model.
    evals = [json.loads(cli("eval", "ner", "--model", d, "--smoke", "--json").stdout)["metrics"]
             for d in (one_dir, two_dir)]
    for name in ("loss", "precision", "recall", "f1", "accuracy"):
        assert evals[1][name] == pytest.approx(evals[0][name], abs=1e-4), name


# ~25 s: a third two-process training; the choice of the setting is checked every run (the test below)
@slow_tier
def test_ddp_skips_the_search_for_unused_weights_the_model_does_not_have(tmp_path, two_processes):
    """NER's DistilBERT uses every weight: the task's setting (find_unused_parameters off) trains to the same loss
    and metrics as the Trainer's default (on), without its warning per process and its extra pass over the graph."""
    _, ours, quiet = two_processes()  # the task's setting: the plain two-process run above
    theirs, noisy = _finetune(tmp_path / "default", "--set", "train.batch_size=4", "--set",
                              "train.trainer_args.ddp_find_unused_parameters=true", processes=2, with_stderr=True)
    assert noisy.count("find_unused_parameters=True was specified in DDP constructor") == 2  # one per process
    assert "find_unused_parameters" not in quiet
    assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-6)
    for name in ("precision", "recall", "f1", "accuracy"):
        assert ours["metrics"][name] == pytest.approx(theirs["metrics"][name], abs=1e-6), name


@pytest.mark.parametrize("declared, config, expected", [
    (False, {}, False), (True, {}, True), (False, {"layerdrop": 0.1}, True), (False, {"encoder_layerdrop": 0.0}, False),
    (False, {"decoder_layerdrop": 0.2}, True), (lambda run, model: model.config.universal, {"universal": True}, True),
    (lambda run, model: model.config.universal, {"universal": False}, False),
])
def test_ddp_looks_for_unused_weights_where_a_step_can_skip_some(declared, config, expected):
    from types import SimpleNamespace

    from taskcli.training_args import ddp_arguments

    run = SimpleNamespace(task=SimpleNamespace(ddp_find_unused_parameters=declared))
    model = SimpleNamespace(config=SimpleNamespace(**config))
    assert ddp_arguments(run, model) == {"ddp_find_unused_parameters": expected}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_nodes(out, per_node=lambda rank: []):
    """`taskcli finetune` under torchrun as two one-process "nodes" on 127.0.0.1 (gloo), as a user would launch it
    on two machines; returns each node's (returncode, stdout, stderr)."""
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
         "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
         # its log folder in the test's own: left to itself torchrun leaves an empty /tmp/torchelastic_* per run
         "--log-dir", str(out.parent / f"torchrun-{rank}"),
         "-m", "taskcli", "finetune", "ner", "--smoke", "--output-dir", str(out), "--json", *SHORT,
         "--set", "train.batch_size=4", *per_node(rank)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) for rank in (0, 1)]
    results = []
    for proc in procs:
        out_text, err_text = proc.communicate(timeout=600)
        results.append((proc.returncode, out_text, err_text))
    return results


# ~32 s: the two-process run's metrics are compared with one process every run, and the two-node launch (torchrun's
# rendezvous across "machines") runs every run in the test below; the slow tier (CI) trains on two nodes too
@slow_tier
def test_two_nodes_match_one_process_at_the_same_global_batch(tmp_path, one_process):
    _, one = one_process()
    (rc0, out0, err0), (rc1, out1, err1) = _two_nodes(tmp_path / "two")
    assert rc0 == 0 and rc1 == 0, err0[-2000:] + err1[-2000:]
    two = json.loads(out0.strip().splitlines()[-1])
    assert two["processes"] == 2 and two["global_batch_size"] == one["global_batch_size"] == 8
    for name in ("precision", "recall", "f1", "accuracy"):
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], abs=1e-4), name
    assert not out1.strip(), "only the main process prints the result"
    assert (tmp_path / "two" / "model.safetensors").is_file() and (tmp_path / "two" / "recipe.yaml").is_file()


def test_nodes_that_resolve_different_runs_stop_before_training(tmp_path):
    results = _two_nodes(tmp_path / "two", lambda rank: ["--set", f"train.learning_rate={1e-4 * (rank + 1)}"])
    for rc, _, err in results:  # our one line from each process (torchrun then reports the failed child its way)
        ours = [line for line in err.splitlines() if line.startswith("error: ")]
        assert rc != 0 and len(ours) == 1, err[-1500:]
        assert ours[0].startswith("error: process 1 resolved a different run than process 0: recipe.train."
                                  "learning_rate is 0.0002 there, 0.0001 on process 0"), ours[0]
    assert not (tmp_path / "two" / "model.safetensors").exists()


@pytest.mark.parametrize("weights", [[], ["--class-weights", "auto"]], ids=["plain", "class-weights"])
def test_gradient_accumulation_matches_the_full_batch(cli, tmp_path, weights):
    full = json.loads(cli("finetune", "ner", "--smoke", "--output-dir", tmp_path / "a", "--json", *SHORT,
                          "--set", "train.batch_size=8", *weights).stdout)
    accum = json.loads(cli("finetune", "ner", "--smoke", "--output-dir", tmp_path / "b", "--json", *SHORT,
                           "--set", "train.batch_size=4", "--set", "train.gradient_accumulation_steps=2",
                           *weights).stdout)
    assert accum["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert accum["metrics"]["loss"] == pytest.approx(full["metrics"]["loss"], abs=1e-5)


def test_resume_from_the_newest_complete_checkpoint(cli, tmp_path):
    keep = ["--set", "train.eval_strategy=epoch", "--set", "train.epochs=4", "--set", "train.save_total_limit=10",
            "--set", "eval.metric_for_best_model=loss"]
    full = json.loads(cli("finetune", "ner", "--smoke", "--output-dir", tmp_path / "full", "--json", *keep).stdout)
    # An interrupted run: checkpoints of epochs 1-2 complete, epoch 3's half-written (no trainer_state.json).
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    steps = sorted(int(p.name.split("-")[1]) for p in part.glob("checkpoint-*"))
    assert len(steps) == 4
    shutil.rmtree(part / f"checkpoint-{steps[3]}")
    (part / f"checkpoint-{steps[2]}" / "trainer_state.json").unlink()
    for f in ("model.safetensors", "metrics.json", ".taskcli-run"):  # a finished run's (its marker says so)
        (part / f).unlink()
    resumed = cli("finetune", "ner", "--smoke", "--output-dir", part, "--resume", "--json", *keep)
    assert resumed.exit_code == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["metrics"]["loss"] == pytest.approx(full["metrics"]["loss"], abs=1e-6)
    state = json.loads((part / f"checkpoint-{steps[3]}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps[3]


def test_output_dir_loads_with_plain_transformers(trained):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    out = trained("token-classification")
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert set(model.config.id2label.values()) == {"O", "B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG"}
    assert AutoTokenizer.from_pretrained(out).is_fast
    assert pipeline("token-classification", model=str(out))("Alice Martin works for Globex .")
    card = (out / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "| f1 |" in card
    recipe = (out / "recipe.yaml").read_text()
    assert recipe.startswith("# The recipe of the run in this folder") and "type: distilbert" in recipe


# Segmentation's maps cross processes as detection's boxes do (objects, not a tensor gather): the slow tier adds it
@pytest.mark.parametrize("task", ["object-detection", pytest.param("image-segmentation", marks=slow_tier)])
def test_vision_eval_under_two_processes(cli, tmp_path, task):
    """Per-image targets of different sizes (detection boxes) cross processes as objects, not a tensor gather
    (which would abort); the metrics of the DDP run's final eval equal a single-process eval of its model."""
    cmd = [sys.executable, "-m", "taskcli", "finetune", task, "--smoke", "--output-dir", str(tmp_path / "m"), "--json",
           "--num-processes", "2", "--set", "smoke.train.max_steps=20"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = json.loads(done.stdout.strip().splitlines()[-1])
    single = json.loads(cli("eval", task, "--model", tmp_path / "m", "--smoke", "--json").stdout)["metrics"]
    assert ddp["processes"] == 2
    key = "map" if task == "object-detection" else "mean_iou"
    assert ddp["metrics"][key] == pytest.approx(single[key], abs=1e-3), (ddp["metrics"], single)


# the gather is the Seq2SeqTrainer's, one code path for both; Whisper's (60 steps to say words) is the slow tier's
@pytest.mark.parametrize("task, steps", [pytest.param("automatic-speech-recognition", 60, marks=slow_tier),
                                         ("translation", 30)], ids=["whisper", "translation"])
def test_generated_eval_under_two_processes_scores_each_row_once(cli, tmp_path, task, steps):
    """Seq2SeqTrainer gathers generated ids with a plain all-gather, which keeps the rows accelerate repeats to give
    both processes an equal last batch: 15 rows at 2 per batch scored 16 hypotheses (Whisper's WER refused 15
    references and 16 hypotheses; BLEU counted a sentence twice). The DDP run's final metrics equal a
    single-process eval of its saved model on the same 15 rows. (Not the loss: the Trainer averages per-batch
    means, and the batches differ.)"""
    rows = ["--set", "smoke.max_samples=15", "--set", "eval.batch_size=2"]  # odd: the last batch is uneven
    cmd = [sys.executable, "-m", "taskcli", "finetune", task, "--smoke", "--output-dir", str(tmp_path / "m"), "--json",
           "--num-processes", "2", "--set", f"smoke.train.max_steps={steps}", *rows]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = json.loads(done.stdout.strip().splitlines()[-1])
    single = json.loads(cli("eval", task, "--model", tmp_path / "m", "--smoke", "--json", *rows).stdout)
    assert ddp["processes"] == 2 and single["samples"] == 15
    scored = {k: v for k, v in ddp["metrics"].items() if k != "loss"}
    assert scored.keys() == {k for k in single["metrics"] if k != "loss"}
    for name, value in scored.items():
        assert value == pytest.approx(single["metrics"][name], abs=1e-6), (name, ddp["metrics"], single["metrics"])


@pytest.mark.parametrize("name, uses", [("GPT2LMHeadModel", True), ("ViTForImageClassification", True),
                                        ("Wav2Vec2ForCTC", True), ("DistilBertForTokenClassification", False),
                                        ("T5ForConditionalGeneration", False),
                                        ("Wav2Vec2ForSequenceClassification", False)])
def test_which_models_compute_their_loss_through_loss_function(name, uses):
    """Read from the forward's bytecode (through its decorators); its source text says the same. The Trainer's loss
    kwargs are switched off for the models that average their loss inline (model_loading.load_processor_and_model)."""
    import inspect

    import transformers

    from taskcli.model_loading import model_forward_uses_loss_function

    cls = getattr(transformers, name)
    assert model_forward_uses_loss_function(cls.__new__(cls)) is uses
    assert ("self.loss_function" in inspect.getsource(cls.forward)) is uses
