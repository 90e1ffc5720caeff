"""NER infer throughput: taskcli's batched, length-sorted predict vs transformers.pipeline, same inputs.

A DistilBERT-base-size token-classification model (random weights), 1,000 sentences of mixed length.
Targets: >= 2x the pipeline at batch size 1, >= 1.5x the pipeline at its best batch size, in-process and as whole
processes (`taskcli infer ner FILE --json` against a script that loads pipeline() and runs it over the same file,
start-up and model loading included).
"""

import os
import random
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ("Alice Martin works for Globex in Tokyo and Paris while the team from Acme Corp visited Berlin on "
             "Monday after shares rose sharply because investors said the new office would grow").split()
    return [" ".join(rng.choice(words) for _ in range(rng.choice([4, 8, 12, 20, 35, 60]))) + " ." for _ in range(n)]


def build_model(path: str, texts: list[str], pieces: tuple[str, ...] = (), embedding_std: float | None = None,
                **config_overrides) -> None:
    """A random-init DistilBERT-base-size NER model; its vocabulary: `texts`' words, their characters and `pieces`."""
    import torch
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    from taskcli.tiny.text import wordpiece_vocab
    from transformers import DistilBertTokenizer

    torch.manual_seed(0)
    vocab = wordpiece_vocab(texts)
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    tok = DistilBertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    config = DistilBertConfig(vocab_size=30522, num_labels=len(labels), id2label=dict(enumerate(labels)),
                              label2id={l: i for i, l in enumerate(labels)},  # base size: dim 768, 6 layers
                              **config_overrides)
    model = DistilBertForTokenClassification(config)
    if embedding_std is not None:
        torch.nn.init.normal_(model.distilbert.embeddings.word_embeddings.weight, std=embedding_std)
    model.save_pretrained(path)
    tok.save_pretrained(path)


PIPELINE_SCRIPT = """
import json, sys
from transformers import pipeline
pipe = pipeline("token-classification", model=sys.argv[1], aggregation_strategy="simple", device="cpu")
lines = open(sys.argv[2], encoding="utf-8").read().splitlines()
for text, out in zip(lines, pipe(lines, batch_size=int(sys.argv[3]))):
    print(json.dumps({"input": text, "entities": out}, default=float))
"""


def whole_process(cmd: list[str]) -> float:
    return timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    import torch
    from transformers import pipeline

    from taskcli import model_loading
    from taskcli.inference import predict_args

    texts = sentences(1000)
    with tempfile.TemporaryDirectory() as tmp:
        build_model(tmp, texts)
        run, model = model_loading.load_for_inference("token-classification", tmp, None, None, False)
        pipe = pipeline("token-classification", model=tmp, aggregation_strategy="simple", device="cpu")
        predict_args(run, model, texts[:16], {"batch_size": 16})  # warm-up
        pipe(texts[:16], batch_size=16)
        print(f"torch threads: {torch.get_num_threads()}, sentences: {len(texts)}")
        ours = {}
        for bs in (32, 64):
            ours[bs] = timed(lambda: predict_args(run, model, texts, {"batch_size": bs}))
            print(f"taskcli   batch {bs:>3}: {len(texts) / ours[bs]:7.1f} sentences/s")
        theirs = {}
        for bs in (1, 8, 32, 64):
            theirs[bs] = timed(lambda: pipe(texts, batch_size=bs))
            print(f"pipeline  batch {bs:>3}: {len(texts) / theirs[bs]:7.1f} sentences/s")
        best_ours = min(ours.values())
        best_bs = min(theirs, key=theirs.get)
        r1, rbest = theirs[1] / best_ours, theirs[best_bs] / best_ours
        print(f"speed-up vs pipeline batch 1:               {r1:.2f}x (target >= 2x)   {'OK' if r1 >= 2 else 'MISS'}")
        print(f"speed-up vs pipeline best batch ({best_bs:>2}):       {rbest:.2f}x (target >= 1.5x) "
              f"{'OK' if rbest >= 1.5 else 'MISS'}")
        path = os.path.join(tmp, "sentences.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(texts) + "\n")
        our_bs = min(ours, key=ours.get)  # taskcli's best batch size in process, for its whole-process run
        cli = whole_process([sys.executable, "-m", "taskcli", "infer", "token-classification", path, "--model", tmp,
                             "--json", "--batch-size", str(our_bs), "--no-progress"])
        print(f"whole process: taskcli batch {our_bs} {cli:6.1f} s", end="")
        procs = {bs: whole_process([sys.executable, "-c", PIPELINE_SCRIPT, tmp, path, str(bs)]) for bs in (1, best_bs)}
        print("".join(f"   pipeline batch {bs} {t:6.1f} s" for bs, t in procs.items()))
        w1, wbest = procs[1] / cli, procs[best_bs] / cli
        print(f"whole-process speed-up vs pipeline batch 1:          {w1:.2f}x (target >= 2x)   "
              f"{'OK' if w1 >= 2 else 'MISS'}")
        print(f"whole-process speed-up vs pipeline best batch ({best_bs:>2}): {wbest:.2f}x (target >= 1.5x) "
              f"{'OK' if wbest >= 1.5 else 'MISS'}")
        same = predict_args(run, model, texts[:50], {"batch_size": 32})
        ref = pipe(texts[:50], batch_size=8)
        agree = all([e["entity_group"] for e in a["entities"]] == [e["entity_group"] for e in b] for a, b in zip(same, ref))
        print(f"same entities as the pipeline on 50 sentences: {agree}")
