"""Tiny encoder checkpoints (DistilBERT, BERT) with a WordPiece vocabulary built from the sample texts."""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocab(texts: list[str], lowercase: bool = True, max_words: int = 4000) -> dict[str, int]:
    """Specials, single characters (also as '##' continuations, so nothing becomes [UNK]) and whole words."""
    words: Counter = Counter()
    for text in texts:
        words.update(re.findall(r"\w+|[^\w\s]", text.lower() if lowercase else text))
    chars = set(string.ascii_letters + string.digits + string.punctuation)
    chars.update(c for w in words for c in w)
    if lowercase:
        chars = {c.lower() for c in chars}
    pieces = _SPECIALS + sorted(chars) + sorted(f"##{c}" for c in chars if c.isalnum())
    seen = set(pieces)
    pieces += [w for w, _ in words.most_common(max_words) if w not in seen]
    return {p: i for i, p in enumerate(pieces)}


def _bert_tokenizer(texts, lowercase=True):
    from transformers import BertTokenizer

    return BertTokenizer(vocab=wordpiece_vocab(texts, lowercase), do_lower_case=lowercase, model_max_length=512)


def distilbert(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    vocab = wordpiece_vocab(texts)
    tok = DistilBertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)
    cfg = dict(dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=512,
               dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, qa_dropout=0.0)
    cfg.update(overrides)
    config = DistilBertConfig(vocab_size=len(vocab), pad_token_id=tok.pad_token_id, **cfg)
    DistilBertModel(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def bert(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import BertConfig, BertModel

    tok = _bert_tokenizer(texts)
    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
               max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.update(overrides)
    config = BertConfig(vocab_size=len(tok.get_vocab()), pad_token_id=tok.pad_token_id, **cfg)
    BertModel(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


BUILDERS = {"distilbert": distilbert, "bert": bert}
