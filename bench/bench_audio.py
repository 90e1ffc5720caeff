"""ASR inference throughput: taskcli vs transformers.pipeline, and audio decoding time per file.

    .venv/bin/python bench/bench_audio.py [--clips 50] [--new-tokens 8] [--precisions fp32,bf16] [--json]

Model: Whisper with whisper-tiny's dimensions (d_model 384, 4+4 layers, 6 heads, 30 s window), random weights,
built offline (tokenizer learnt from the bundled transcripts, so the vocabulary is smaller than the real 51865).
Every generation is forced to the same length (min_new_tokens = max_new_tokens), so both sides do equal work.
Inputs: `--clips` files of mixed length (0.4 s .. 25 s: bundled clips and concatenations of them), written as
FLAC. taskcli is timed from file paths (decoding included); the pipeline gets the already decoded arrays
({"raw", "sampling_rate"}: its own path input needs an ffmpeg binary), which only flatters the pipeline.
Each precision is compared like for like: taskcli `--precision bf16` against pipeline(dtype=torch.bfloat16).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

SAMPLE = ROOT / "taskcli" / "samples" / "automatic-speech-recognition"
REAL = ROOT / ".." / "shared" / "realdata" / "audio"


def make_clips(out: Path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    clips = [sf.read(p, dtype="float32")[0] for p in sorted(glob.glob(str(SAMPLE / "*.flac")))]
    paths = []
    for i in range(n):
        parts, total = [], 0.0
        target = float(rng.choice([0.5, 1.5, 3, 6, 12, 25]))
        while total < target:
            c = clips[int(rng.integers(len(clips)))]
            parts += [c, np.zeros(int(16000 * rng.uniform(0.1, 0.6)), dtype=np.float32)]
            total += (len(c) + len(parts[-1])) / 16000
        a = np.concatenate(parts)[: int(25 * 16000)]
        path = out / f"clip_{i:03d}.flac"
        sf.write(path, a, 16000)
        paths.append(str(path))
    return paths


def build_model(out: Path) -> None:
    import json as _json

    from taskcli.tiny import build

    texts = [_json.loads(line)["transcription"] for line in (SAMPLE / "metadata.jsonl").read_text().splitlines()]
    build("whisper", out, texts, {"chunk_length": 30, "d_model": 384, "encoder_layers": 4, "decoder_layers": 4,
                                  "encoder_attention_heads": 6, "decoder_attention_heads": 6,
                                  "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536}, seed=0)


def bench_taskcli(model_dir: str, paths: list[str], batch_size: int, new_tokens: int,
                  precision: str) -> tuple[float, list[str]]:
    from taskcli import model_loading
    from taskcli.inference import predict_args

    sets = [f"infer.precision={'no' if precision == 'fp32' else precision}"]
    run, model = model_loading.load_for_inference("asr", model_dir, None, sets, False)
    options = {"batch_size": batch_size, "max_new_tokens": new_tokens}
    run.recipe.infer.generation["min_new_tokens"] = new_tokens  # (not an infer flag: through the recipe)
    start = time.perf_counter()
    results = predict_args(run, model, paths, options)
    elapsed = time.perf_counter() - start
    run.close()
    return elapsed, [r["text"] for r in results]


def bench_pipeline(model_dir: str, arrays: list, batch_size: int, new_tokens: int, precision: str) -> float:
    import torch
    from transformers import pipeline

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    pipe = pipeline("automatic-speech-recognition", model=model_dir, device="cpu", dtype=dtype)
    inputs = [{"raw": a, "sampling_rate": 16000} for a in arrays]
    # force_unique_generate_call: one decoding pass per clip, as taskcli does for clips within the window (a random
    # model emits stray timestamp tokens that would otherwise make Whisper decode the clip again)
    kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "language": "en", "task": "transcribe",
          "force_unique_generate_call": True}
    start = time.perf_counter()
    # inputs longer than the 30 s window would need chunk_length_s; the bench keeps every clip <= 25 s
    pipe(inputs, batch_size=batch_size, generate_kwargs=kw)
    return time.perf_counter() - start


def bench_decoding(paths: list[str]) -> dict:
    from taskcli import audio

    files = paths + [str(p) for p in sorted(REAL.iterdir()) if p.suffix != ".pcm"] if REAL.is_dir() else paths
    start = time.perf_counter()
    for p in files:
        audio.load(p, 16000)
    ours = (time.perf_counter() - start) / len(files)
    out = {"files": len(files), "soundfile_soxr_ms_per_file": round(ours * 1000, 3)}
    if shutil.which("ffmpeg"):
        from transformers.pipelines.audio_utils import ffmpeg_read

        start = time.perf_counter()
        for p in files:
            ffmpeg_read(Path(p).read_bytes(), 16000)
        theirs = (time.perf_counter() - start) / len(files)
        out.update(ffmpeg_ms_per_file=round(theirs * 1000, 3), speedup=round(theirs / ours, 1))
    else:
        out["ffmpeg"] = ("absent: pipeline(path) cannot decode files here at all; compared instead with "
                         "soundfile decode + numpy linear-interpolation resampling")
        start = time.perf_counter()
        for p in files:
            a, sr = sf.read(p, dtype="float32", always_2d=True)
            a = a.mean(axis=1)
            n = int(round(len(a) * 16000 / sr))
            np.interp(np.linspace(0, len(a) - 1, n), np.arange(len(a)), a)
        out["soundfile_numpy_interp_ms_per_file"] = round((time.perf_counter() - start) / len(files) * 1000, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from taskcli.run import quiet_libraries

    quiet_libraries()
    import torch

    torch.manual_seed(0)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    precisions = args.precisions.split(",")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    with tempfile.TemporaryDirectory(prefix="taskcli-bench-") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "whisper-tiny-size"
        build_model(model_dir)
        paths = make_clips(tmp, args.clips)
        from taskcli import audio

        arrays = [audio.load(p, 16000) for p in paths]
        seconds = sum(len(a) for a in arrays) / 16000
        report: dict = {"clips": len(paths), "audio_seconds": round(seconds, 1), "new_tokens": args.new_tokens,
                        "threads": torch.get_num_threads(), "cpu_has_avx512_bf16": "avx512_bf16" in flags,
                        "runs": {}}
        texts = {}
        for p in precisions:
            taskcli_s, pipeline_s = {}, {}
            for b in sizes:
                taskcli_s[b], texts[p, b] = bench_taskcli(str(model_dir), paths, b, args.new_tokens, p)
                pipeline_s[b] = bench_pipeline(str(model_dir), arrays, b, args.new_tokens, p)
                print(f"{p} batch {b}: taskcli {taskcli_s[b]:.1f}s, pipeline {pipeline_s[b]:.1f}s",
                      file=sys.stderr, flush=True)
            best_t, best_p = min(taskcli_s.values()), min(pipeline_s.values())
            report["runs"][p] = {
                "taskcli_s": {str(k): round(v, 2) for k, v in taskcli_s.items()},
                "pipeline_s": {str(k): round(v, 2) for k, v in pipeline_s.items()},
                "speedup_vs_pipeline_bs1": round(pipeline_s[1] / best_t, 2) if 1 in sizes else None,
                "speedup_vs_pipeline_best": round(best_p / best_t, 2),
                "same_text_across_batch_sizes": len({tuple(texts[p, b]) for b in sizes}) == 1,
            }
        if "fp32" in precisions and "bf16" in precisions:
            a, b = texts["fp32", sizes[0]], texts["bf16", sizes[0]]
            report["bf16_same_text_as_fp32"] = f"{sum(x == y for x, y in zip(a, b))}/{len(a)}"
        report["decoding"] = bench_decoding(paths)
    if args.json:
        print(json.dumps(report))
        return
    print(f"ASR infer, {report['clips']} clips ({report['audio_seconds']} s audio), whisper-tiny size, "
          f"{args.new_tokens} tokens each, {report['threads']} threads, "
          f"avx512_bf16: {report['cpu_has_avx512_bf16']}")
    print(f"{'precision':>9} {'batch':>6} {'taskcli s':>10} {'pipeline s':>11}")
    for p, r in report["runs"].items():
        for b in sizes:
            print(f"{p:>9} {b:>6} {r['taskcli_s'][str(b)]:>10} {r['pipeline_s'][str(b)]:>11}")
    for p, r in report["runs"].items():
        print(f"{p}: taskcli (best) vs pipeline bs1 {r['speedup_vs_pipeline_bs1']}x (target >= 2x), "
              f"vs pipeline best {r['speedup_vs_pipeline_best']}x (target >= 1.5x); "
              f"same text at every batch size: {r['same_text_across_batch_sizes']}")
    if "bf16_same_text_as_fp32" in report:
        print(f"bf16 text equal to fp32 text: {report['bf16_same_text_as_fp32']}")
    print(f"decoding: {json.dumps(report['decoding'])}")


if __name__ == "__main__":
    main()
