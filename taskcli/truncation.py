"""Inputs longer than the model reads: `infer` says so instead of cutting them silently.

Tasks that truncate (text-classification, summarization, translation) count each input's full token length,
then `mark` adds `"truncated": true` and `"input_tokens"` to the affected result rows (so `--json` shows them)
and prints one note on stderr. Token classification does not truncate: it runs overlapping windows instead.
"""

from __future__ import annotations

import sys


def token_counts(tok, texts: list[str], pairs: list | None = None) -> list[int]:
    """Untruncated token counts (special tokens included) of texts, or of (text, text_pair) pairs."""
    if pairs is None or all(p is None for p in pairs):
        return [len(ids) for ids in tok(list(texts), verbose=False)["input_ids"]]
    return [len(tok(t, p, verbose=False)["input_ids"]) for t, p in zip(texts, pairs)]


def mark(results: list[dict], counts: list[int], limit: int, limit_from: str) -> list[dict]:
    """Flag the results whose input had more than `limit` tokens; one stderr line when any did.

    `limit_from` names where the limit comes from (e.g. "data.max_length"), shown in the note."""
    over = [i for i, n in enumerate(counts) if n > limit]
    for i in over:
        results[i] = {**results[i], "truncated": True, "input_tokens": counts[i]}
    if over:
        were = "was" if len(over) == 1 else "were"
        print(f"note: {len(over)} of {len(counts)} input{'' if len(counts) == 1 else 's'} {were} longer than "
              f"{limit} tokens and {were} truncated to {limit} ({limit_from})", file=sys.stderr)
    return results
