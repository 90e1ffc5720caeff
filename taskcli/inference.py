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

import functools
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from taskcli import collector, heap, registry
from taskcli.errors import TaskcliError
from taskcli.inputs import BadInput, Entries, Unusable
from taskcli.model_loading import load_for_inference
from taskcli.run import Run, prepare
from taskcli.task import Context, Encoded, InferOptions, Result, Steps, flag, tensor_type


def entries(ctx: Context, steps: Steps, args: list[str]):
    """CLI arguments -> (where, input) pairs in order: the task's own `read`, else text lines (inputs.Entries,
    read lazily) or media files (a list of paths); then the task's `plan` of what it writes per input."""
    from taskcli import inputs

    if steps.read is not None:
        found = steps.read(ctx, args)
        found = found if isinstance(found, (list, Entries)) else list(found)
    elif ctx.run.task.modality.media:
        found = [(path, path) for path in inputs.media_paths(ctx, args, ctx.run.task.modality.expand_inputs)]
    else:
        found = inputs.text_entries(args, ctx)
    _plan(ctx, steps, found)
    return found


def _plan(ctx: Context, steps: Steps, found) -> None:
    """The task's plan of its files per input (media tasks: a list of paths), unusable inputs left out."""
    if steps.plan is not None:
        steps.plan(ctx, [raw for _, raw in found if not isinstance(raw, Unusable)])


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


# What one more forward call costs, in rows of the group's mean length (Python and dispatch per call, small
# matrix products run below the GEMM peak): measured with bench/bench_gemm.py
CALL_ROWS = 4


def batch_bounds(lengths: list[int], most: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of length-sorted rows (longest first), at most `most` rows a batch, cut where the
    padded work (rows x the batch's longest) plus CALL_ROWS per forward call is least. Fixed-size batches padded
    a mixed-length chunk by a third (bench_gemm); this cuts between length classes instead. Dynamic programming
    from the end; on a tie the earlier batch is the fuller one, so equal lengths give full batches as before."""
    import math

    n = len(lengths)
    call = CALL_ROWS * sum(lengths) / n if n else 0.0
    cost, cut = [0.0] * (n + 1), [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        cost[i] = math.inf
        for j in range(min(n, i + most), i, -1):
            c = (j - i) * lengths[i] + call + cost[j]
            if c < cost[i]:
                cost[i], cut[i] = c, j
    bounds, i = [], 0
    while i < n:
        bounds.append((i, cut[i]))
        i = cut[i]
    return bounds


def predict(ctx: Context, steps: Steps, encoded: list[Encoded]) -> list[Result]:
    """Results of encoded inputs, in their order: feature rows batched by group and length (longest first, so a
    batch too big for memory fails at once), at most ctx.batch_size rows a batch, cut by `batch_bounds`."""
    groups: dict = {}
    for i, enc in enumerate(encoded):
        groups.setdefault(enc.group, []).extend((i, k) for k in range(len(enc.features)))
    outputs: dict = {}
    for members in groups.values():
        members.sort(key=lambda ik: -encoded[ik[0]].lengths[ik[1]])
        for first, end in batch_bounds([encoded[i].lengths[k] for i, k in members], ctx.batch_size):
            part = members[first:end]
            rows = _forward(ctx, steps, steps.collate(ctx, [encoded[i].features[k] for i, k in part]))
            outputs.update(zip(part, rows))
    decoded = (steps.decode(ctx, enc, [outputs[(i, k)] for k in range(len(enc.features))])
               for i, enc in enumerate(encoded))
    return [out if isinstance(out, Result) else Result(out) for out in decoded]


def _forward(ctx: Context, steps: Steps, batch) -> list:
    """The task's forward of one collated batch: a torch model's on its device and dtype under inference_mode; a
    numpy one's (onnx_lite: no torch loaded) as it is."""
    if tensor_type(ctx.model) == "np":
        return steps.forward(ctx, batch)
    import torch

    with torch.inference_mode():
        return steps.forward(ctx, to_model(batch, ctx.model))


def stream(ctx: Context, steps: Steps, todo: Iterable[tuple[str, Any]], chunk_size: int) -> Iterator[list[Result]]:
    """Lists of Results (a bad input's has `bad` set) in input order, a chunk at a time, reading `todo` only as
    far as the chunk. The first chunk is one batch, each next one twice the last, up to `chunk_size`: early rows
    come out fast, later ones get length-sorted batches."""
    import itertools

    size, kept, skipped, truncated = ctx.batch_size, 0, 0, 0
    todo = iter(todo)
    while chunk := list(itertools.islice(todo, size)):
        size = min(2 * size, max(chunk_size, ctx.batch_size))
        encoded = encode(ctx, steps, chunk, ctx.options.skip_bad)
        results = iter(predict(ctx, steps, [e for e in encoded if not isinstance(e, Bad)]))
        rows = [_of(raw, Result({"error": e.reason}, bad=True) if isinstance(e, Bad) else next(results))
                for (_, raw), e in zip(chunk, encoded)]
        kept += sum(not r.bad for r in rows)
        skipped += sum(r.bad for r in rows)
        truncated += sum(bool(r.fields.get("truncated")) for r in rows if not r.bad)
        yield rows
    if skipped and not kept:
        raise TaskcliError(f"none of the {skipped} inputs could be used", "see the messages above")
    if truncated and ctx.truncates:
        limit, source = ctx.truncates
        n, were = kept + skipped, "was" if truncated == 1 else "were"
        print(f"note: {truncated} of {n} input{'' if n == 1 else 's'} {were} longer than {limit} tokens and {were} "
              f"truncated to {limit} ({source})", file=sys.stderr)


def _of(raw, result: Result) -> Result:
    result.input = raw
    return result


def results(ctx: Context, steps: Steps, inputs: Iterable[tuple[str, Any]]) -> list[Result]:
    """All results of (where, input) pairs at once (no chunks), the task's plan made for them first (e.g. the
    overlays to draw); a bad input raises."""
    pairs = list(inputs)
    _plan(ctx, steps, pairs)
    return [_of(raw, r) for (_, raw), r in zip(pairs, predict(ctx, steps, encode(ctx, steps, pairs, skip_bad=False)))]


def predict_args(run, model, args: list[str], options: dict) -> list[dict]:
    """The JSON fields of `taskcli infer` arguments' results (texts, files) in one piece, for callers that hold a
    loaded model (the benchmarks)."""
    steps, ctx = session(run, model, options)
    return [r.json() for r in results(ctx, steps, entries(ctx, steps, args))]


# ----------------------------------------------------------------------------- the session `infer` and `serve` run


def check_flags(task, given: dict) -> None:
    """An `infer` option the task does not read is an error naming the flag and the tasks it is for (never
    silently ignored), from the tasks' option models; said before the recipe or model loads."""
    fields = task.infer_options.model_fields
    for name in given:
        if name in fields:
            continue
        users = [t for t in registry.all_tasks() if name in t.infer_options.model_fields]
        shown = flag(name, users[0].infer_options.model_fields[name]) if users else "--" + name.replace("_", "-")
        raise TaskcliError(f"{shown} does not apply to {task.name}: it is for {', '.join(t.name for t in users)}"
                           if users else f"{shown} is not an infer option", f"drop {shown}")


def options_for(run: Run, given: dict | InferOptions) -> InferOptions:
    """The task's typed options: the flags given over the recipe's defaults (a field's `recipe` setting: batch
    size, labels per input), validated once; a bad value is one line naming its flag."""
    from pydantic import ValidationError

    model = run.task.infer_options
    if isinstance(given, model):
        return given
    given = {k: v for k, v in dict(given).items() if v is not None}
    check_flags(run.task, given)
    values = {}
    for name, info in model.model_fields.items():
        setting = (info.json_schema_extra or {}).get("recipe")  # e.g. "infer.top_k"
        if setting and name not in given:
            values[name] = functools.reduce(getattr, setting.split("."), run.recipe)
    try:
        return model(**values, **given)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        shown = flag(name, model.model_fields[name]) if name in model.model_fields else "an infer option"
        raise TaskcliError(f"{shown}: {first['msg'][0].lower()}{first['msg'][1:]} (got {first.get('input')!r})",
                           f"fix {shown}") from None


@dataclass
class Inference:
    """What `infer_stream` hands back: the task, how many inputs there are (None: not known before the end, as
    with stdin), the input just before `start` as its row names it (what an --output file's last row must be
    for), and the rows a chunk at a time."""

    task: Any
    total: int | None
    before_start: Any
    chunks: Any  # iterator of lists of Results


def session(run: Run, mdl, options: dict | InferOptions, on_text=None):
    """(steps, context) of the task's inference for this model, with its typed options (the flags in a dict are
    validated here, over the recipe's defaults). `on_text(text, ended)`: the caller's display, where a task that
    can show text as it is made writes it (see Context.on_text)."""
    options = options_for(run, options)
    steps = run.task.steps(run, mdl)
    ctx = steps.setup(run, mdl, options)
    ctx.on_text = on_text
    collector.resume()  # loaded: the usual collections from here (after the start-up's pause)
    return steps, ctx


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
    on_text=None,
) -> Inference:
    """Inference a chunk of inputs at a time, in input order (taskcli/inference.py): the model is loaded once,
    inputs are read lazily and parsed (media decoded) a chunk at a time, and each chunk's rows are handed back
    before the next begins, so the first rows come out early and memory does not grow with the input count.
    `start` skips the inputs an --output file already holds (--resume). `options`: the flags given, by option field
    name (see InferOptions); `on_text`: see `session`."""
    import itertools

    from taskcli import inputs as inputs_mod

    given = {k: v for k, v in (options or {}).items() if v is not None}
    check_flags(registry.get(task), given)  # before the recipe: the flag is wrong whatever it says
    run = prepare(task, recipe, sets, smoke)
    typed = options_for(run, given)
    inputs_mod.check_tables(run, typed, inputs)  # a table without its column is one line before the model loads
    run, mdl = load_for_inference(task, model, recipe, sets, smoke, run)
    heap.keep()  # from here on the batches' freed buffers are kept for the next batches (heap.py)
    try:
        steps, ctx = session(run, mdl, typed, on_text)
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
    rows = [r for chunk in done.chunks for r in chunk if not r.bad]
    return done.task, [r.input for r in rows], [r.json() for r in rows]

