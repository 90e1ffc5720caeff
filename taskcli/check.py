"""`taskcli check`: the preflight as a report to read before spending GPU hours, and a CI step.

Rows per split, label counts and imbalance, duplicate inputs within and across splits, token lengths against
data.max_length, image sizes, audio durations, and the plan: steps per epoch and in all, with the time of an
epoch estimated from a short timed forward+backward probe on this machine and the probe's peak memory.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from taskcli import data as data_mod
from taskcli import preflight
from taskcli.errors import TaskcliError

PROBE_STEPS = 3  # timed forward+backward passes; the first (warm-up) is not counted
HISTOGRAM_BINS = 10


def check(task: str, recipe: str | None = None, sets: list[str] | None = None, smoke: bool = False,
          flags: list | None = None, gates: list[str] | None = None, report: str | None = None,
          probe: bool = True) -> dict:
    """The data report of a (task, recipe, --data); --model (recipe.cli.model) the checkpoint a finetune would start
    from (dir or hub id, default the recipe's), `gates` (the --gate grammar) on its figures, `report` a folder for
    its plots. Problems the preflight would stop a run for are listed in "problems", not raised."""
    from taskcli import model_loading, run as run_mod
    from taskcli import gates as gates_mod

    run = run_mod.prepare(task, recipe, sets, smoke, flags)
    model, data = run.recipe.cli.model, run.recipe.cli.data
    checks = gates_mod.parse(gates or [])
    report_dir = Path(report) if report else None
    if report_dir and (report_dir.is_file() or (report_dir.is_dir() and any(report_dir.iterdir()))):
        raise TaskcliError(f"report folder {report_dir} is not empty", "choose a new folder for --report")
    if model:  # a --model path that does not exist is said before the data loads
        model_loading.resolve_model_source(run, model, run.recipe.model.checkpoint)
    run_mod.quiet_libraries()
    try:
        findings = preflight.Findings(collect=True)
        dsd = data_mod.load(run, data, findings=findings)
        notes = preflight.check(run, dsd, data)
        info = run.data_info
        splits = {name: _split_stats(run, ds) for name, ds in data_mod.countable(dsd).items()}
        result = {"task": run.task.name, "recipe": run.resolved.name, "data": info.source,
                  "splits": splits, "duplicates_across_splits": None, "problems": findings.problems, "notes": notes}
        if "train" in splits and "eval" in splits and not (run.smoke and data is None):
            result["duplicates_across_splits"] = preflight.overlap(run.task, dsd["train"], dsd["eval"])
        run.labels = run.recipe.data.labels or run.task.labels(run, data_mod.countable(dsd))
        tiny = run_mod.uses_tiny_model(run, model)  # as finetune picks it: --model wins over --smoke's tiny model
        run.model_source = model_loading.build_smoke_model(run, dsd) if tiny else model_loading.resolve_model_source(
            run, model, run.recipe.model.checkpoint)
        result["model"] = f"a tiny {run.recipe.model.type} (--smoke)" if tiny else data_mod.local_or_id(run.model_source)
        loaded = model_loading.load_processor_and_model(run, run.labels)
        if not run.task.modality.media:
            result["lengths"] = _token_lengths(run, data_mod.countable(dsd))
        result["plan"] = _plan(run, info, loaded, dsd["train"] if probe else None)
        result["figures"] = figures(result)
        result["gates_failed"] = gates_mod.check(checks, result["figures"], f"taskcli check {run.task.name}")
        if report_dir:
            result["report"] = [str(p) for p in draw(report_dir, result)]
        return result
    finally:
        run.close()


def _split_stats(run, ds) -> dict:
    """Rows, duplicate inputs, label counts (one label per row), image sizes or audio durations of one split."""
    out: dict = {"rows": len(ds)}
    out["duplicates"] = preflight.duplicates(run.task, ds)
    role = run.task.label_column
    if (role, "label") in preflight.checked_roles(run.task) and role in ds.column_names:
        names = getattr(ds.features[role], "names", None)
        names = names or getattr(getattr(ds.features[role], "feature", None), "names", None)
        counts = Counter(names[v] if names and isinstance(v, int) else str(v)  # multi-label: each label of a row
                         for row in preflight.column_values(ds, role) if row is not None
                         for v in (row if isinstance(row, list) else [row]))
        out["labels"] = dict(counts.most_common())
        out["imbalance"] = round(max(counts.values()) / min(counts.values()), 3) if counts else None
    modality = run.task.modality
    if modality.figures and modality.column in ds.column_names:  # image sizes, audio durations
        out.update(modality.figures(preflight.column_values(ds, modality.column)))
    return out


def _token_lengths(run, dsd) -> dict:
    """Tokens per input (the task's tokenizer; pairs as pairs, word lists as words) against data.max_length: how many
    would be cut, and a histogram."""
    import numpy as np

    tok = run.tokenizer()
    limit = run.recipe.data.max_length
    lengths: list[int] = []
    for ds in dsd.values():
        roles = [r for r in preflight.input_roles(run.task, ds)][:2]
        columns = [preflight.column_values(ds, r) for r in roles]
        if not columns or not columns[0]:
            continue
        first = next((v for v in columns[0] if v is not None), "")
        if isinstance(first, list):  # pre-split words (NER)
            ids = tok([v or [] for v in columns[0]], is_split_into_words=True)["input_ids"]
        elif len(columns) == 2 and isinstance(next((v for v in columns[1] if v is not None), None), str):
            ids = tok([v or "" for v in columns[0]], [v or "" for v in columns[1]])["input_ids"]
        else:
            ids = tok([v if isinstance(v, str) else str(v or "") for v in columns[0]])["input_ids"]
        lengths += [len(i) for i in ids]
    if not lengths:
        return {}
    counts, edges = np.histogram(lengths, bins=HISTOGRAM_BINS)
    return {"max_length": limit, "cut": sum(n > limit for n in lengths), "min": min(lengths),
            "median": statistics.median(lengths), "max": max(lengths),
            "histogram": {"edges": [round(float(e), 1) for e in edges], "counts": counts.tolist()}}


def _plan(run, info, model, train) -> dict:
    """Steps per epoch and in all; with `train`, a timed forward+backward probe of one training batch on this
    machine: seconds per step, an epoch's estimated time and the probe's peak memory."""
    t = run.recipe.train
    out: dict = {"batch_size": t.batch_size, "gradient_accumulation_steps": t.gradient_accumulation_steps,
                 "epochs": t.epochs, "max_steps": t.max_steps if t.max_steps > 0 else None}
    if info.train_rows:
        out["steps_per_epoch"], out["total_steps"] = preflight.plan(run.recipe, info.train_rows)
    elif t.max_steps > 0:
        out["total_steps"] = t.max_steps
    if train is not None:
        out["probe"] = _probe(run, model, train)
        per_batch = out["probe"].get("seconds_per_batch")
        if per_batch and out.get("steps_per_epoch"):
            batches = out["steps_per_epoch"] * t.gradient_accumulation_steps
            out["estimated_epoch_seconds"] = round(per_batch * batches, 3)
    return out


def _probe(run, model, train) -> dict:
    """PROBE_STEPS forward+backward passes of one full training batch (no optimizer step) through the Trainer, as
    training would run them; the first is a warm-up. Peak memory: CUDA's max allocated, else the process's RSS."""
    import datasets
    import torch

    from taskcli import trainer as trainer_mod
    from taskcli import training_args

    size = run.recipe.train.batch_size
    rows = train.take(size) if data_mod.is_streamed(train) else train.select(_first_with_text(train, size))
    rows = datasets.Dataset.from_list(list(rows), features=train.features) if data_mod.is_streamed(train) else rows
    # a smoke sample may hold fewer rows than a batch: repeat them to make one
    if len(rows) < size:
        rows = datasets.concatenate_datasets([rows] * math.ceil(size / len(rows))).select(range(size))
    with tempfile.TemporaryDirectory(prefix="taskcli-check-") as tmp:
        sharding, _ = training_args.sharding_arguments(run, model)
        args = training_args.training_arguments(run, tmp, sharding=sharding)
        args.eval_strategy, args.load_best_model_at_end = "no", False  # the probe trains one batch, evaluates none
        features = trainer_mod.build_features(run, rows, True)
        if len(features) == 0:
            return {"skipped": "one batch of rows made no training features"}
        trainer = trainer_mod.make_trainer(run, model, args, features, None, None)
        batch = next(iter(trainer.get_train_dataloader()))
        cuda = args.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # what the training loop sets per step: one batch here
        times = []
        for _ in range(PROBE_STEPS):
            started = time.perf_counter()
            trainer.training_step(trainer.model, batch)
            if cuda:
                torch.cuda.synchronize(args.device)
            times.append(time.perf_counter() - started)
            trainer.model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated(args.device) if cuda else _peak_rss()
    return {"device": args.device.type, "batch_rows": size, "seconds_per_batch": round(statistics.median(times[1:]), 4),
            "peak_memory_mb": round(peak / 2**20, 1), "peak_memory_of": "cuda max allocated" if cuda else "process RSS"}


def _first_with_text(train, size: int, look: int = 1000) -> list[int]:
    """The first `size` rows (of the first `look`) whose text columns are not all blank: a text file's blank lines
    (wikitext opens with one) make no features, and a batch of them left the probe nothing to time."""
    texts = [name for name, feature in train.features.items() if getattr(feature, "dtype", None) == "string"]
    head = range(min(look, len(train)))
    if not texts:
        return list(head[:size])
    table = train.select_columns(texts).select(head)
    kept = [i for i, row in enumerate(table) if any(str(row[c] or "").strip() for c in texts)][:size]
    return kept or list(head[:size])


def _peak_rss() -> int:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb * 1024


def figures(result: dict) -> dict:
    """The report's numbers by name, for --gate (METRIC OP NUMBER) and CI."""
    out: dict = {"duplicates_across_splits": result["duplicates_across_splits"] or 0,
                 "problems": len(result["problems"]), "notes": len(result["notes"])}
    for name, split in result["splits"].items():
        out[f"rows_{name}"] = split["rows"]
        out[f"duplicates_{name}"] = split["duplicates"]
        if split.get("imbalance") is not None:
            out[f"imbalance_{name}"] = split["imbalance"]
            out[f"classes_{name}"] = len(split["labels"])
    if result.get("lengths"):
        out["truncated"] = result["lengths"]["cut"]
        out["max_tokens"] = result["lengths"]["max"]
    plan = result["plan"]
    for key in ("steps_per_epoch", "total_steps", "estimated_epoch_seconds"):
        if plan.get(key) is not None:
            out[key] = plan[key]
    if plan.get("probe", {}).get("peak_memory_mb") is not None:
        out["peak_memory_mb"] = plan["probe"]["peak_memory_mb"]
    return out


def draw(folder: Path, result: dict) -> list[Path]:
    """label_counts.png (per split) and token_lengths.png (histogram, max_length marked), as the run report draws."""
    from taskcli import report

    folder.mkdir(parents=True, exist_ok=True)
    plt = report.pyplot()
    written = []
    labelled = {name: s["labels"] for name, s in result["splits"].items() if s.get("labels")}
    if labelled:
        fig, axes = plt.subplots(1, len(labelled), figsize=(5 * len(labelled), 4), squeeze=False)
        for ax, (name, counts) in zip(axes[0], labelled.items()):
            ax.bar([report.short(str(k), 16) for k in counts], list(counts.values()))
            ax.set_title(f"labels: {name} ({sum(counts.values())} rows)")
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        path = folder / "label_counts.png"
        report.save_figure(plt, fig, path)
        written.append(path)
    lengths = result.get("lengths")
    if lengths:
        hist = lengths["histogram"]
        edges = hist["edges"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar(edges[:-1], hist["counts"], width=[b - a for a, b in zip(edges, edges[1:])], align="edge")
        ax.axvline(lengths["max_length"], color="red", linestyle="--", label=f"data.max_length {lengths['max_length']}")
        ax.set_xlabel("tokens per input")
        ax.set_ylabel("inputs")
        ax.set_title(f"token lengths ({lengths['cut']} inputs would be cut)")
        ax.legend()
        fig.tight_layout()
        path = folder / "token_lengths.png"
        report.save_figure(plt, fig, path)
        written.append(path)
    return written
