"""Length-sorted batching for inference: less padding, results put back in input order."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first, so a too-big batch fails early)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def run_sorted(lengths: Sequence[int], batch_size: int, fn: Callable[[list[int]], list]) -> list:
    """Call fn on length-sorted index batches; return its per-item outputs in the original order."""
    out: list = [None] * len(lengths)
    for idx in sorted_batches(lengths, batch_size):
        for i, value in zip(idx, fn(idx)):
            out[i] = value
    return out


def pad_ids(rows: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) LongTensors, right-padded."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
