"""Exported NER model vs PyTorch on a TRAINED model (issue 20): entity F1 of torch fp32, ONNX fp32 and ONNX int8
(`taskcli export --quantize int8`, its parity gate at the default tolerance), then whole `taskcli infer ner FILE
--json` processes over 1,000 mixed-length sentences with each (start-up and model loading included), a one-line
infer each, and how often the exported models' entities agree with PyTorch's.

The model is DistilBERT-base size (bench_ner_infer.build_model: dim 768, 6 layers, a 30,522-row embedding), random
init, trained here by `taskcli finetune ner` for --steps steps, aiming at eval entity F1 >= 0.8 (printed OK/MISS:
150 steps, 36 minutes on 2 shared cores, reached 0.25; more steps need more time). The corpus is SYNTHETIC
(bench/ner_corpus.py): no NER corpus big enough is bundled and the benchmark runs offline. Template clauses filled
from PER/LOC/ORG name lists, the eval split's names held out of training, mixed lengths as bench_ner_infer.sentences;
the tokenizer's vocabulary is the templates' words, so every name is split into word pieces. Everything is written
under one temporary folder (the datasets cache too). Targets: onnx fp32 >= 1.3x torch, int8 >= 3x, int8 F1 within
0.01 of fp32 on a model with F1 >= 0.8.

    .venv/bin/python bench/bench_export.py [--steps 150] [--lr 5e-4]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import export_table as table  # noqa: E402
import ner_corpus  # noqa: E402
from bench_ner_infer import build_model  # noqa: E402


def train(tmp: Path, steps: int, lr: float, env: dict) -> dict:
    """`taskcli finetune ner` from random init on the synthetic corpus; returns its --json report."""
    import json

    data = ner_corpus.write(tmp / "data", n_train=4000, n_eval=500)
    # fixed sinusoidal positions: the long eval sentences reach positions no short training row trained; no dropout:
    # fewer steps to the F1 target (neither changes the forward's cost)
    build_model(str(tmp / "base"), ner_corpus.vocab_texts(), sinusoidal_pos_embds=True, dropout=0.0,
                attention_dropout=0.0)
    with (tmp / "finetune.json").open("w") as fh:
        took = table.taskcli("finetune", "ner", "--model", str(tmp / "base"), "--data", str(data), "-o",
                             str(tmp / "torch"), "--set", f"train.max_steps={steps}", "--set",
                             f"train.learning_rate={lr}", "--set", "train.warmup_ratio=0.1", "--set",
                             "train.batch_size=16", "--set", "train.eval_strategy=no", "--set",
                             "train.save_total_limit=1", "--json", out=fh, env=env)
    report = json.loads((tmp / "finetune.json").read_text())
    f1 = report["metrics"]["f1"]
    print(f"finetune ner: {steps} steps, batch 16, lr {lr}, {took:.0f} s (load average {table.load()}); eval "
          f"entity F1 {f1:.4f} on 500 sentences with held-out names (target >= 0.8) {'OK' if f1 >= 0.8 else 'MISS'}",
          flush=True)
    return report


def entities(path: Path) -> list[list[tuple]]:
    return [[(e["entity_group"], e["word"]) for e in row["entities"]] for row in table.rows(path)]


def main(steps: int, lr: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        env = {"HF_DATASETS_CACHE": str(tmp / "datasets"), "HF_HOME": str(tmp / "hf")}
        train(tmp, steps, lr, env)
        report = table.export("ner", tmp / "torch", tmp, ["--data", str(tmp / "data")], env=env)
        table.print_parity(report, "f1")
        f1 = {fmt: report["metrics"][fmt]["f1"] for fmt in ("torch", "onnx-int8")}
        gap = f1["onnx-int8"] - f1["torch"]
        print(f"int8 F1 - fp32 F1 = {gap:+.4f} (target within 0.01) {'OK' if abs(gap) <= 0.01 else 'MISS'}")
        texts = [" ".join(r["tokens"]) for r in ner_corpus.rows(1000, held_out=True, seed=2)]
        (tmp / "sentences.txt").write_text("\n".join(texts) + "\n")
        what = f"1,000 NER sentences ({sum(len(t.split()) for t in texts):,} words, batch 32)"
        results, runs = table.speed_table("ner", tmp, [str(tmp / "sentences.txt")], texts[0], what,
                                    ("--batch-size", "32"), env=env)
        table.print_ratios(runs, {"onnx": 1.3, "int8": 3.0})
        ref = entities(results["torch"])
        for fmt in ("onnx", "int8"):
            same = sum(a == b for a, b in zip(ref, entities(results[fmt])))
            print(f"{table.NAMES[fmt]}: the same entities as torch fp32 in {same} of {len(ref)} sentences")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    main(args.steps, args.lr)
