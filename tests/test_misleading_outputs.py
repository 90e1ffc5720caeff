"""Outputs that mislead (issue 17): Whisper timestamps (special tokens, times past the clip, clips with no text),
detection overlays on small images, `finetune --dry-run`, a custom run's recipe description, recipe errors in
line order."""

import pytest

from taskcli.tasks import speech_whisper
from taskcli.tiny import speech


# --- Whisper --timestamps: the decode step on crafted token ids ---------------------------------------------


@pytest.fixture(scope="module")
def whisper_tok():
    """A tiny WhisperTokenizer with the released checkpoints' special-token layout and timestamp tokens."""
    return speech.whisper_tokenizer(["hello world", "the quick brown fox"])


def whisper_ctx(tok, timestamps=True):
    return speech_whisper._Context(None, None, {}, 1, tok=tok, timestamps=timestamps, precision=0.02)


def ids_of(tok, *parts):
    """Token ids: "<|...|>" parts are single tokens (special or timestamp), others are text."""
    out = []
    for part in parts:
        if part.startswith("<|"):
            out.append(tok.convert_tokens_to_ids(part))
        else:
            out += tok.encode(part, add_special_tokens=False)
    return out


def test_whisper_chunks_hold_no_special_tokens_and_end_within_the_clip(whisper_tok, capsys):
    tok = whisper_tok
    # what a model may emit: its prompt, a stray language token inside a segment, a last segment ending at 25 s of
    # a 3 s clip
    ids = ids_of(tok, "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|0.00|>", " hello world", "<|en|>",
                 "<|1.20|>", "<|1.20|>", " the fox", "<|transcribe|>", "<|25.00|>", "<|endoftext|>")
    rec = speech_whisper._Recording([None], [48000], seconds=3.0)
    row = speech_whisper.decode(whisper_ctx(tok), rec, [ids])
    assert row["text"] == "hello world the fox"
    assert [c["text"] for c in row["chunks"]] == ["hello world", "the fox"]
    assert all("<|" not in c["text"] for c in row["chunks"])
    assert [c["timestamp"] for c in row["chunks"]] == [[0.0, 1.2], [1.2, 3.0]]
    assert row["timestamps_clamped"] is True
    assert "clamped to its duration" in capsys.readouterr().err


def test_whisper_times_within_the_clip_are_not_marked(whisper_tok, capsys):
    tok = whisper_tok
    ids = ids_of(tok, "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|0.40|>", " hello world", "<|2.00|>",
                 "<|endoftext|>")
    row = speech_whisper.decode(whisper_ctx(tok), speech_whisper._Recording([None], [48000], seconds=3.0), [ids])
    assert row["chunks"] == [{"text": "hello world", "timestamp": [0.4, 2.0]}]
    assert "timestamps_clamped" not in row and "note" not in row
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("timestamps", [True, False])
def test_whisper_clip_without_text_says_so(whisper_tok, capsys, timestamps):
    tok = whisper_tok
    ids = ids_of(tok, "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|0.00|>", "<|3.00|>", "<|endoftext|>")
    ctx = whisper_ctx(tok, timestamps)
    rec = speech_whisper._Recording([None], [48000], seconds=3.0)
    row = speech_whisper.decode(ctx, rec, [ids])
    assert row["text"] == "" and row["note"] == "no speech recognised"
    assert row.get("chunks", []) == []
    speech_whisper.decode(ctx, rec, [ids])  # a second one: the row says it, stderr does not repeat it
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "gave no text" in notes[0]


# --- finetune --dry-run: YAML for people, JSON with --json; a custom run's description -------------------------


def reviews_csv(path):
    path.write_text("text,label\nthe film was great,good\nthe film was awful,bad\nthe film was okay,meh\n")
    return path


def test_dry_run_prints_the_recipe_as_yaml_and_json_with_json(cli, tmp_path):
    import json

    import yaml

    data = reviews_csv(tmp_path / "reviews.csv")
    args = ("finetune", "text-cls", "--data", data, "--set", "train.epochs=2", "-o", tmp_path / "run", "--dry-run")
    people = cli(*args)
    assert people.exit_code == 0, people.stderr
    assert people.stdout.startswith("# Dry run") and str(tmp_path / "run" / "recipe.yaml") in people.stdout
    machines = cli(*args, "--json")
    assert machines.exit_code == 0, machines.stderr
    result = json.loads(machines.stdout)
    assert result["dry_run"] is True and result["output_dir"] == str(tmp_path / "run")
    recipe = yaml.safe_load(people.stdout)  # the YAML is the recipe itself, as recipe.yaml will hold it
    assert recipe == result["resolved"]
    assert recipe["train"]["epochs"] == 2 and recipe["data"]["dataset"] == str(data.resolve())
    # ... and a valid recipe file
    (tmp_path / "again.yaml").write_text(people.stdout)
    assert cli("recipes", "validate", tmp_path / "again.yaml").exit_code == 0


def test_description_follows_the_model_and_data_a_run_swaps_in(cli, tmp_path):
    import json

    def description(*args):
        result = cli("finetune", "text-cls", *args, "--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["resolved"]["description"]

    shipped = description()
    assert "IMDb" in shipped  # the recipe's own data: its own words
    data = reviews_csv(tmp_path / "reviews.csv")
    custom = description("--data", data)
    assert "IMDb" not in custom and "binary" not in custom
    assert custom == ("text-classification fine-tune of distilbert/distilbert-base-uncased on reviews.csv, "
                      "from recipe text-classification/distilbert")
    assert description("--model", "google-bert/bert-base-cased").startswith(
        "text-classification fine-tune of google-bert/bert-base-cased on stanfordnlp/imdb")
    assert description("--data", "stanfordnlp/imdb") == shipped  # the recipe's own data named again: unchanged


# --- recipe errors in the file's line order, each with its line -----------------------------------------------


def test_recipe_errors_come_in_line_order_with_their_lines(tmp_path):
    import re

    from taskcli import recipe
    from taskcli.errors import TaskcliError

    path = tmp_path / "mine.yaml"
    path.write_text("task: token-classification\nmodel:\n  checkpoint: x\n  type: distilbert\n"
                    "train:\n  epochz: 3\n  learning_rate: fast\ndata:\n  max_lenght: 5\nmodle: 3\n"
                    "smoke:\n  train:\n    epochs: many\n")
    with pytest.raises(TaskcliError) as err:
        recipe.resolve(recipe_task(), str(path), sets=["train.seed=one"])
    entries = str(err.value).splitlines()[1:]
    located = [int(m.group(1)) for e in entries if (m := re.match(rf"\s*{re.escape(str(path))}:(\d+):", e))]
    assert located == [6, 7, 9, 10]  # pydantic's own order is the schema's: data before train, extra keys last
    lines = path.read_text().splitlines()
    for n in located:  # each error shows the line it names
        at = next(i for i, e in enumerate(entries) if e.strip().startswith(f"{path}:{n}:"))
        assert entries[at + 1] == "    | " + lines[n - 1]
    assert entries[-1].strip().startswith("--set train.seed=one:")  # the command line's come after the file's
    # an error of the smoke overrides names its line under smoke:
    smoke_only = tmp_path / "smoke.yaml"
    smoke_only.write_text("\n".join(path.read_text().splitlines()[:4] + lines[10:]) + "\n")
    text = str(pytest.raises(TaskcliError, recipe.validate_file, smoke_only).value)
    assert f"{smoke_only}:7: 'train.epochs'" in text and "(in smoke overrides)\n    |     epochs: many" in text


def recipe_task():
    from taskcli import registry

    return registry.get("token-classification")


@pytest.mark.slow
def test_whisper_timestamps_of_a_real_generate_call(cli, tmp_path, one_torch_thread):
    """An untrained tiny Whisper (seeded) emits what a confused model does: language tokens inside segments and
    timestamps up to 30 s for an 8 s recording (long-form: longer than its 4 s window)."""
    import json

    import numpy as np
    import soundfile as sf
    import torch

    from conftest import REPO

    torch.manual_seed(0)
    model = tmp_path / "whisper"
    speech.whisper(model, ["hello world this is a test", "the quick brown fox"], {})
    sample = REPO / "taskcli" / "samples" / "automatic-speech-recognition"
    parts = []
    for name in ("clip_00.flac", "clip_02.flac", "clip_05.flac"):
        parts += [sf.read(str(sample / name), dtype="float32")[0], np.zeros(24000, dtype=np.float32)]
    sf.write(tmp_path / "long.wav", np.concatenate(parts), 16000)
    seconds = round(sf.info(str(tmp_path / "long.wav")).duration, 2)
    result = cli("infer", "asr", tmp_path / "long.wav", "--model", model, "--timestamps", "--json",
                 "--max-new-tokens", "40")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["chunks"] and all("<|" not in c["text"] for c in row["chunks"]), row
    assert all(0 <= c["timestamp"][0] <= c["timestamp"][1] <= seconds for c in row["chunks"]), (seconds, row)
    assert row["timestamps_clamped"] is True and "clamped to its duration" in result.stderr  # it said 29.98 s
