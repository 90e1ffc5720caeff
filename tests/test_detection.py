"""object-detection end to end on a tiny DETR: finetune --smoke -> eval -> infer, parity with transformers.pipeline,
and the COCO scores against pycocotools run by hand."""

import json
from pathlib import Path

import pytest
from PIL import Image

from taskcli import inference

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA
COCO = REAL / "COCO" / "000000039769.jpg"
SAMPLE = ROOT / "taskcli" / "samples" / "object-detection"
# measured 0.36-0.46 over seeds (tiny DETR from scratch, 600 steps); untrained: 0
MAP50_TARGET = 0.25


@pytest.fixture(scope="module")
def detr_dir(trained):
    return trained("object-detection")  # one smoke training (~35 s), shared with test_export's case


@pytest.mark.slow
def test_smoke_learns_and_eval_agrees(cli, detr_dir):
    before, after = (cli("eval", "detection", "--smoke", "--json", *extra) for extra in ([], ["--model", detr_dir]))
    assert before.exit_code == 0 and after.exit_code == 0, before.stderr + after.stderr
    untrained, trained = (json.loads(r.stdout)["metrics"] for r in (before, after))
    assert untrained["map_50"] < 0.05 and trained["map_50"] >= MAP50_TARGET, (untrained, trained)
    assert set(trained["per_class_ap"]) == {"cat", "remote"}
    saved = json.loads((detr_dir / "metrics.json").read_text())
    assert abs(saved["map"] - trained["map"]) < 1e-6


@pytest.mark.slow
def test_infer_matches_pipeline(detr_dir):
    from transformers import pipeline

    paths = [str(SAMPLE / "images" / "det_00.jpg"), str(SAMPLE / "images" / "det_05.jpg"), str(COCO)]
    _, items, results = inference.infer("object-detection", paths, model=str(detr_dir), options={"threshold": 0.2})
    assert items == paths and any(r["objects"] for r in results)
    pipe = pipeline("object-detection", model=str(detr_dir), device="cpu")
    for path, ours in zip(paths, results):
        theirs = sorted(pipe(path, threshold=0.2), key=lambda o: -o["score"])
        assert [o["label"] for o in ours["objects"]] == [o["label"] for o in theirs], path
        w, h = Image.open(path).size
        for a, b in zip(ours["objects"], theirs):
            assert abs(a["score"] - b["score"]) < 1e-4
            # pipeline: ints, not clipped; ours: clipped to the image
            clipped = {k: min(max(b["box"][k], 0), w if k[0] == "x" else h) for k in ("xmin", "ymin", "xmax", "ymax")}
            assert all(abs(a["box"][k] - clipped[k]) <= 1 for k in clipped)
            assert 0 <= a["box"]["xmin"] <= a["box"]["xmax"] <= w and 0 <= a["box"]["ymin"] <= a["box"]["ymax"] <= h


def test_coco_scores_equal_pycocotools_by_hand():
    import contextlib
    import io

    from pycocotools.coco import COCO as Coco
    from pycocotools.cocoeval import COCOeval

    from taskcli.metrics import coco_detection

    refs = [[(0, [10, 10, 50, 60]), (1, [60, 20, 80, 30])], [(0, [0, 0, 40, 40])]]
    preds = [[(0, 0.9, [12, 8, 52, 58]), (1, 0.6, [58, 22, 79, 31]), (0, 0.3, [60, 20, 80, 30])],
             [(1, 0.8, [0, 0, 40, 40]), (0, 0.7, [2, 2, 38, 44])]]
    got = coco_detection(preds, refs, ["cat", "remote"])
    with contextlib.redirect_stdout(io.StringIO()):
        truth = Coco()
        truth.dataset = {"images": [{"id": 0}, {"id": 1}], "categories": [{"id": 1}, {"id": 2}], "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 40, 50], "area": 2000, "iscrowd": 0},
            {"id": 2, "image_id": 0, "category_id": 2, "bbox": [60, 20, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 0}]}
        truth.createIndex()
        dets = truth.loadRes([
            {"image_id": 0, "category_id": 1, "bbox": [12, 8, 40, 50], "score": 0.9},
            {"image_id": 0, "category_id": 2, "bbox": [58, 22, 21, 9], "score": 0.6},
            {"image_id": 0, "category_id": 1, "bbox": [60, 20, 20, 10], "score": 0.3},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 40, 40], "score": 0.8},
            {"image_id": 1, "category_id": 1, "bbox": [2, 2, 36, 42], "score": 0.7}])
        e = COCOeval(truth, dets, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert got["map"] == pytest.approx(e.stats[0]) and got["map_50"] == pytest.approx(e.stats[1])
    assert got["map_75"] == pytest.approx(e.stats[2]) and got["mar_100"] == pytest.approx(e.stats[8])
    assert 0 < got["map"] < 1 and got["per_class_ap"]["cat"] > got["per_class_ap"]["remote"]
    assert coco_detection([[], []], refs, ["cat", "remote"])["map"] == 0.0  # nothing found: zero, not an error


def test_local_detection_data(tmp_path):
    from taskcli.data import load_raw
    from taskcli.recipe import resolve
    from taskcli.registry import get

    recipe = resolve(get("object-detection"), None).recipe
    ds = load_raw(str(SAMPLE), recipe, "image")["train"]
    assert len(ds) == 12 and Path(ds[0]["image"]).is_file()
    assert set(ds[0]["objects"]) == {"bbox", "category"} and len(ds[0]["objects"]["bbox"][0]) == 4
