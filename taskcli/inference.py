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

from taskcli import registry
from taskcli.errors import TaskcliError
from taskcli.inputs import BadInput, Entries, Unusable
from taskcli.model_loading import load_for_inference
from taskcli.run import Run, prepare
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
    steps, ctx = session(run, model, dict(options))
    return results(ctx, steps, entries(ctx, steps, args))


# ----------------------------------------------------------------------------- the session `infer` and `serve` run


COMMON_INFER_OPTIONS = frozenset({"batch_size", "skip_bad", "as_json", "interactive", "column"})


def flag_of(option: str) -> str:
    return "--do-sample/--greedy" if option == "do_sample" else "--" + option.replace("_", "-")


def check_infer_options(task, options: dict) -> None:
    """An `infer` option the task does not read is an error naming the tasks it is for (never silently ignored)."""
    for option in options:
        if option in COMMON_INFER_OPTIONS or task.takes(option):
            continue
        users = [t.name for t in registry.all_tasks() if t.takes(option)]
        raise TaskcliError(f"{flag_of(option)} does not apply to {task.name}: it is for {', '.join(users)}",
                           f"drop {flag_of(option)}")


def infer_defaults(run: Run, options: dict) -> dict:
    """The recipe's infer settings under what the command line gave: batch size, and labels per input (top_k) for
    the tasks that rank labels; generate()'s top-k is taskcli.generation's."""
    options.setdefault("batch_size", run.recipe.infer.batch_size)
    if run.task.takes("top_k") and not run.task.generates:
        options.setdefault("top_k", run.recipe.infer.top_k)
    return options


@dataclass
class Inference:
    """What `infer_stream` hands back: the task, how many inputs there are (None: not known before the end, as
    with stdin), the input just before `start` as its row names it (what an --output file's last row must be
    for), and the rows a chunk at a time."""

    task: Any
    total: int | None
    before_start: Any
    chunks: Any  # iterator of lists of (input, result, is_error)


def session(run: Run, mdl, options: dict):
    """(steps, context) of the task's inference for this model, with the recipe's defaults under `options`."""
    steps = run.task.steps(run, mdl)
    return steps, steps.setup(run, mdl, infer_defaults(run, options))


def infer_stream(
    task: str,
    inputs: list[str],
    model: str | None = None,
    recipe: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    options: dict | None = None,
    start: int = 0,
    chunk_size: int | None = None,
) -> Inference:
    """Inference a chunk of inputs at a time, in input order (taskcli/inference.py): the model is loaded once,
    inputs are read lazily and parsed (media decoded) a chunk at a time, and each chunk's rows are handed back
    before the next begins, so the first rows come out early and memory does not grow with the input count.
    `start` skips the inputs an --output file already holds (--resume)."""
    import itertools

    from taskcli import inputs as inputs_mod

    options = dict(options or {})
    check_infer_options(registry.get(task), options)
    run = prepare(task, recipe, sets, smoke)
    inputs_mod.check_tables(run, options, inputs)  # a table without its column is one line before the model loads
    run, mdl = load_for_inference(task, model, recipe, sets, smoke, run)
    try:
        steps, ctx = session(run, mdl, options)
        found = entries(ctx, steps, inputs)
        total = len(found) if isinstance(found, list) else found.total
        todo = iter(found)
        skipped = list(itertools.islice(todo, start))
        first = next(todo, None)
        if first is None and not skipped:
            raise TaskcliError("no inputs given", "pass texts/files as arguments, or - to read stdin")
    except BaseException:
        run.close()
        raise
    # decoded images and recordings are far bigger than lines of text: media chunks hold a few batches
    size = chunk_size or run.task.modality.chunk_size(ctx.batch_size)

    def chunks():
        try:
            if first is not None:
                yield from stream(ctx, steps, itertools.chain([first], todo), size)
        finally:
            run.close()

    before = skipped[-1][1] if len(skipped) == start and start else None
    return Inference(run.task, total, before, chunks())


def infer(task: str, inputs: list[str], **kwargs) -> tuple[Any, list[Any], list[dict]]:
    """(task, the inputs that could be used, their results in input order): `infer_stream` (same arguments) in
    one piece."""
    done = infer_stream(task, inputs, **kwargs)
    rows = [(raw, result) for chunk in done.chunks for raw, result, bad in chunk if not bad]
    return done.task, [raw for raw, _ in rows], [result for _, result in rows]

