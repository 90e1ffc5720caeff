"""train.fsdp / train.deepspeed: validated with the recipe, checked against the model and the machine before any
training, one clear line when they cannot run here. (This machine has no GPU: FSDP and DeepSpeed themselves run
only in the GPU checks; Accelerate has no FSDP on CPU.)"""

import subprocess
import sys

import pytest

from conftest import REPO, assert_clean_error


@pytest.mark.parametrize("sets, fragments", [
    (["train.deepspeed=5"], ["train.deepspeed", "ZeRO stage 5 does not exist"]),
    (["train.deepspeed=fast"], ["train.deepspeed", "neither a ZeRO stage"]),
    (["train.fsdp=true", "train.deepspeed=2"], ["fsdp and deepspeed both shard the model"]),
    (["train.fsdp.wrapp=[BertLayer]"], ["unknown key 'train.fsdp.wrapp'", "did you mean 'wrap'"]),
    (["train.fsdp.state_dict=half"], ["train.fsdp.state_dict"]),
])
def test_sharding_settings_are_validated_with_the_recipe(cli, sets, fragments):
    result = cli("finetune", "ner", "--smoke", "--dry-run", *[a for s in sets for a in ("--set", s)])
    assert_clean_error(result, *fragments)


@pytest.mark.parametrize("value, expected", [("zero3", 3), ("2", 2), ("true", {}), ("false", None)])
def test_sharding_settings_spelled_as_users_do(cli, value, expected):
    import json

    key = "train.fsdp" if value in ("true", "false") else "train.deepspeed"
    result = cli("finetune", "ner", "--smoke", "--dry-run", "--json", "--set", f"{key}={value}")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)["resolved"]["train"][key.split(".")[1]]
    if expected == {}:  # true: the section with its defaults
        assert got["wrap"] is None and got["reshard_after_forward"] is True
    else:
        assert got == expected


def test_fsdp_on_a_machine_without_gpus_says_so(cli, tmp_path):
    result = cli("finetune", "ner", "--smoke", "-o", tmp_path / "out", "--set", "train.fsdp=true")
    assert_clean_error(result, "train.fsdp shards the model across GPUs, and this machine has none",
                       "--num-processes")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_fsdp_wrap_names_a_layer_of_the_model(cli, tmp_path):
    """The default wrap is the architecture's own layer class; a name the model lacks is caught with the choices."""
    result = cli("finetune", "ner", "--smoke", "-o", tmp_path / "out", "--set", "train.fsdp.wrap=[BertLayer]")
    assert_clean_error(result, "train.fsdp.wrap: no layer 'BertLayer' in DistilBertForTokenClassification",
                       "TransformerBlock")


def test_deepspeed_missing_package_then_missing_gpu(cli, tmp_path):
    assert_clean_error(cli("finetune", "ner", "--smoke", "-o", tmp_path / "a", "--set", "train.deepspeed=2"),
                       "needs the deepspeed package", "pip install 'taskcli[deepspeed]'")
    assert_clean_error(cli("finetune", "ner", "--smoke", "-o", tmp_path / "b", "--set",
                           f"train.deepspeed={tmp_path / 'nope.json'}"), "train.deepspeed: no such file")
    # with the package importable (a stand-in on the path), the next missing piece is the GPU
    (tmp_path / "pkg" / "deepspeed").mkdir(parents=True)
    (tmp_path / "pkg" / "deepspeed" / "__init__.py").write_text("")
    done = subprocess.run([sys.executable, "-m", "taskcli", "finetune", "ner", "--smoke", "-o", str(tmp_path / "c"),
                           "--set", "train.deepspeed=3"], capture_output=True, text=True, cwd=REPO,
                          env={**__import__("os").environ, "PYTHONPATH": str(tmp_path / "pkg")}, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-1500:]
    assert lines[0].startswith("error: train.deepspeed needs CUDA GPUs, and this machine has none"), lines[0]


@pytest.mark.parametrize("fsdp, deepspeed, loader", [(True, False, "trainer"), (False, True, "trainer"),
                                                     (False, False, "taskcli")])
def test_sharded_models_restore_checkpoints_the_trainers_way(monkeypatch, fsdp, deepspeed, loader):
    """FSDP2 keeps a model a PreTrainedModel with its weights split across processes, so taskcli's whole-state-dict
    restore (load_converted) must leave the best model and --resume to the Trainer's FSDP/DeepSpeed loading: a
    one-process FSDP smoke run on an H200 failed at the end with "Error(s) in loading state_dict for
    FSDPDistilBertForTokenClassification" before this."""
    from types import SimpleNamespace

    from taskcli import trainer as trainer_mod

    calls = []

    class Base:  # stands in for transformers.Trainer: records that its own loading ran
        def _load_best_model(self):
            calls.append("trainer")

        def _load_from_checkpoint(self, folder, model=None):
            calls.append("trainer")

    monkeypatch.setattr(trainer_mod, "load_converted", lambda model, folder: calls.append("taskcli") or True)
    trainer = trainer_mod.taskcli_trainer(Base)()
    trainer.model, trainer.state = object(), SimpleNamespace(best_model_checkpoint="checkpoint-20")
    trainer.is_fsdp_enabled, trainer.is_deepspeed_enabled = fsdp, deepspeed
    trainer._load_best_model()
    trainer._load_from_checkpoint("checkpoint-20")
    assert calls == [loader, loader]
