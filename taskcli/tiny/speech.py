"""Tiny speech checkpoints: Whisper (byte-level BPE tokenizer trained on the sample's transcripts, full special-
token layout, multilingual generation config) and Wav2Vec2 (model + feature extractor only).

The engine hands every string of the sample rows to a builder, file paths and labels included. The Whisper
builder drops strings that look like file paths before training its BPE (they would only add junk merges;
byte-level BPE can still spell anything). The Wav2Vec2 builder ignores the strings on purpose: like the real
``facebook/wav2vec2-base`` it ships no tokenizer, and the ASR task builds the CTC character vocabulary from
the *training transcripts* (normalised as the recipe says), exactly the path a real fine-tune takes. For
audio-classification the same checkpoint gets its classification head from the labels.
"""

from __future__ import annotations

import json
from pathlib import Path

# Whisper's special tokens after <|endoftext|>, in the released checkpoints' order (languages in between).
_AFTER_LANGS = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                "<|notimestamps|>"]


def _looks_like_path(text: str) -> bool:
    from taskcli.audio import AUDIO_SUFFIXES

    return " " not in text and ("/" in text or "\\" in text or Path(text).suffix.lower() in AUDIO_SUFFIXES)


def whisper_tokenizer(texts: list[str], merges_budget: int = 400):
    """A WhisperTokenizer: byte-level BPE learnt from `texts`, then Whisper's special tokens (language tokens in
    the library's LANGUAGES order right after <|startoftranscript|>) and the 1501 timestamp tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + merges_budget, initial_alphabet=alphabet,
                                  special_tokens=[], show_progress=False)
    bpe.train_from_iterator([t for t in texts if t.strip()] or ["hello world"], trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = state["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    vocab["<|endoftext|>"] = len(vocab)
    tok = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=448, pad_token="<|endoftext|>")
    specials = ["<|startoftranscript|>", *[f"<|{code}|>" for code in LANGUAGES], *_AFTER_LANGS]
    tok.add_special_tokens({"extra_special_tokens": specials})
    # Timestamp tokens follow <|notimestamps|> and are *not* special (decode(skip_special_tokens) keeps them out
    # through the tokenizer's own timestamp logic, as in the released checkpoints).
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    return tok


def whisper(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    overrides = dict(overrides)
    chunk_s = int(overrides.pop("chunk_length", 4))  # the model's window (released checkpoints: 30 s)
    merges = int(overrides.pop("bpe_merges", 400))
    tok = whisper_tokenizer([t for t in texts if not _looks_like_path(t)], merges)
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=chunk_s)
    ids = tok.convert_tokens_to_ids
    eot, sot, notimestamps = ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|notimestamps|>")
    cfg = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
               encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80, max_target_positions=448,
               dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    cfg.update(overrides)
    config = WhisperConfig(
        vocab_size=len(tok), max_source_positions=fe.nb_max_frames // 2, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot, **cfg,
    )
    model = WhisperForConditionalGeneration(config)
    gen = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=448, begin_suppress_tokens=[ids("Ġ"), eot], suppress_tokens=[],
        lang_to_id={f"<|{c}|>": ids(f"<|{c}|>") for c in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=notimestamps, prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True, max_initial_timestamp_index=50, return_timestamps=False,
    )
    model.generation_config = gen
    model.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(out_dir)


def wav2vec2(out_dir: Path, texts: list[str], overrides: dict, arch: str = "wav2vec2") -> None:
    """Model + feature extractor only (no tokenizer), as facebook/wav2vec2-base ships. `arch`: wav2vec2 | hubert."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
               conv_dim=(64, 64, 64), conv_stride=(10, 8, 4), conv_kernel=(10, 8, 4),  # 320 samples/frame, as the real one
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
               do_stable_layer_norm=True, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
               feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
               classifier_proj_size=32, vocab_size=32)
    cfg.update(overrides)
    config_cls, model_cls = (HubertConfig, HubertModel) if arch == "hubert" else (Wav2Vec2Config, Wav2Vec2Model)
    model_cls(config_cls(**cfg)).save_pretrained(out_dir)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(out_dir)


def hubert(out_dir: Path, texts: list[str], overrides: dict) -> None:
    wav2vec2(out_dir, texts, overrides, arch="hubert")


BUILDERS = {"whisper": whisper, "wav2vec2": wav2vec2, "hubert": hubert}
