"""Exported vision, speech and text-generation models vs PyTorch (issue 20's "the same table"): `taskcli export --quantize int8`,
then whole `taskcli infer` processes with torch fp32, ONNX fp32 and ONNX int8 over the same inputs:

* image-classification, ViT-base size (hidden 768, 12 layers, 224 px, patch 16), over 200 JPEGs of mixed sizes cut
  from the bundled sample images;
* speech recognition, CTC at wav2vec2-base size (7 conv layers of 512, hidden 768, 12 layers), over 50 clips of
  0.5-6 s made from the bundled clips. CTC, not Whisper: Whisper is an encoder-decoder, which `export` refuses;
* text-generation, GPT-2 at distilgpt2 size (6 layers of 768, a 50,257-token vocabulary), 48 prompts of 3-12 words
  from the bundled sample, greedy, 32 new tokens each: generate() over the exported prefill and decode graphs.

Random weights (built offline; speed does not depend on the weights): the parity gate runs on the bundled sample
(`--smoke` scoring) at --tolerance 1, since the metric of a random model means nothing; its numbers and the
agreement of the outputs are printed anyway. Everything is written under one temporary folder.

    .venv/bin/python bench/bench_export_media.py [--images 200] [--clips 50] [--prompts 48] [--only vit|ctc|gpt2] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "taskcli" / "samples"

import export_table as table  # noqa: E402

SMALL = {"vit": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
         "ctc": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                     conv_dim=(64,) * 7)}  # --small: check the script in seconds


def build_vit(out: Path, small: bool) -> None:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = sorted(p.name for p in (SAMPLES / "image-classification").iterdir() if p.is_dir())  # the sample's
    config = ViTConfig(num_labels=len(labels), id2label=dict(enumerate(labels)),
                       label2id={n: i for i, n in enumerate(labels)}, **(SMALL["vit"] if small else {}))
    ViTForImageClassification(config).save_pretrained(out)  # ViTConfig's defaults are ViT-base's
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(out)


def make_images(out: Path, n: int) -> list[str]:
    """n JPEGs of mixed sizes (120-640 px a side), random crops of the bundled sample images, resized."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sorted((SAMPLES / "image-classification").glob("*/*.jpg"))]
    out.mkdir()
    paths = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(rng.integers(w // 2, w + 1)), int(rng.integers(h // 2, h + 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        size = (int(rng.integers(120, 641)), int(rng.integers(120, 481)))
        path = out / f"img_{i:03d}.jpg"
        photo.crop((x, y, x + cw, y + ch)).resize(size).save(path, quality=90)
        paths.append(str(path))
    return paths


def build_ctc(out: Path, small: bool) -> None:
    """Wav2Vec2ForCTC (Wav2Vec2Config's defaults are wav2vec2-base's) with a character vocabulary from the bundled
    transcripts, as `taskcli finetune asr --recipe wav2vec2` builds it."""
    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    from taskcli.tasks.speech_recognition import ctc_vocab

    texts = [json.loads(line)["transcription"] for line in
             (SAMPLES / "automatic-speech-recognition" / "metadata.jsonl").read_text().splitlines()]
    vocab = ctc_vocab(sorted(set("".join(texts).lower())))
    out.mkdir(parents=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                               word_delimiter_token="|", bos_token=None, eos_token=None)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0, ctc_loss_reduction="mean",
                            **(SMALL["ctc"] if small else {}))
    Wav2Vec2ForCTC(config).save_pretrained(out)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(out)


def make_clips(out: Path, n: int) -> list[str]:
    """n FLAC clips of 0.5-6 s: bundled clips, concatenated with short silences where the target is longer."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((SAMPLES / "automatic-speech-recognition").glob("*.flac"))]
    out.mkdir()
    paths = []
    for i in range(n):
        parts, total, target = [], 0.0, float(rng.choice([0.5, 1.5, 3, 6]))
        while total < target:
            clip = clips[int(rng.integers(len(clips)))]
            parts += [clip, np.zeros(int(16000 * rng.uniform(0.1, 0.4)), dtype=np.float32)]
            total += (len(clip) + len(parts[-1])) / 16000
        path = out / f"clip_{i:03d}.flac"
        sf.write(path, np.concatenate(parts)[: int(6 * 16000)], 16000)
        paths.append(str(path))
    return paths


def build_gpt2(out: Path, small: bool) -> None:
    """GPT2LMHeadModel at distilgpt2 size (6 layers of 768, GPT-2's 50,257-token vocabulary: the LM head is about half
    the work a token), with a byte-level BPE tokenizer from the bundled sample whose vocabulary is filled up to 50,257
    with placeholder tokens, so every id a random model draws decodes."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    from taskcli.tiny.lm import _bpe

    texts = (SAMPLES / "text-generation.txt").read_text().splitlines()
    vocab, merges = _bpe(texts, ["<|endoftext|>"], 600)
    size = 1000 if small else 50257
    for i in range(len(vocab), size):
        vocab[f"Ġfill{i}"] = i  # (Ġ: byte-level BPE's space)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, n_layer=6,
                        **(dict(n_embd=64, n_head=2) if small else {}))  # GPT2Config's defaults: 768 wide, 12 heads
    GPT2LMHeadModel(config).save_pretrained(out)
    tok.save_pretrained(out)


def make_prompts(out: Path, n: int) -> list[str]:
    """One text file of n prompts: the first 3-12 words of the bundled sample's lines."""
    import random

    rng = random.Random(0)
    lines = [line for line in (SAMPLES / "text-generation.txt").read_text().splitlines() if len(line.split()) > 3]
    prompts = [" ".join(lines[i % len(lines)].split()[: rng.randint(3, 12)]) for i in range(n)]
    out.mkdir()
    (out / "prompts.txt").write_text("\n".join(prompts) + "\n")
    return [str(out / "prompts.txt")]


def one_model(name: str, task: str, metric: str, build, make, n: int, small: bool, recipe: tuple[str, ...] = (),
              infer_args: tuple[str, ...] = ()) -> None:
    """Build, export (parity on the bundled sample), then the whole-process table at batch 8."""
    with tempfile.TemporaryDirectory(prefix="bench-export-media-") as tmp:
        tmp = Path(tmp)
        env = {"HF_DATASETS_CACHE": str(tmp / "datasets"), "HF_HOME": str(tmp / "hf")}
        build(tmp / "torch", small)
        inputs = make(tmp / "inputs", n)
        report = table.export(task, tmp / "torch", tmp, ["--smoke", "--tolerance", "1", *recipe], env=env)
        table.print_parity(report, metric)
        one = inputs[0] if len(inputs) > 1 else "The history of"
        results, runs = table.speed_table(task, tmp, inputs, one, f"{name}: {n} inputs",
                                          (*recipe, *infer_args, "--batch-size", "8"), env=env)
        table.print_ratios(runs, {"onnx": 1.3, "int8": 3.0})
        ref = [output(row) for row in table.rows(results["torch"])]
        for fmt in ("onnx", "int8"):
            same = sum(a == output(row) for a, row in zip(ref, table.rows(results[fmt])))
            print(f"{table.NAMES[fmt]}: the same output as torch fp32 on {same} of {len(ref)} inputs (random weights)")


def output(row: dict):
    """What an infer row predicts: the top label (image-classification) or the transcript (speech)."""
    return row["labels"][0]["label"] if "labels" in row else row.get("generated_text", row.get("text"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--only", choices=("vit", "ctc", "gpt2"))
    parser.add_argument("--small", action="store_true", help="tiny configs: check the script, not a figure")
    args = parser.parse_args()
    if args.only in (None, "vit"):
        one_model("ViT-base image-classification", "image-classification", "accuracy", build_vit, make_images,
                  args.images, args.small)
    if args.only in (None, "ctc"):
        one_model("wav2vec2-base CTC speech recognition", "asr", "wer", build_ctc, make_clips, args.clips,
                  args.small, ("--recipe", "wav2vec2"))
    if args.only in (None, "gpt2"):  # greedy, 32 new tokens a prompt (a random model never stops early)
        one_model("distilgpt2-size text-generation", "text-generation", "perplexity", build_gpt2, make_prompts,
                  args.prompts, args.small, infer_args=("--max-new-tokens", "32"))
