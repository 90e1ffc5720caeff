"""What a fine-tuning run records next to its model, so that it can be trusted and repeated.

- ``recipe.yaml``: the recipe as the run used it, with --model, --data, --set and --smoke folded in, plus a
  ``provenance:`` section (what was really loaded, split sizes, how the eval split was made, library versions,
  data fingerprints). ``taskcli finetune TASK --recipe OUT/recipe.yaml`` repeats the run.
- ``metrics.json``: the final eval metrics.
- ``README.md``: a model card with the same facts, metric tables and a `transformers` snippet that loads the model.
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any

from taskcli.data import is_local, local_or_id

LIBRARIES = ("taskcli", "torch", "transformers", "datasets", "accelerate", "tokenizers", "peft")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def effective_recipe(run, out: Path | None, model_type: str | None = None) -> dict:
    """The recipe as this run uses it: what `finetune --recipe OUT/recipe.yaml` needs to repeat the run. The run's
    --model and --data (recipe.cli) become model.checkpoint and data.dataset; `model_type`: the loaded model's."""
    d = run.recipe.model_dump(mode="json")  # without `cli`: a recipe file never holds it
    model, data = run.recipe.cli.model, run.recipe.cli.data
    shipped = (local_or_id(d["model"]["checkpoint"]), local_or_id(d["data"]["dataset"] or ""))
    if model:
        d["model"]["checkpoint"] = local_or_id(model)
        d["model"]["revision"] = None  # model.revision is the recipe checkpoint's, never --model's
        if model_type:
            d["model"]["type"] = model_type
    elif is_local(d["model"]["checkpoint"]):
        d["model"]["checkpoint"] = local_or_id(d["model"]["checkpoint"])
    if data or d["data"]["dataset"]:
        d["data"]["dataset"] = local_or_id(data or d["data"]["dataset"])
    if is_local(data):  # the recipe's hub options do not apply to a local file
        d["data"].update(config=None, revision=None, data_dir=None)
    if run.smoke:  # its overrides are merged into train/data/params/infer already: applying them again would undo --set
        d["smoke"].update(enabled=True, train={}, data={}, params={}, infer={})
    d["train"]["output_dir"] = None  # a re-run writes elsewhere (see run_folder.default_output_dir)
    if out is not None:
        d["model"]["infer_default"] = str(Path(out).resolve())  # eval/infer --recipe OUT/recipe.yaml use the result
        d["eval"]["label_map"] = {}  # that model names the classes as this data does
    d.pop("provenance", None)
    if (d["model"]["checkpoint"], d["data"]["dataset"] or "") != shipped:
        # --model/--data swapped what the recipe's description talks about ("binary sentiment on IMDb")
        d["description"] = describe(run, d["model"]["checkpoint"], d["data"]["dataset"])
    return d


def describe(run, model: str, data: str | None) -> str:
    """The description of a run whose model or data is not its recipe's: local paths by their names."""
    def name(ref: str) -> str:
        return Path(ref).name if is_local(ref) else ref

    on = f" on {name(data)}" if data else ""
    return f"{run.task.name} fine-tune of {name(model)}{on}, from recipe {run.resolved.name}"


def record(run, *, command: str, sets: list[str], model: str | None, model_desc: str, tiny: bool,
           class_weights: dict[str, float] | None, parameters: tuple[int, int],
           device: str, processes: int, scored: dict, features: dict) -> dict:
    """The `provenance:` section of a run's recipe.yaml."""
    info = run.data_info
    hub = not is_local(info.source)  # config and revision are a hub dataset's
    data = {"source": info.source, "config": run.recipe.data.config if hub else None,
            "revision": run.recipe.data.revision if hub else None,
            "train_split": info.train_split, "eval_split": info.eval_split, "eval_made": info.eval_made,
            "train_rows": info.train_rows, "eval_rows": info.eval_rows,
            # datasets' fingerprints of the exact rows used: they change when the data (or its selection) does
            "fingerprint": {name: getattr(ds, "_fingerprint", None) for name, ds in features.items()}}
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "recipe": run.resolved.name,
        "smoke": run.smoke,
        "sets": list(sets),
        "model": {"source": model_desc, "tiny": tiny, "given": model,
                  "revision": run.pretrained_kwargs().get("revision"),
                  "parameters": parameters[0], "trainable": parameters[1]},
        "data": data,
        "device": device,
        "processes": processes,
        "scored": scored,
        "class_weights": class_weights,  # the loss weight per label the run used (train.class_weights)
        "versions": versions(),
    }


def write_run_files(run, out: Path, recipe: dict, metrics: dict, train_loss: float, plots: list[Path] = ()) -> None:
    """recipe.yaml, metrics.json and README.md next to the saved model (`plots`: the run report's PNGs)."""
    import yaml

    prov = recipe["provenance"]
    header = (f"# The recipe of the run in this folder, as it ran: --model, --data, --set and --smoke folded in.\n"
              f"# Ran as:  {prov['command'] or 'taskcli finetune ' + run.task.name}\n"
              f"# Repeat:  taskcli finetune {run.task.name} --recipe {out / 'recipe.yaml'}\n"
              f"# Use:     taskcli eval {run.task.name} --recipe {out / 'recipe.yaml'}  (scores this folder's model)\n")
    (out / "recipe.yaml").write_text(header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    (out / "README.md").write_text(model_card(run, out, recipe, metrics, train_loss, plots))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "–" if value is None else str(value)


def metric_tables(metrics: dict) -> str:
    """Markdown: one table of the scalar metrics, one per nested metric (per class, per entity...)."""
    from taskcli.metrics import nested_tables, scalar_metrics

    scalars = scalar_metrics(metrics)
    parts = ["| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {_cell(v)} |" for k, v in scalars.items())]
    for key, first, cols, rows in nested_tables(metrics):
        body = "\n".join(f"| {name} | " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for name, row in rows.items())
        parts.append(f"### {key.replace('_', ' ')}\n\n| {first} | " + " | ".join(cols) + " |\n|---|"
                     + "---|" * len(cols) + "\n" + body)
    return "\n\n".join(parts)


def _report_section(out: Path, plots) -> str:
    if not plots:
        return ""
    images = "\n".join(f"{'' if p.suffix == '.png' else '- '}{'!' if p.suffix == '.png' else ''}"
                       f"[{p.stem.replace('_', ' ')}]({p.relative_to(out).as_posix()})" for p in plots)
    return f"## Report\n\n{images}\n\n"


def snippet(run, out: Path) -> str:
    """Python that runs the saved model with `transformers` alone, for people who do not use taskcli."""
    path = str(Path(out).resolve())
    task = run.task.name
    example = run.task.modality.example  # (a file name the reader replaces with theirs, for images and audio)
    if run.task.seq2seq and not run.task.modality.media:  # text to text: the task prefix, then generate()
        model_cls = "AutoModelForSeq2SeqLM" if run.seq2seq else "AutoModelForCausalLM"
        return (f"from transformers import AutoTokenizer, {model_cls}\n\n"
                f"tokenizer = AutoTokenizer.from_pretrained({path!r})\n"
                f"model = {model_cls}.from_pretrained({path!r})\n"
                f"# the task prefix the model was trained with (e.g. T5's \"summarize: \"); empty when there is none\n"
                f"prefix = (model.config.task_specific_params or {{}}).get({task!r}, {{}}).get(\"prefix\", \"\")\n"
                f"inputs = tokenizer(prefix + {example}, return_tensors=\"pt\", truncation=True)\n"
                f"output = model.generate(**inputs, max_new_tokens=64)\n"
                f"print(tokenizer.decode(output[0], skip_special_tokens=True))\n")
    if {"question", "context"} <= set(run.task.columns):  # extractive QA: a question and its context
        return (f"import torch\nfrom transformers import {run.task.auto_model}, AutoTokenizer\n\n"
                f"tokenizer = AutoTokenizer.from_pretrained({path!r})\n"
                f"model = {run.task.auto_model}.from_pretrained({path!r})\n"
                f"question, context = \"Who wrote it?\", \"It was written by Ada Lovelace in 1843.\"\n"
                f"inputs = tokenizer(question, context, return_tensors=\"pt\", truncation=\"only_second\")\n"
                f"with torch.no_grad():\n    out = model(**inputs)\n"
                f"start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())\n"
                f"print(tokenizer.decode(inputs[\"input_ids\"][0][start:end + 1]))\n")
    return (f"from transformers import pipeline\n\n"
            f"pipe = pipeline({task!r}, model={path!r})\n"
            f"print(pipe({example}))\n")


def _training_notes(recipe: dict) -> str:
    """Early stopping, LoRA and class weights, in words, when the run used them."""
    prov, train = recipe["provenance"], recipe["train"]
    notes = []
    scored = prov["scored"]
    if "stopped_early_at" in scored:
        notes.append(f"Early stopping ended training at step {scored['stopped_early_at']} of "
                     f"{scored['planned_steps']} (no better {scored.get('metric', 'metric')} for "
                     f"{train['early_stopping_patience']} evaluations); the best checkpoint was kept.")
    if train.get("lora"):
        lora = train["lora"]
        notes.append(f"LoRA (r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}): "
                     f"{prov['model']['trainable']:,} of {prov['model']['parameters']:,} parameters trained. This "
                     f"folder holds the merged model; the adapter alone is in `adapter/`.")
    if prov.get("class_weights"):
        weights = ", ".join(f"{k} {v:.3g}" for k, v in prov["class_weights"].items())
        notes.append(f"Class-weighted loss ({train['class_weights'] if isinstance(train['class_weights'], str) else 'given'}"
                     f"): {weights}.")
    return "\n\n".join(notes) + ("\n\n" if notes else "")


def model_card(run, out: Path, recipe: dict, metrics: dict, train_loss: float, plots=()) -> str:
    prov = recipe["provenance"]
    data, model = prov["data"], prov["model"]
    revision = f" (revision `{model['revision']}`)" if model["revision"] else ""
    source = model["source"] if model["tiny"] else f"`{model['source']}`"
    scored = prov["scored"]
    return f"""---
library_name: transformers
pipeline_tag: {run.task.name}
tags: [taskcli, {run.task.name}]
---

# {Path(out).name}

Fine-tuned with [taskcli](https://pypi.org/project/taskcli/) from {source}{revision} on `{data['source']}`
({data['train_rows'] if data['train_rows'] is not None else 'streamed'} training rows from split `{data['train_split']}`; {data['eval_rows']} evaluation rows:
{data['eval_made']}){' — a --smoke run' if run.smoke else ''}.

```bash
{prov['command'] or 'taskcli finetune ' + run.task.name}
```

Repeat it with `taskcli finetune {run.task.name} --recipe {Path(out) / 'recipe.yaml'}`: `recipe.yaml` holds the
recipe as it ran and its provenance (every --set, library versions, data fingerprints).

## Evaluation

Scored on the eval split with the {scored['checkpoint']} checkpoint (step {scored['step']}{
    f", by {scored['metric']}" if scored['checkpoint'] == 'best' else ''}).

{metric_tables(metrics)}

Training loss: {train_loss:.4f}.

{_training_notes(recipe)}{_report_section(out, plots)}## Use

```bash
taskcli infer {run.task.name} --model {out} ...
```

```python
{snippet(run, out)}```
"""
