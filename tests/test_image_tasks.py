"""image-classification end to end on tiny ViT / ConvNeXT: finetune --smoke -> eval -> infer, parity with
transformers.pipeline, image decoding (real files, RGBA, EXIF, bad files) and local image datasets."""

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from taskcli import images, inference
from taskcli.errors import TaskcliError

from conftest import assert_clean_error, DATA

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA
COCO = REAL / "COCO" / "000000039769.jpg"
RGBA = REAL / "images" / "test_image_rgba.png"
SAMPLE = ROOT / "taskcli" / "samples" / "image-classification"


def finetune(cli, out, *extra):
    result = cli("finetune", "image-classification", "--smoke", "--output-dir", out, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vit_dir(trained):
    return trained("image-classification")  # one smoke training, shared with the infer-table and serve tests


# ----------------------------------------------------------------------------- smoke: learns, evals, infers


@pytest.mark.slow
def test_vit_smoke_learns_evals_and_infers(cli, vit_dir):
    untrained = cli("eval", "image-classification", "--smoke", "--json")
    assert untrained.exit_code == 0, untrained.stderr
    before = json.loads(untrained.stdout)["metrics"]["accuracy"]
    result = cli("eval", "image-classification", "--smoke", "--model", vit_dir, "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["accuracy"] >= 0.9 and before <= 0.6, (before, metrics)
    assert set(metrics["per_class"]) == {"cat", "remote", "toy"}
    saved = json.loads((vit_dir / "metrics.json").read_text())
    assert abs(saved["accuracy"] - metrics["accuracy"]) < 1e-6 and abs(saved["loss"] - metrics["loss"]) < 1e-5
    # the whole COCO photo (two cats on a blanket), never seen uncropped
    result = cli("infer", "image-classification", COCO, "--model", vit_dir, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["labels"][0]["label"] == "cat"


@pytest.mark.slow
def test_convnext_recipe_learns(cli, tmp_path):
    summary = finetune(cli, tmp_path / "m", "--recipe", "convnext")
    assert summary["metrics"]["accuracy"] >= 0.9, summary


@pytest.mark.slow
def test_augmented_training_still_learns(cli, tmp_path):
    summary = finetune(cli, tmp_path / "m", "--set", "params.augment=true")
    assert summary["metrics"]["accuracy"] >= 0.9, summary


def test_augmentation_crops_inside_the_image_and_mirrors():
    from taskcli.tasks.image_classification import augmented

    image = Image.open(COCO).convert("RGB")
    rng = random.Random(0)
    sizes = set()
    for _ in range(20):
        out = augmented(image, (0.3, 0.6), rng)
        w, h = out.size
        assert 0.25 * 640 * 480 <= w * h <= 0.65 * 640 * 480 and w <= 640 and h <= 480
        sizes.add(out.size)
    assert len(sizes) > 10  # random sizes, not one fixed crop


# ----------------------------------------------------------------------------- parity with pipeline()


@pytest.mark.slow
def test_pipeline_parity(vit_dir):
    from transformers import pipeline

    paths = [str(p) for p in sorted(SAMPLE.rglob("*.jpg"))[::4]] + [str(COCO), str(RGBA)]
    _, items, results = inference.infer("image-classification", paths, model=str(vit_dir),
                                     options={"batch_size": 3, "top_k": 3})
    assert items == paths
    pipe = pipeline("image-classification", model=str(vit_dir), device="cpu")
    for path, ours in zip(paths, results):
        theirs = pipe(path, top_k=3)
        assert [r["label"] for r in ours["labels"]] == [r["label"] for r in theirs], path
        assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(ours["labels"], theirs)), path
    # bf16: same top label on the sample crops
    _, _, bf16 = inference.infer("image-classification", paths, model=str(vit_dir), sets=["infer.precision=bf16"])
    assert [r["labels"][0]["label"] for r in bf16[:-2]] == [r["labels"][0]["label"] for r in results[:-2]]


# ----------------------------------------------------------------------------- image input


def test_real_images_decode_to_rgb():
    coco, rgba = images.load(str(COCO)), images.load(str(RGBA))
    assert coco.mode == "RGB" and coco.size == (640, 480)
    assert rgba.mode == "RGB" and rgba.size == (200, 200)
    assert images.load({"bytes": RGBA.read_bytes(), "path": "x.png"}).size == (200, 200)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif)
    assert images.load(str(path)).size == (20, 40)


def test_bad_images_one_line_and_skip_bad(cli, vit_dir, tmp_path):
    empty, fake, good = tmp_path / "empty.png", tmp_path / "notes.jpg", SAMPLE / "cat" / "cat_00.jpg"
    empty.write_bytes(b"")
    fake.write_text("not a picture")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(COCO.read_bytes()[:2000])
    for bad, why in ((empty, "empty"), (fake, "not an image"), (truncated, "cut.jpg"), (tmp_path / "gone.jpg", "no such")):
        with pytest.raises(TaskcliError, match=why):
            images.load(str(bad))
    result = cli("infer", "image-cls", good, fake, "--model", vit_dir)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "notes.jpg" in lines[0] and "--skip-bad" in lines[0]
    result = cli("infer", "image-cls", good, fake, empty, "--model", vit_dir, "--skip-bad", "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]  # one row per input, in order
    assert [r["input"] for r in rows] == [str(good), str(fake), str(empty)] and "error" not in rows[0]
    assert "notes.jpg" in rows[1]["error"] and "empty.png" in rows[2]["error"] and "skipped 2 of 3" in result.stderr
    # an empty argument is not the current folder (Path("") is "."): one line, nothing read
    assert_clean_error(cli("infer", "image-cls", "", "--model", vit_dir), "an input argument is empty")


def test_folders_globs_and_stdin_expand(tmp_path, monkeypatch):
    import io
    import sys

    found = images.expand_inputs([str(SAMPLE / "toy")])
    assert found == sorted(str(p) for p in (SAMPLE / "toy").glob("*.jpg")) and len(found) == 8
    assert images.expand_inputs([str(SAMPLE / "*" / "*_00.jpg")]) == sorted(str(p) for p in SAMPLE.glob("*/*_00.jpg"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{COCO}\n\n{RGBA}\n"))
    assert images.expand_inputs(["-"]) == [str(COCO), str(RGBA)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskcliError, match="no image files"):
        images.expand_inputs([str(tmp_path / "empty")])


def test_local_image_datasets(tmp_path):
    from taskcli.data import load_raw
    from taskcli.recipe import resolve
    from taskcli.registry import get

    recipe = resolve(get("image-classification"), None).recipe
    ds = load_raw(str(SAMPLE), recipe, "image")["train"]  # one folder per label
    assert sorted(set(ds["label"])) == ["cat", "remote", "toy"] and all(Path(p).is_file() for p in ds["image"])
    folder = tmp_path / "photos"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "a.jpg").write_bytes(COCO.read_bytes())
    (folder / "train" / "metadata.csv").write_text("file_name,label\na.jpg,cat\n")
    (folder / "test").mkdir()
    (folder / "test" / "b.png").write_bytes(RGBA.read_bytes())
    (folder / "test" / "metadata.jsonl").write_text('{"file_name": "b.png", "label": "toy"}\n')
    dsd = load_raw(str(folder), recipe, "image")
    assert set(dsd) == {"train", "test"}
    assert dsd["train"][0] == {"image": str((folder / "train" / "a.jpg").resolve()), "label": "cat"}
    (tmp_path / "list.csv").write_text("path,kind\nphotos/train/a.jpg,cat\n")
    ds = load_raw(str(tmp_path / "list.csv"), recipe, "image")["train"]
    assert ds[0]["path"] == str((folder / "train" / "a.jpg").resolve())


@pytest.mark.slow
def test_finetune_from_csv_with_path_column(cli, tmp_path):
    rows = ["path,kind"] + [f"{p},{p.parent.name}" for p in sorted(SAMPLE.rglob("*.jpg"))]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    summary = finetune(cli, tmp_path / "m", "--data", tmp_path / "list.csv", "--set", "data.columns.image=path",
                       "--set", "data.columns.label=kind", "--set", "data.eval_fraction=0.25")
    assert set(summary["metrics"]["per_class"]) <= {"cat", "remote", "toy"} and "accuracy" in summary["metrics"]


def test_bad_training_image_hint_fits_training(cli, tmp_path, one_torch_thread):
    """A broken image in training data: the hint says to fix or remove it (--skip-bad is an infer option)."""
    import shutil

    sample = ROOT / "taskcli" / "samples" / "image-classification"
    photos = tmp_path / "photos"
    for label in ("cat", "toy"):
        (photos / label).mkdir(parents=True)
        for src in sorted((sample / label).glob("*.jpg"))[:4]:
            shutil.copy(src, photos / label / src.name)
    (photos / "cat" / "broken.jpg").write_text("not an image")
    result = cli("finetune", "image-classification", "--smoke", "--data", photos, "--output-dir", tmp_path / "out",
                 "--set", "train.max_steps=3")
    assert result.exit_code == 1
    line = [l for l in result.stderr.splitlines() if l.startswith("error: ")][0]
    assert "broken.jpg" in line and "remove it from the data" in line
