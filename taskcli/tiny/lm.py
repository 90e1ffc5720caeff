"""Tiny generative checkpoints: GPT-2, RoBERTa (fill-mask), T5, BART and mBART, built offline.

Tokenizers are built from the sample's own texts, so they are small (a few hundred pieces) and nothing is
unknown:

* byte-level BPE (GPT-2, RoBERTa, BART): trained in memory with the `tokenizers` library, then handed to the
  transformers tokenizer class as ``vocab`` + ``merges``;
* Unigram (T5, mBART): every character, plus every word with a better score, so words stay whole pieces.

Each builder is ``fn(out_dir, texts, overrides)``; ``overrides`` update the scaled-down config.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path


def _bpe(texts: list[str], specials: list[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE trained on texts: (vocab, merges). Specials come first, in the given order."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([t for t in texts if t.strip()], trainer=trainer)
    import json

    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _unigram_pieces(texts: list[str], max_words: int = 3000) -> list[tuple[str, float]]:
    """Unigram pieces: '▁word' for every word (cheap), then single characters (dear, so words win)."""
    words: Counter = Counter()
    chars: set = set()
    for text in texts:
        for w in text.split():
            words[w] += 1
            chars.update(w)
            # punctuation glued to words: also keep the bare word and the punctuation as pieces
            for part in re.findall(r"\w+|[^\w\s]", w):
                words[part] += 0
    pieces: list[tuple[str, float]] = [("▁", -3.0)]
    seen = {"▁"}
    for w, _ in words.most_common(max_words):
        for p in (f"▁{w}", w):
            if p not in seen:
                seen.add(p)
                pieces.append((p, -5.0 if p.startswith("▁") else -6.0))
    for c in sorted(chars | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-")):
        for p in (c, f"▁{c}"):
            if p not in seen:
                seen.add(p)
                pieces.append((p, -12.0))
    return pieces


def _save(model_cls, config, tok, out_dir: Path) -> None:
    model_cls(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def gpt2(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab, merges = _bpe(texts, ["<|endoftext|>"], int(overrides.pop("tokenizer_vocab_size", 600)))
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=256)
    cfg = dict(n_embd=64, n_layer=2, n_head=2, n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    cfg.update(overrides)
    tok.model_max_length = cfg["n_positions"]
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, **cfg)
    _save(GPT2LMHeadModel, config, tok, out_dir)


_ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def roberta(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    vocab, merges = _bpe(texts, _ROBERTA_SPECIALS, int(overrides.pop("tokenizer_vocab_size", 600)))
    tok = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=256)
    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
               max_position_embeddings=258, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
               type_vocab_size=1)
    cfg.update(overrides)
    config = RobertaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, **cfg)
    _save(RobertaForMaskedLM, config, tok, out_dir)


def t5(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + _unigram_pieces(texts)
    tok = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    cfg = dict(d_model=64, d_ff=128, d_kv=32, num_layers=2, num_decoder_layers=2, num_heads=2, dropout_rate=0.0,
               relative_attention_num_buckets=8, relative_attention_max_distance=32)
    cfg.update(overrides)
    config = T5Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.pad_token_id, **cfg)
    _save(T5ForConditionalGeneration, config, tok, out_dir)


def _bart_config(cls, tok, overrides: dict, **extra):
    cfg = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
               encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256, dropout=0.0,
               attention_dropout=0.0, activation_dropout=0.0, scale_embedding=False)
    cfg.update(extra)
    cfg.update(overrides)
    return cls(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
               eos_token_id=tok.eos_token_id, **cfg)


def bart(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer

    vocab, merges = _bpe(texts, _ROBERTA_SPECIALS, int(overrides.pop("tokenizer_vocab_size", 800)))
    tok = BartTokenizer(vocab=vocab, merges=merges, model_max_length=256)
    config = _bart_config(BartConfig, tok, overrides, decoder_start_token_id=tok.eos_token_id,
                          forced_bos_token_id=tok.bos_token_id, forced_eos_token_id=tok.eos_token_id)
    _save(BartForConditionalGeneration, config, tok, out_dir)


def mbart(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import MBartConfig, MBartForConditionalGeneration, MBartTokenizer
    from transformers.models.mbart.tokenization_mbart import FAIRSEQ_LANGUAGE_CODES

    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + _unigram_pieces(texts)
    vocab += [(code, 0.0) for code in FAIRSEQ_LANGUAGE_CODES] + [("<mask>", 0.0)]
    tok = MBartTokenizer(vocab=vocab, model_max_length=256)
    config = _bart_config(MBartConfig, tok, overrides, decoder_start_token_id=tok.eos_token_id,
                          forced_eos_token_id=tok.eos_token_id)
    _save(MBartForConditionalGeneration, config, tok, out_dir)


BUILDERS = {"gpt2": gpt2, "roberta": roberta, "t5": t5, "bart": bart, "mbart": mbart}
