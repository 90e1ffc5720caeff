"""Every shipped recipe, unchanged, against a recorded replay of the Hub (tests/replay/): check, finetune for two
steps, eval and infer without --model, through the same online code paths a user's run takes.

`pytest -k replay` selects these. The replay cache is built once (a few minutes) into .replay-cache/ and reused
while tests/replay/ is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiers import FULL_TIER, slow_tier  # not conftest: the export driver imports this module and must stay online
from taskcli import recipe as recipe_mod

REPO = Path(__file__).resolve().parent.parent
REPLAY = REPO / "tests" / "replay"
sys.path.insert(0, str(REPLAY))  # the driver (drive.py) and the server (hubserver.py)
from drive import FULL_SIZE  # noqa: E402
PHOTO = str(REPO / "taskcli" / "samples" / "object-detection" / "images" / "det_00.jpg")
CASES = [recipe_mod.shipped_name(p) for p in recipe_mod.shipped()]

# Slowest first (measured), dealt alternately to the two driver processes so both finish together.
HEAVY = ["object-detection/detr", "automatic-speech-recognition/whisper", "audio-classification/wav2vec2",
         "summarization/t5-small", "summarization/bart", "audio-classification/hubert"]
# The four recipes with full-size inputs (drive.FULL_SIZE) took 56-72 s each of the replay's 426 s (59 %, summed over
# both drivers under load): the slow tier (CI) runs them, the everyday one (make test) the other 22. Their tasks'
# code paths run every time on the smoke models.
# A second recipe of a task on the same dataset as another (same columns, same infer default but for text-cls/bert,
# whose GLUE pair layout bert-stsb replays): only the checkpoint differs, whose facts are checked every run below.
# ~90 of the everyday replay's ~300 driver-seconds; CI (the slow tier) replays them too.
SAME_DATA = {"audio-classification/hubert": "audio-classification/wav2vec2", "fill-mask/bert": "fill-mask/distilroberta",
             "image-classification/convnext": "image-classification/vit",
             "text-generation/gpt2": "text-generation/distilgpt2",
             "token-classification/bert": "token-classification/distilbert",
             "text-classification/bert": "text-classification/bert-stsb"}
# A second recipe of a task whose dataset has the columns of the everyday partner's (SQuAD's are SQuAD v2's, OPUS
# Books' and WMT16's are one `translation` dict, XSum's are billsum's document and summary) or whose own parts run
# elsewhere every time (text-classification/distilbert's checkpoint and IMDB, fine-tuned streamed in
# test_streaming_a_hub_dataset; BART's summarization and T5's translation in the smoke tests). ~70 driver-seconds;
# CI (the slow tier) replays them too.
SAME_LAYOUT = {"text-classification/distilbert": "text-classification/distilbert-multilabel",
               "summarization/bart": "summarization/t5-small",
               "question-answering/distilbert": "question-answering/bert",
               "translation/t5-small": "translation/mbart"}
SLOW_REPLAY = FULL_SIZE | set(SAME_DATA) | set(SAME_LAYOUT)
# A recipe that cannot run a step without --model says so in one line: (step, what the line names).
EXPECTED_ERRORS = {
    # the only CPPE-5 DETRs on the Hub build timm backbones; the COCO checkpoint's labels are not CPPE-5's
    ("object-detection/detr", "eval"): "labels don't match",
}


def _fingerprint() -> str:
    """What the cache is made from: the facts and the builder (not the driver or the server, which only read it)."""
    h = hashlib.sha256()
    for path in sorted([*(REPLAY / "facts").rglob("*"), REPLAY / "build.py"]):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(path.relative_to(REPLAY).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def replay_cache() -> Path:
    """The replay cache for the current facts and generator (built once, reused across runs)."""
    from filelock import FileLock

    root = REPO / ".replay-cache"
    cache = root / _fingerprint()
    # test_replay_export.py may run on another pytest-xdist worker: one builds, the other waits for it
    with FileLock(str(REPO / ".replay-cache.lock")):
        if not (cache / "manifest.json").is_file():
            subprocess.run(["rm", "-rf", str(root)], check=True)
            subprocess.run([sys.executable, str(REPLAY / "build.py"), str(cache)], check=True, cwd=REPO)
    return cache


@pytest.fixture(scope="session")
def hub(replay_cache):
    from hubserver import ReplayHub

    server = ReplayHub(replay_cache)
    with server:
        yield server


def test_replay_covers_every_shipped_recipe():
    """Every model and dataset id a shipped recipe names has recorded facts, each with its sources."""
    import yaml

    from taskcli import registry

    assert len(CASES) == 26
    facts = {kind: {p.stem: yaml.safe_load(p.read_text()) for p in (REPLAY / "facts" / kind).glob("*.yaml")}
             for kind in ("models", "datasets")}
    for kind, found in facts.items():
        for stem, f in found.items():
            assert f["id"].replace("/", "--") == stem and f.get("sources"), f"facts/{kind}/{stem}.yaml: id or sources"
    for name in CASES:
        r = recipe_mod.resolve(registry.get(name.split("/")[0]), name).recipe
        for ref in (r.model.checkpoint, r.model.infer_default):
            if ref:
                assert ref.replace("/", "--") in facts["models"], f"{name}: no replay facts for model {ref}"
        assert r.data.dataset.replace("/", "--") in facts["datasets"], f"{name}: no facts for {r.data.dataset}"
        if r.model.revision:
            revisions = facts["models"][r.model.checkpoint.replace("/", "--")]
            assert r.model.revision in (revisions.get("other_revisions") or
                                        (revisions.get("tokenizer") or {}).get("other_revisions") or {})


def test_replay_builder_writes_multilabel_class_label_lists(tmp_path):
    """A card's `sequence: class_label` column (GoEmotions' labels) comes back from the written parquet as lists of
    ids that `datasets` names with the ClassLabel names, as the Hub's files do."""
    import datasets
    import yaml

    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_build", REPLAY / "build.py")  # not pypa's `build`
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    facts = yaml.safe_load((REPLAY / "facts" / "datasets" / "google-research-datasets--go_emotions.yaml").read_text())
    simplified = next(c for c in facts["configs"] if c["name"] == "simplified")
    features = build.parse_features(simplified["features"])
    build.write_parquet(tmp_path / "validation.parquet", facts["rows"]["simplified"]["validation"], features)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "validation.parquet"), split="train",
                               cache_dir=str(tmp_path / "cache"))
    labels = ds.features["labels"]
    assert isinstance(labels, (datasets.List, datasets.Sequence)) and isinstance(labels.feature, datasets.ClassLabel)
    assert len(labels.feature.names) == 28 and labels.feature.names[27] == "neutral"
    assert ds[1]["labels"] == [4, 27] and labels.feature.int2str(ds[1]["labels"]) == ["approval", "neutral"]


def online_env(hub, replay_cache, tmp_path) -> dict:
    """A user's environment online, with the replay standing in for the Hub."""
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(replay_cache),
                HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"), HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
                HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="30", PYTHONPATH=str(REPO),
                TASKCLI_REPORT="1")  # the run report on the real layouts too (it met hub Audio columns here)


def taskcli(env, cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskcli", *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def one_error_line(proc, *fragments):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_loading_script_repo_is_named_with_the_fix(hub, replay_cache, tmp_path):
    """leondz/wnut_17's main branch holds only wnut_17.py: the error says so, not "no network"."""
    proc = taskcli(online_env(hub, replay_cache, tmp_path), tmp_path, "finetune", "ner", "--set",
                   "data.dataset=leondz/wnut_17", "--set", "data.revision=null", "--set", "data.data_dir=null")
    line = one_error_line(proc, "leondz/wnut_17", "wnut_17.py", "refs/convert/parquet")
    assert "network" not in line


def test_missing_optional_package_is_named(hub, replay_cache, tmp_path):
    """The CPPE-5 DETR of the transformers examples builds a timm backbone; timm is not installed here."""
    pytest.importorskip("torch")
    try:
        import timm  # noqa: F401

        pytest.skip("timm is installed here")
    except ImportError:
        pass
    proc = taskcli(online_env(hub, replay_cache, tmp_path), tmp_path, "infer", "detection", PHOTO,
                   "--model", "qubvel-hf/detr-resnet-50-finetuned-10k-cppe5")
    one_error_line(proc, "qubvel-hf/detr-resnet-50-finetuned-10k-cppe5", "'timm'", "pip install timm", "no_timm")


def test_the_slow_tiers_second_recipes_share_their_partners_data():
    """SAME_DATA's claim, checked: each recipe left to the slow tier reads the same dataset as its everyday partner."""
    from taskcli import registry

    for slow, partner in SAME_DATA.items():
        a, b = (recipe_mod.resolve(registry.get(name.split("/")[0]), name).recipe for name in (slow, partner))
        assert slow.split("/")[0] == partner.split("/")[0] and a.data.dataset == b.data.dataset, (slow, partner)
        assert partner in CASES and partner not in SLOW_REPLAY
    for slow, partner in SAME_LAYOUT.items():  # the same task and column roles, replayed every run by its partner
        a, b = (recipe_mod.resolve(registry.get(name.split("/")[0]), name).recipe for name in (slow, partner))
        assert slow.split("/")[0] == partner.split("/")[0] and partner in CASES and partner not in SLOW_REPLAY
        assert set(a.data.columns) == set(b.data.columns), (slow, partner)


def test_unknown_hub_ids_are_not_found_not_offline(hub, replay_cache, tmp_path):
    env = online_env(hub, replay_cache, tmp_path)
    line = one_error_line(taskcli(env, tmp_path, "eval", "ner", "--model", "nobody/no-such-model"), "nobody/no-such-model")
    assert "not found" in line and "network" not in line
    line = one_error_line(taskcli(env, tmp_path, "finetune", "ner", "--data", "nobody/no-such-data"), "nobody/no-such-data")
    assert "not found" in line and "network" not in line


def test_streaming_a_hub_dataset(hub, replay_cache, tmp_path):
    """data.streaming on a shipped recipe's hub dataset: shards read as training consumes them."""
    proc = taskcli(online_env(hub, replay_cache, tmp_path), tmp_path, "finetune", "text-cls", "--recipe", "distilbert",
                   "-o", tmp_path / "out", "--set", "data.streaming=true", "--set", "train.max_steps=2", "--set",
                   "data.max_eval_samples=8", "--set", "train.eval_strategy=no",
                   # the replay's few rows fill the default 10,000-row buffer only by re-reading the file over HTTP
                   # once per pass (39 s -> 30 s for this command, measured here); a user's IMDB fills it in one pass
                   "--set", "data.shuffle_buffer=8", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = " ".join(proc.stderr.split())
    assert "stanfordnlp/imdb · train streamed (split 'train')" in header and "of the data's 'test' split" in header
    assert json.loads(proc.stdout)["metrics"]["accuracy"] is not None


def test_stsb_default_gives_its_number(hub, replay_cache, tmp_path):
    """bert-stsb's infer default, textattack/bert-base-uncased-STS-B, has one output and no problem_type (as on the
    Hub): infer gives the head's number itself, not a sigmoid of it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pair = {"text": "A man is playing a guitar.", "text_pair": "A man plays the guitar."}
    proc = taskcli(online_env(hub, replay_cache, tmp_path), tmp_path, "infer", "text-cls", "--recipe", "bert-stsb",
                   json.dumps(pair), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout)
    snap = next((replay_cache / "models--textattack--bert-base-uncased-STS-B" / "snapshots").iterdir())
    assert "problem_type" not in json.loads((snap / "config.json").read_text())
    tok, model = AutoTokenizer.from_pretrained(snap), AutoModelForSequenceClassification.from_pretrained(snap).eval()
    with torch.no_grad():
        raw = float(model(**tok(pair["text"], pair["text_pair"], return_tensors="pt")).logits[0, 0])
    assert row["label"] == "score" and row["score"] == pytest.approx(raw, abs=1e-4)


def test_eval_fetches_only_its_split(hub, replay_cache, tmp_path):
    """depth-estimation/glpn scores vikhyatk/nyu_depth_v2's validation split: a plain load_dataset downloads and
    prepares every split for it (train is ~32 GB of parquet); eval reads the builder's per-split file list and reads
    validation's files alone. (The replay's data files sit in the hub cache already, so what was read shows in what
    datasets prepared: one arrow table per split read.)"""
    proc = taskcli(online_env(hub, replay_cache, tmp_path), tmp_path, "eval", "depth", "--recipe", "glpn", "--set",
                   "data.max_eval_samples=2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["split"] == "validation"
    prepared = sorted(p.name for p in (tmp_path / "datasets-cache").rglob("*.arrow"))
    assert any("validation" in name for name in prepared), prepared
    assert not any("train" in name for name in prepared), prepared


@pytest.fixture(scope="session")
def replay_reports(hub, replay_cache, tmp_path_factory, request) -> dict:
    """The shipped recipes this session selected (-k 'mask2former' runs one) through finetune/eval/infer, in two
    driver processes (each imports once)."""
    root = tmp_path_factory.mktemp("replay")
    chosen = {item.callspec.params["recipe"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_replay_recipe_as_written"} or set(CASES)
    chosen = {r for r in chosen if FULL_TIER or r not in SLOW_REPLAY}
    order = [r for r in HEAVY if r in chosen] + [r for r in CASES if r not in HEAVY and r in chosen]
    halves = [order[0::2], order[1::2]]
    env = online_env(hub, replay_cache, root)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"  # two processes on two cores
    procs = [subprocess.Popen([sys.executable, str(REPLAY / "drive.py"), str(root / f"w{i}"), *half], env=env,
                              cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, half in enumerate(halves)]
    reports = {}
    for proc in procs:
        out, err = proc.communicate(timeout=3600)
        for line in out.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
                reports[report["recipe"]] = report
        reports.setdefault("_stderr", []).append(err[-3000:])
    # kept for a look after a failure (and the per-step seconds)
    (replay_cache.parent / "last-reports.json").write_text(json.dumps(reports, indent=1))
    return reports


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=slow_tier) if r in SLOW_REPLAY else r for r in CASES])
def test_replay_recipe_as_written(recipe, replay_reports):
    report = replay_reports.get(recipe)
    assert report, f"{recipe}: no report; driver stderr: {replay_reports['_stderr']}"
    for step in ("check", "finetune", "eval", "infer"):
        r = report[step]
        expected = EXPECTED_ERRORS.get((recipe, step))
        if expected:
            lines = [line for line in r["stderr"].splitlines() if line.strip()]
            assert r["exit_code"] == 1 and lines[-1].startswith("error: ") and expected in lines[-1], r["stderr"]
            continue
        assert r["exit_code"] == 0, f"{recipe} {step}: {r['stderr'][-1500:] or r['exception']}"
    assert {"config.json", "recipe.yaml"} <= set(report["saved"]), report["saved"]
    assert json.loads(report["finetune"]["stdout"])["metrics"]
    if ("eval" not in {s for (r, s) in EXPECTED_ERRORS if r == recipe}):
        assert json.loads(report["eval"]["stdout"])["metrics"]
    rows = [json.loads(line) for line in report["infer"]["stdout"].splitlines() if line.startswith("{")]
    assert len(rows) == 1 and "error" not in rows[0]
    if (recipe, "check") not in EXPECTED_ERRORS:  # the data report: rows per split and the plan, with a timed probe
        checked = json.loads(report["check"]["stdout"])
        assert checked["recipe"] == recipe and checked["problems"] == []
        assert checked["splits"]["train"]["rows"] > 0 and checked["splits"]["eval"]["rows"] > 0, checked["splits"]
        plan = checked["plan"]
        assert plan["batch_size"] == 1 and plan["total_steps"] >= 1, plan
        if recipe in FULL_SIZE:  # --no-probe: the plan without the timed pass
            assert "probe" not in plan and "estimated_epoch_seconds" not in plan, plan
        else:
            assert plan["probe"]["seconds_per_batch"] > 0 and plan["probe"]["peak_memory_mb"] > 0, plan
