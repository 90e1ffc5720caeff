"""Generative-task benchmarks (offline, CPU, ~1-2 minutes):

1. causal-LM fine-tuning on the same text: packed fixed-size blocks (what `taskcli finetune text-generation`
   does) vs one example per line padded to the longest in its batch. Both run the real Trainer path for the
   same number of steps; "real tok/s" counts only tokens of text (no padding).
2. summarization infer: batched, length-sorted generate() (taskcli's path) vs one document at a time, with
   the outputs compared.

    .venv/bin/python bench/bench_generative.py [--steps 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WIKI = REPO.parent / "shared" / "realdata" / "wiki_text" / "wiki_00"
XSUM = REPO.parent / "shared" / "realdata" / "xsum" / "sample.json"


def lm_lines() -> list[str]:
    from taskcli.tasks.lm_common import DOC_TAG

    src = WIKI if WIKI.is_file() else REPO / "taskcli" / "samples" / "text-generation.txt"
    return [l for l in src.read_text(encoding="utf-8").splitlines() if l.strip() and not DOC_TAG.match(l)]


class PadCollator:
    """One line per example, right-padded to the longest in the batch; labels -100 on padding."""

    def __init__(self, pad_id):
        self.pad_id = pad_id

    def __call__(self, features):
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class CountingCollator:
    """Wraps a collator and counts the real (attended) tokens it hands to the model."""

    def __init__(self, inner):
        self.inner, self.real, self.total = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.real += int(batch["attention_mask"].sum())
        self.total += batch["attention_mask"].numel()
        return batch


def bench_packing(steps: int, batch_size: int, block: int) -> list[dict]:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from taskcli import tiny
    from taskcli.tasks.lm_common import CausalCollator

    datasets.disable_progress_bars()
    lines = lm_lines()
    tmp = tempfile.TemporaryDirectory()
    model_dir = tiny.build("gpt2", Path(tmp.name) / "tiny", lines, {"n_embd": 128, "n_layer": 2, "n_head": 4, "n_positions": 512, "tokenizer_vocab_size": 4000}, seed=0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    eos = tok.eos_token_id
    ids = [tok(l)["input_ids"] + [eos] for l in lines]
    flat = sum(ids, [])
    packed = datasets.Dataset.from_dict({"input_ids": [flat[i:i + block] for i in range(0, len(flat) - block + 1, block)]})
    padded = datasets.Dataset.from_dict({"input_ids": [x[:block] for x in ids]})
    rows = []
    for name, ds, coll in (("packing", packed, CausalCollator(eos)), ("padding", padded, PadCollator(eos))):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        counting = CountingCollator(coll)
        args = TrainingArguments(output_dir=str(Path(tmp.name) / name), max_steps=steps, per_device_train_batch_size=batch_size,
                                 learning_rate=1e-3, report_to=[], disable_tqdm=True, save_strategy="no",
                                 logging_strategy="no", use_cpu=True, seed=0, dataloader_drop_last=True)
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=counting)
        for noisy in (PrinterCallback, ProgressCallback):
            trainer.pop_callback(noisy)
        start = time.perf_counter()
        trainer.train()
        secs = time.perf_counter() - start
        rows.append({"mode": name, "examples": len(ds), "steps": steps, "seconds": secs,
                     "samples_per_s": steps * batch_size / secs, "real_tokens_per_s": counting.real / secs,
                     "padding_share": 1 - counting.real / max(counting.total, 1)})
    tmp.cleanup()
    return rows


def bench_summarization_infer(batch_size: int) -> dict:
    from taskcli import finetune as finetune_mod, model_loading, recipe
    from taskcli.data import sample_path
    from taskcli.registry import get

    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name) / "sum"
    t0 = time.perf_counter()
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # its progress display
        finetune_mod.finetune("summarization", smoke=True, flags=recipe.command_flags(output_dir=str(out)),
                              overwrite=True, log=lambda *_: None)
    train_s = time.perf_counter() - t0
    docs = [json.loads(l)["document"] for l in sample_path(get("summarization")).read_text().splitlines()]
    if XSUM.is_file():
        docs += [json.loads(l)["document"] for l in XSUM.read_text(encoding="utf-8").splitlines()]
    # smoke=True: the recipe's smoke settings (inputs cut at 128 tokens, 32 new tokens), as the model was trained
    from taskcli.inference import predict_args

    run, model = model_loading.load_for_inference("summarization", str(out), None, None, True)
    opts = {"top_k": 1}
    predict_args(run, model, docs[:2], dict(opts, batch_size=2))  # warm-up
    t = time.perf_counter()
    one = predict_args(run, model, docs, dict(opts, batch_size=1))
    one_s = time.perf_counter() - t
    t = time.perf_counter()
    batched = predict_args(run, model, docs, dict(opts, batch_size=batch_size))
    batched_s = time.perf_counter() - t
    same = sum(a == b for a, b in zip(one, batched))
    run.close()
    tmp.cleanup()
    return {"documents": len(docs), "train_s": train_s, "one_at_a_time_s": one_s, "batched_s": batched_s,
            "batch_size": batch_size, "speedup": one_s / batched_s, "identical_outputs": same}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1 is fastest)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    from taskcli.run import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(a.threads)
    print(f"torch threads: {torch.get_num_threads()}", file=sys.stderr)
    lm = bench_packing(a.steps, a.batch_size, a.block_size)
    summ = bench_summarization_infer(16)
    if a.json:
        print(json.dumps({"causal_lm_finetune": lm, "summarization_infer": summ}, indent=2))
        return
    print(f"\ncausal-LM fine-tune, tiny GPT-2, {a.steps} steps x batch {a.batch_size}, block {a.block_size} "
          f"({'wiki_00' if WIKI.is_file() else 'bundled sample'})")
    print(f"{'mode':<9} {'examples':>8} {'seconds':>8} {'samples/s':>10} {'real tok/s':>11} {'padding':>8}")
    for r in lm:
        print(f"{r['mode']:<9} {r['examples']:>8} {r['seconds']:>8.2f} {r['samples_per_s']:>10.1f} "
              f"{r['real_tokens_per_s']:>11.0f} {r['padding_share']:>7.0%}")
    ratio = lm[0]["real_tokens_per_s"] / lm[1]["real_tokens_per_s"]
    print(f"packing / padding, real tokens per second: {ratio:.2f}x (target >= 1.5x)")
    print(f"\nsummarization infer, tiny T5 (fine-tuned on the smoke sample in {summ['train_s']:.1f}s), "
          f"{summ['documents']} documents")
    print(f"{'mode':<28} {'seconds':>8} {'docs/s':>8}")
    print(f"{'one at a time':<28} {summ['one_at_a_time_s']:>8.2f} {summ['documents'] / summ['one_at_a_time_s']:>8.1f}")
    print(f"{'batched ' + str(summ['batch_size']) + ', length-sorted':<28} {summ['batched_s']:>8.2f} "
          f"{summ['documents'] / summ['batched_s']:>8.1f}")
    print(f"speed-up {summ['speedup']:.2f}x; identical outputs: {summ['identical_outputs']}/{summ['documents']}")


if __name__ == "__main__":
    main()
