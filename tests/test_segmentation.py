"""image-segmentation end to end on a tiny SegFormer: finetune --smoke -> eval -> infer (--save-maps), parity
with transformers.pipeline, masks and labels input, and the IoU scores against scikit-learn."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from taskcli import images
from taskcli.errors import TaskcliError

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA
COCO = REAL / "COCO" / "000000039769.jpg"
SAMPLE = ROOT / "taskcli" / "samples" / "image-segmentation"


@pytest.fixture(scope="module", params=["segformer", "mask2former"])
def seg_dir(trained, request):
    """Per-pixel classifier and universal mask classifier: the same data, metrics and outputs. One smoke training
    each, shared with test_export's cases."""
    return trained("image-segmentation", None if request.param == "segformer" else request.param)


@pytest.mark.slow
def test_smoke_learns_and_eval_agrees(cli, seg_dir):
    name = yaml.safe_load((seg_dir / "recipe.yaml").read_text())["model"]["type"]  # the recipe is named after it
    before = cli("eval", "seg", "--smoke", "--recipe", name, "--json")
    after = cli("eval", "seg", "--smoke", "--recipe", name, "--model", seg_dir, "--json")
    assert before.exit_code == 0 and after.exit_code == 0, before.stderr + after.stderr
    untrained, trained = (json.loads(r.stdout)["metrics"] for r in (before, after))
    assert untrained["mean_iou"] < 0.3 and trained["mean_iou"] >= 0.75, (untrained, trained)
    assert trained["overall_accuracy"] >= 0.9 and set(trained["per_class_iou"]) == {"background", "cat", "remote", "toy"}
    saved = json.loads((seg_dir / "metrics.json").read_text())
    assert abs(saved["mean_iou"] - trained["mean_iou"]) < 1e-6


@pytest.mark.slow
def test_infer_saves_masks_and_matches_pipeline(cli, seg_dir, tmp_path):
    from transformers import pipeline

    inputs = [str(COCO), str(SAMPLE / "images" / "seg_03.jpg"), str(SAMPLE / "images" / "seg_10.jpg")]
    result = cli("infer", "seg", *inputs, "--model", seg_dir, "--save-maps", tmp_path / "masks", "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    pipe = pipeline("image-segmentation", model=str(seg_dir), device="cpu")
    for path, row in zip(inputs, rows):
        ours = np.asarray(Image.open(row["mask"]))
        assert ours.shape == Image.open(path).size[::-1]  # the input's own size
        assert abs(sum(s["share"] for s in row["segments"]) - 1) < 1e-6
        theirs = pipe(path, subtask="semantic")
        assert {s["label"] for s in row["segments"]} == {t["label"] for t in theirs}
        id_of = {s["label"]: s["id"] for s in row["segments"]}
        for t in theirs:
            # batched forward passes differ from the pipeline's one-image passes in the last float bits, which can
            # flip a pixel whose two best classes tie (1 pixel of 4096 was seen): agreement, not bit equality
            agree = (np.asarray(t["mask"]) > 0) == (ours == id_of[t["label"]])
            assert agree.mean() >= 0.995, (path, t["label"], agree.mean())
    # the whole photo the 64 px training crops came from: COCO's own cat polygons are the truth
    truth = Image.new("L", (640, 480), 0)
    for ann in json.loads((REAL / "COCO" / "coco_annotations.txt").read_text()):
        if ann["category_id"] == 17:
            for poly in ann["segmentation"]:
                ImageDraw.Draw(truth).polygon(list(zip(poly[::2], poly[1::2])), fill=1)
    cat = np.asarray(Image.open(rows[0]["mask"])) == 1
    truth = np.asarray(truth) == 1
    assert (cat & truth).sum() / (cat | truth).sum() >= 0.6


def test_existing_masks_are_not_overwritten(cli, seg_dir, tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "seg_03.png").write_bytes(b"precious")
    result = cli("infer", "seg", SAMPLE / "images" / "seg_03.jpg", "--model", seg_dir, "--save-maps", tmp_path / "masks")
    assert result.exit_code == 1 and "already exists" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "masks" / "seg_03.png").read_bytes() == b"precious"


def test_masks_load_as_class_ids(tmp_path):
    mask = images.load_mask(str(SAMPLE / "masks" / "seg_00.png"))  # palette PNG: indices are the ids
    assert mask.dtype == np.int64 and mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 1, 2, 3}
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "colour.png")
    with pytest.raises(TaskcliError, match="single-channel"):
        images.load_mask(str(tmp_path / "colour.png"))


def test_folder_rows_resolve_mask_paths():
    from taskcli.data import load_raw
    from taskcli.recipe import resolve
    from taskcli.registry import get

    recipe = resolve(get("image-segmentation"), None).recipe
    ds = load_raw(str(SAMPLE), recipe, "image")["train"]
    assert len(ds) == 12 and all(Path(p).is_file() for p in list(ds["image"]) + list(ds["mask"]))


def test_class_names_are_required(cli, tmp_path):
    result = cli("finetune", "seg", "--smoke", "--set", "smoke.data.labels=null", "--output-dir", tmp_path / "o")
    assert result.exit_code == 1 and "class names" in result.stderr and "data.labels" in result.stderr
    labels = tmp_path / "id2label.json"
    labels.write_text(json.dumps({"0": "background", "1": "cat", "2": "remote", "3": "toy"}))
    from taskcli.tasks.image_segmentation import labels as read_labels

    class R:
        class params:
            labels_file = str(labels)
    assert read_labels(R, None) == ["background", "cat", "remote", "toy"]


def test_iou_scores_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, jaccard_score, recall_score

    from taskcli.metrics import segmentation

    rng = np.random.default_rng(0)
    refs = rng.integers(0, 4, 5000)
    preds = np.where(rng.random(5000) < 0.7, refs, rng.integers(0, 4, 5000))
    preds[preds == 3] = 2  # class 3 is never predicted: IoU 0, recall 0
    cm = np.zeros((5, 5), dtype=np.int64)  # class 4 appears nowhere: left out of the means
    np.add.at(cm, (refs, preds), 1)
    got = segmentation(cm, ["a", "b", "c", "d", "e"])
    present = [0, 1, 2, 3]
    assert got["per_class_iou"]["e"] is None
    assert np.allclose([got["per_class_iou"][n] for n in "abcd"], jaccard_score(refs, preds, labels=present, average=None))
    assert abs(got["mean_iou"] - jaccard_score(refs, preds, labels=present, average="macro")) < 1e-12
    assert abs(got["mean_accuracy"] - recall_score(refs, preds, labels=present, average="macro")) < 1e-12
    assert abs(got["overall_accuracy"] - accuracy_score(refs, preds)) < 1e-12
