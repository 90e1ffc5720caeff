"""The one inference loop every task runs, like transformers' Pipeline (preprocess -> forward -> postprocess).

A task gives its `Steps` (taskcli/task.py): how to read, encode, forward and decode one input. This loop does the
rest, the same for all 13 tasks:

- inputs are parsed (media decoded) and encoded a chunk at a time, not up front, so memory follows the chunk, not the
  input count; chunks start small and grow, so the first rows come out within a batch's time;
- an input `parse` cannot use stops the run with one line naming where it is, or with --skip-bad becomes an
  error row in its place (every modality alike);
- feature rows (an input may have several: windows) are sorted by length within the chunk and its groups, batched,
  moved to the model's device and dtype, run under `torch.inference_mode`, and handed back in input order.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from taskcli.errors import TaskcliError
from taskcli.inputs import BadInput, Entries, Unusable
from taskcli.task import Context, Encoded, Steps


def entries(ctx: Context, steps: Steps, args: list[str]):
    """CLI arguments -> (where, input) pairs in order: the task's own `read`, else text lines (inputs.Entries,
    read lazily) or media files (a list of paths)."""
    if steps.read is not None:
        found = steps.read(ctx, args)
        return found if isinstance(found, (list, Entries)) else list(found)
    from taskcli import inputs

    modality = ctx.run.task.modality
    if modality == "text":
        return inputs.text_entries(args, ctx)
    if modality == "image":
        from taskcli.images import expand_inputs
    else:
        from taskcli.audio import expand_inputs
    return [(path, path) for path in inputs.media_paths(ctx, args, expand_inputs)]


@dataclass
class Bad:
    """An input --skip-bad set aside: its error row's reason."""

    reason: str


def encode(ctx: Context, steps: Steps, chunk: list[tuple[str, Any]], skip_bad: bool) -> list[Encoded | Bad]:
    """Each input parsed (a bad one raises, or with skip_bad becomes Bad), then the good ones encoded together."""
    parsed: list = []
    for where, raw in chunk:
        try:
            if isinstance(raw, Unusable):  # read already knew (a line not UTF-8, a table row without its input)
                raise raw.error
            parsed.append(steps.parse(ctx, raw))
        except (BadInput, *steps.errors) as err:
            located = err.at(where) if isinstance(err, BadInput) else err
            if not skip_bad:
                raise located from None
            print(f"skipped: {getattr(located, 'message', located)}", file=sys.stderr)
            parsed.append(Bad(err.reason if isinstance(err, BadInput) else getattr(err, "message", str(err))))
    good = [p for p in parsed if not isinstance(p, Bad)]
    encoded = iter(steps.encode(ctx, good) if good else [])
    return [p if isinstance(p, Bad) else next(encoded) for p in parsed]


def to_model(batch, model):
    """Tensors onto the model's device; floating ones in the model's dtype (bf16/fp16 inference)."""
    import torch

    def moved(value):
        if not torch.is_tensor(value):
            return value
        return value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)

    return {k: moved(v) for k, v in batch.items()}


def predict(ctx: Context, steps: Steps, encoded: list[Encoded]) -> list[dict]:
    """Results of encoded inputs, in their order: feature rows batched by group and length (longest first, so a
    batch too big for memory fails at once), at most ctx.batch_size rows a batch."""
    import torch

    groups: dict = {}
    for i, enc in enumerate(encoded):
        groups.setdefault(enc.group, []).extend((i, k) for k in range(len(enc.features)))
    outputs: dict = {}
    for members in groups.values():
        members.sort(key=lambda ik: -encoded[ik[0]].lengths[ik[1]])
        for first in range(0, len(members), ctx.batch_size):
            part = members[first:first + ctx.batch_size]
            batch = to_model(steps.collate(ctx, [encoded[i].features[k] for i, k in part]), ctx.model)
            with torch.inference_mode():
                rows = steps.forward(ctx, batch)
            outputs.update(zip(part, rows))
    return [steps.decode(ctx, enc, [outputs[(i, k)] for k in range(len(enc.features))])
            for i, enc in enumerate(encoded)]


def stream(ctx: Context, steps: Steps, todo: Iterable[tuple[str, Any]], chunk_size: int) -> Iterator[list]:
    """Lists of (input, result, is_error) in input order, a chunk at a time, reading `todo` only as far as the
    chunk. The first chunk is one batch, each next one twice the last, up to `chunk_size`: early rows come out
    fast, later ones get length-sorted batches."""
    import itertools

    skip_bad = bool(ctx.options.get("skip_bad"))
    size, kept, skipped, truncated = ctx.batch_size, 0, 0, 0
    todo = iter(todo)
    while chunk := list(itertools.islice(todo, size)):
        size = min(2 * size, max(chunk_size, ctx.batch_size))
        encoded = encode(ctx, steps, chunk, skip_bad)
        results = iter(predict(ctx, steps, [e for e in encoded if not isinstance(e, Bad)]))
        rows = [(raw, _with_id(raw, {"error": e.reason}), True) if isinstance(e, Bad) else
                (raw, _with_id(raw, next(results)), False) for (_, raw), e in zip(chunk, encoded)]
        kept += sum(not bad for _, _, bad in rows)
        skipped += sum(bad for _, _, bad in rows)
        truncated += sum(bool(r.get("truncated")) for _, r, bad in rows if not bad)
        yield rows
    if skipped and not kept:
        raise TaskcliError(f"none of the {skipped} inputs could be used", "see the messages above")
    if truncated and ctx.truncates:
        limit, source = ctx.truncates
        n, were = kept + skipped, "was" if truncated == 1 else "were"
        print(f"note: {truncated} of {n} input{'' if n == 1 else 's'} {were} longer than {limit} tokens and {were} "
              f"truncated to {limit} ({source})", file=sys.stderr)


def _with_id(raw, result: dict) -> dict:
    """A table row's result leads with the table's id (inputs.Table), so --json and --output rows keep it."""
    return {"id": raw.table_id, **result} if hasattr(raw, "table_id") else result


def results(ctx: Context, steps: Steps, inputs: Iterable[tuple[str, Any]]) -> list[dict]:
    """All results of (where, input) pairs at once (no chunks); a bad input raises."""
    return predict(ctx, steps, encode(ctx, steps, list(inputs), skip_bad=False))


def predict_args(run, model, args: list[str], options: dict) -> list[dict]:
    """Results of `taskcli infer` arguments (texts, files) in one piece, for callers that hold a loaded model (the
    run report's worst examples, the benchmarks)."""
    from taskcli import engine

    steps, ctx = engine.infer_session(run, model, dict(options))
    return results(ctx, steps, entries(ctx, steps, args))
