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
