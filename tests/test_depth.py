"""depth-estimation end to end on a tiny GLPN: finetune --smoke -> eval -> infer (--save-maps), parity with
transformers.pipeline, depth-map input formats, and the scores against scikit-learn."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taskcli import images
from taskcli.errors import TaskcliError

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA
COCO = REAL / "COCO" / "000000039769.jpg"
SAMPLE = ROOT / "taskcli" / "samples" / "depth-estimation"


@pytest.fixture(scope="module")
def depth_dir(trained):
    return trained("depth-estimation")  # one smoke training, shared with test_export's case


@pytest.mark.slow
def test_smoke_learns_and_eval_agrees(cli, depth_dir):
    before, after = (cli("eval", "depth", "--smoke", "--json", *extra) for extra in ([], ["--model", depth_dir]))
    assert before.exit_code == 0 and after.exit_code == 0, before.stderr + after.stderr
    untrained, trained = (json.loads(r.stdout)["metrics"] for r in (before, after))
    assert trained["abs_rel"] <= untrained["abs_rel"] / 3 and trained["delta1"] >= 0.8, (untrained, trained)
    saved = json.loads((depth_dir / "metrics.json").read_text())
    assert abs(saved["abs_rel"] - trained["abs_rel"]) < 1e-6


@pytest.mark.slow
def test_infer_saves_maps_and_matches_pipeline(cli, depth_dir, tmp_path):
    from transformers import pipeline

    inputs = [str(SAMPLE / "images" / "scene_03.png"), str(COCO)]  # 64x64 and 640x480: batched by size
    result = cli("infer", "depth", *inputs, "--model", depth_dir, "--save-maps", tmp_path / "maps", "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    pipe = pipeline("depth-estimation", model=str(depth_dir), device="cpu")
    for path, row in zip(inputs, rows):
        ours = np.load(row["depth"])
        assert ours.shape == Image.open(path).size[::-1] and Path(row["depth"]).with_suffix(".png").is_file()
        theirs = pipe(path)["predicted_depth"].numpy()
        assert np.abs(ours - theirs).max() < 1e-4
        assert abs(row["mean"] - float(ours.mean())) < 1e-5
    # the rendered scene: close to its true depth
    truth = images.load_depth(str(SAMPLE / "depth" / "scene_03.png"), 1000.0)
    assert np.mean(np.abs(np.load(rows[0]["depth"]) - truth) / truth) < 0.25
    again = cli("infer", "depth", inputs[0], "--model", depth_dir, "--save-maps", tmp_path / "maps")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_depth_maps_load_in_metres(tmp_path):
    mm = images.load_depth(str(SAMPLE / "depth" / "scene_00.png"), 1000.0)  # 16-bit PNG, millimetres
    assert mm.dtype == np.float32 and mm.shape == (64, 64) and 1.0 < mm.min() and mm.max() < 10.0
    Image.fromarray(mm, "F").save(tmp_path / "d.tiff")  # float TIFF: metres as they are
    assert np.allclose(images.load_depth(str(tmp_path / "d.tiff"), 1000.0), mm)
    np.save(tmp_path / "d.npy", mm)
    assert np.allclose(images.load_depth(str(tmp_path / "d.npy"), 1000.0), mm)
    assert np.allclose(images.load_depth(str(SAMPLE / "depth" / "scene_00.png"), 256.0) * 256 / 1000, mm)
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(TaskcliError, match="not a single-channel depth image"):
        images.load_depth(str(tmp_path / "rgb.png"), 1000.0)


def test_depth_scores_equal_scikit_learn():
    from sklearn.metrics import mean_absolute_percentage_error, mean_squared_error

    from taskcli.metrics import depth, depth_sums

    rng = np.random.default_rng(0)
    ref = rng.uniform(0.5, 8, (2, 16, 16))
    ref[0, :2] = 0  # no measurement: left out
    est = ref * rng.uniform(0.7, 1.4, ref.shape)
    valid = ref > 1e-3
    half = depth_sums(est[:1], ref[:1], valid[:1])  # two batches summed = one pass
    other = depth_sums(est[1:], ref[1:], valid[1:])
    got = depth({k: half[k] + other[k] for k in half})
    g, p = ref[valid], est[valid]
    ratio = np.maximum(p / g, g / p)
    assert abs(got["abs_rel"] - mean_absolute_percentage_error(g, p)) < 1e-12
    assert abs(got["rmse"] - np.sqrt(mean_squared_error(g, p))) < 1e-12
    assert abs(got["rmse_log"] - np.sqrt(mean_squared_error(np.log(g), np.log(p)))) < 1e-12
    assert abs(got["delta1"] - np.mean(ratio < 1.25)) < 1e-12 and abs(got["delta3"] - np.mean(ratio < 1.25 ** 3)) < 1e-12


def test_an_image_too_small_for_the_processor_is_a_bad_input(cli, depth_dir, tmp_path):
    """GLPN rounds sizes down to a multiple of 32: a smaller image is one input the model cannot take (one line,
    or an error row with --skip-bad), not a processor traceback."""
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 40)).save(small)
    result = cli("infer", "depth", str(small), "--model", depth_dir)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "small.png: it is 20x40 pixels; this model needs at least 32 on each side" in result.stderr
    result = cli("infer", "depth", str(small), str(DATA / "COCO" / "000000039769.jpg"), "--model", depth_dir,
                 "--skip-bad", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and "20x40" in rows[0]["error"] and rows[1]["size"] == [640, 480]
