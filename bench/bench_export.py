"""Exported NER model vs PyTorch on a TRAINED model (issue 20): entity F1 of torch fp32, ONNX fp32 and ONNX int8
(`taskcli export --quantize int8`, its parity gate at the default tolerance), then whole `taskcli infer ner FILE
--json` processes over 1,000 mixed-length sentences with each (start-up and model loading included), a one-line
infer each, and how often the exported models' entities agree with PyTorch's.

The model is DistilBERT-base size (bench_ner_infer.build_model: dim 768, 6 layers, a 30,522-row embedding), random
init, trained here by `taskcli finetune ner` for --steps steps, aiming at eval entity F1 >= 0.8 (printed OK/MISS;
the figures are in README.md). The corpus is SYNTHETIC (bench/ner_corpus.py): no NER corpus big enough is bundled
and the benchmark runs offline. Template clauses with PER/LOC/ORG slots, mixed lengths as bench_ner_infer.sentences;
half the training slots take names from lists and the rest random letter strings; the eval split and the timed
sentences are new sentences with the listed names, and a second eval set has held-out names (what the model learnt
of the context alone: its F1 is printed for torch and int8 too). The tokenizer's vocabulary is the templates' words
and every pair of letters, so a name is split into two-letter pieces. Training batches are grouped by length
(Trainer's group_by_length sampler: 1.2-1.5 s a step here against 3.6 s for random batches of these mixed lengths).
Everything is written under one temporary folder (the datasets cache too). Targets: onnx fp32 >= 1.3x torch, int8
>= 3x, int8 F1 within 0.01 of fp32 on a model with F1 >= 0.8.

    .venv/bin/python bench/bench_export.py [--steps 800] [--lr 2e-4] [--batch-size 8] [--seen-share 0.5]
        [--eval-every 200] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import export_table as table  # noqa: E402
import ner_corpus  # noqa: E402
from bench_ner_infer import build_model  # noqa: E402


def train(tmp: Path, args: argparse.Namespace, env: dict) -> dict:
    """`taskcli finetune ner` from random init on the synthetic corpus; returns its --json report."""
    data = ner_corpus.write(tmp / "data", n_train=4000, n_eval=500, seen_share=args.seen_share)
    # Neither changes the forward's cost: fixed sinusoidal positions (the long eval sentences reach positions no short
    # training row trained), no dropout, and word embeddings drawn at std 1, not 0.02: the sinusoids are of size 1 and,
    # summed with 0.02-sized words before the LayerNorm, drown which token it is (the model then learnt little in
    # 150 steps); two-letter name pieces halve a name's tokens against single letters.
    build_model(str(tmp / "base"), ner_corpus.vocab_texts(), pieces=tuple(ner_corpus.name_pieces()),
                embedding_std=1.0, sinusoidal_pos_embds=True, dropout=0.0, attention_dropout=0.0)
    curve = ["--set", "train.eval_strategy=steps", "--set", f"train.eval_steps={args.eval_every}", "--set",
             "data.max_eval_samples=100"] if args.eval_every else ["--set", "train.eval_strategy=no"]
    with (tmp / "finetune.json").open("w") as fh:
        took = table.taskcli("finetune", "ner", "--model", str(tmp / "base"), "--data", str(data), "-o",
                             str(tmp / "torch"), "--set", f"train.max_steps={args.steps}", "--set",
                             f"train.learning_rate={args.lr}", "--set", "train.warmup_ratio=0.1", "--set",
                             "train.trainer_args.train_sampling_strategy=group_by_length", "--set",
                             f"train.batch_size={args.batch_size}", *curve, "--set", "train.save_total_limit=1",
                             "--json", out=fh, env=env)
    report = json.loads((tmp / "finetune.json").read_text())
    f1 = report["metrics"]["f1"]
    rows = 100 if args.eval_every else 500
    names = "training's" if args.seen_share else "held-out"
    print(f"finetune ner: {args.steps} steps, batch {args.batch_size}, lr {args.lr}, {took:.0f} s (load average "
          f"{table.load()}); eval entity F1 {f1:.4f} on {rows} new sentences with {names} names (target >= 0.8) "
          f"{'OK' if f1 >= 0.8 else 'MISS'}", flush=True)
    return report


def unseen_f1(tmp: Path, model: Path, env: dict) -> float:
    """Entity F1 of `taskcli eval ner --model MODEL` on the sentences with held-out names."""
    with (tmp / "eval-unseen.json").open("w") as fh:
        table.taskcli("eval", "ner", "--model", str(model), "--data", str(tmp / "data-unseen.jsonl"), "--json",
                      out=fh, env=env)
    return json.loads((tmp / "eval-unseen.json").read_text())["metrics"]["f1"]


def entities(path: Path) -> list[list[tuple]]:
    return [[(e["entity_group"], e["word"]) for e in row["entities"]] for row in table.rows(path)]


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        env = {"HF_DATASETS_CACHE": str(tmp / "datasets"), "HF_HOME": str(tmp / "hf")}
        train(tmp, args, env)
        # all 500 eval rows: with --eval-every the model's recipe keeps finetune's data.max_eval_samples=100
        report = table.export("ner", tmp / "torch", tmp, ["--data", str(tmp / "data"), "--set",
                                                          "data.max_eval_samples=500"], env=env)
        table.print_parity(report, "f1")
        f1 = {fmt: report["metrics"][fmt]["f1"] for fmt in ("torch", "onnx-int8")}
        gap = f1["onnx-int8"] - f1["torch"]
        print(f"int8 F1 - fp32 F1 = {gap:+.4f} (target within 0.01) {'OK' if abs(gap) <= 0.01 else 'MISS'}")
        held = {fmt: unseen_f1(tmp, tmp / folder, env) for fmt, folder in (("torch", "torch"), ("int8", "int8"))}
        print(f"on 500 sentences with held-out names (the context alone): entity F1 torch fp32 {held['torch']:.4f}, "
              f"onnx int8 {held['int8']:.4f} ({held['int8'] - held['torch']:+.4f})", flush=True)
        texts = [" ".join(r["tokens"]) for r in ner_corpus.rows(1000, held_out=not args.seen_share, seed=2)]
        (tmp / "sentences.txt").write_text("\n".join(texts) + "\n")
        what = f"1,000 NER sentences ({sum(len(t.split()) for t in texts):,} words, batch 32)"
        results, runs = table.speed_table("ner", tmp, [str(tmp / "sentences.txt")], texts[0], what,
                                    ("--batch-size", "32"), env=env)
        table.print_ratios(runs, {"onnx": 1.3, "int8": 3.0})
        ref = entities(results["torch"])
        for fmt in ("onnx", "int8"):
            same = sum(a == b for a, b in zip(ref, entities(results[fmt])))
            print(f"{table.NAMES[fmt]}: the same entities as torch fp32 in {same} of {len(ref)} sentences")
        if args.keep:  # the trained model, its exports and the timed sentences, for a closer look afterwards
            for name in ("torch", "onnx", "int8", "sentences.txt"):
                (shutil.copytree if (tmp / name).is_dir() else shutil.copy)(tmp / name, Path(args.keep) / name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--keep", metavar="DIR", help="copy the trained model, its exports and the sentences here")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seen-share", type=float, default=ner_corpus.SEEN_SHARE, help="training name slots filled "
                        "from the name lists the eval split uses (the rest: random letter strings); 0: eval names "
                        "are held out")
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate on 100 eval rows every N steps (the F1 "
                        "curve, on stderr's tables; the best model is kept)")
    main(parser.parse_args())
