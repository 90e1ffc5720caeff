"""Run shipped recipes as written, the way a user online would: check, finetune (2 steps), then eval and infer
without --model. One process runs several recipes (imports are paid once) and prints one JSON line per recipe.

    python tests/replay/drive.py OUT_ROOT RECIPE [RECIPE ...]

The caller points HF_ENDPOINT at a ``ReplayHub`` and HF_HUB_CACHE at the replay cache.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "taskcli" / "samples"
PHOTO = str(SAMPLES / "object-detection" / "images" / "det_00.jpg")
CLIP = str(SAMPLES / "automatic-speech-recognition" / "clip_00.flac")

# One sample input per task for `infer`.
INPUTS = {
    "text-classification": "A gripping, beautifully acted film.",
    "token-classification": "Alice Martin works for Globex in Tokyo .",
    "question-answering": json.dumps({"question": "Where does Alice work?", "context": "Alice works for Globex in Tokyo."}),
    "text-generation": "The history of",
    "fill-mask": "The capital of France is <mask> .",
    "summarization": "The council approved the new budget on Tuesday after a long debate about school funding.",
    "translation": "The weather is nice today.",
    "image-classification": PHOTO,
    "image-segmentation": PHOTO,
    "object-detection": PHOTO,
    "depth-estimation": PHOTO,
    "audio-classification": CLIP,
    "automatic-speech-recognition": CLIP,
}
GENERATIVE = {"text-generation", "summarization", "translation", "automatic-speech-recognition"}
# Full-size inputs: DETR's 800-pixel images, SegFormer's and Mask2Former's 512, Whisper's 30-s log-mel window.
# check's probe (three forward+backward passes) on them cost more than the whole finetune step (DETR: ~45 of its
# 115 s). Their probe runs the same build_features + training_step the finetune below runs on the same rows; every
# other recipe keeps it, so the probe still meets each modality's real layout. (test_replay: the slow tier's four.)
FULL_SIZE = {"object-detection/detr", "image-segmentation/mask2former", "image-segmentation/segformer",
            "automatic-speech-recognition/whisper"}


def run_recipe(runner, app, recipe: str, out: Path) -> dict:
    task = recipe.split("/")[0]
    # Random weights never emit an end token: generate 8 tokens, not the recipe's 64-128 (beams and all else as
    # written). Loading, wiring and every code path stay the same.
    short = ["--set", "infer.generation.max_new_tokens=8"] if task in GENERATIVE else []
    steps = {
        # the data report a user reads before the run: the recipe's checkpoint and data as written; the probe times a
        # batch of 1 (its three passes of DETR's 800-pixel images cost more than the 2-step finetune at 2)
        "check": ["check", task, "--recipe", recipe, "--set", "train.batch_size=1", "--json",
                  *(["--no-probe"] if recipe in FULL_SIZE else [])],
        # two steps of batch 2 (collation of unequal rows still runs): the recipes' 8-32 full-size rows a step, times
        # accumulation, made DETR's and SegFormer's two steps ~2 minutes each on 2 cores; the code paths are the same
        "finetune": ["finetune", task, "--recipe", recipe, "--output-dir", str(out), "--set", "train.max_steps=2",
                     "--set", "train.batch_size=2", "--set", "train.gradient_accumulation_steps=1", *short, "--json"],
        "eval": ["eval", task, "--recipe", recipe, *short, "--json"],
        "infer": ["infer", task, "--recipe", recipe, INPUTS[task], *short, "--json"],
    }
    report: dict = {"recipe": recipe, "output_dir": str(out)}
    for name, args in steps.items():
        start = time.perf_counter()
        result = runner.invoke(app, args, catch_exceptions=True)
        error = None if result.exception is None or isinstance(result.exception, SystemExit) else repr(result.exception)
        # stdout whole (it is JSON to parse); stderr's end holds the error line
        report[name] = {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr[-4000:],
                        "exception": error, "seconds": round(time.perf_counter() - start, 1)}
    # Full-size random weights plus a checkpoint with optimizer state are ~0.5-3 GB a recipe (12 GB in all):
    # note what was saved, then free the disk (CI runners have little).
    report["saved"] = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    shutil.rmtree(out, ignore_errors=True)
    return report


def main(out_root: str, recipes: list[str]) -> None:
    from typer.testing import CliRunner

    from taskcli.cli import app

    runner = CliRunner()
    for recipe in recipes:
        report = run_recipe(runner, app, recipe, Path(out_root) / recipe.replace("/", "__"))
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
