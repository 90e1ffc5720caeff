"""`infer --save-overlays DIR` for the three vision tasks (tiny untrained models on the bundled samples), and the
drawing functions of taskcli/overlays.py on hand-made images."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taskcli import overlays

from conftest import assert_clean_error

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "taskcli" / "samples"
DET = SAMPLES / "object-detection" / "images" / "det_00.jpg"
SEG = SAMPLES / "image-segmentation" / "images" / "seg_00.jpg"
DEPTH = SAMPLES / "depth-estimation" / "images" / "scene_00.png"
DET_CLASSES = {"cat": 0, "remote": 1}  # the tiny detector's classes: the sample's categories, sorted


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)


def rerun_refused(cli, args, written: Path):
    """The same command again: one clear error naming the file, which stays as it was."""
    before = (written.read_bytes(), written.stat().st_mtime_ns)
    again = cli(*args)
    assert_clean_error(again, str(written), "already exists", "choose another --save-overlays folder")
    assert len(again.stderr.strip().splitlines()) == 1
    assert (written.read_bytes(), written.stat().st_mtime_ns) == before


# --- the drawing functions ---------------------------------------------------------------------------------


def test_palette_is_fixed_distinct_and_cycles():
    colours = overlays.palette(25)
    assert colours.dtype == np.uint8 and colours.shape == (25, 3)
    # tab20's strong shades first (blue, orange, green, ...), then its light ones; id 20 starts again
    assert colours[:3].tolist() == [[31, 119, 180], [255, 127, 14], [44, 160, 44]]
    assert colours[10].tolist() == [174, 199, 232]
    assert len({tuple(c) for c in colours[:20].tolist()}) == 20
    assert (colours[20:] == colours[:5]).all()


def test_segmentation_blends_class_colours_at_half():
    white = Image.new("RGB", (4, 2), "white")
    label_map = np.array([[0, 0, 1, 1], [1, 1, 0, 0]])
    out = overlays.segmentation(white, label_map)
    assert out.size == (4, 2) and out.mode == "RGB"
    got = np.asarray(out, dtype=np.int64)
    # (255 + colour) / 2: blue (31, 119, 180) and orange (255, 127, 14) over white
    assert got[0, 0].tolist() == [143, 187, 218] and got[1, 3].tolist() == [143, 187, 218]
    assert np.abs(got[0, 2] - [255, 191, 134.5]).max() <= 0.5 and (got[1, 0] == got[0, 2]).all()
    with pytest.raises(ValueError, match="does not match"):
        overlays.segmentation(white, label_map[:, :3])


def test_depth_maps_near_to_bright_end_and_far_to_dark_end():
    from matplotlib import colormaps

    depth = np.array([[1.0, 2.0], [3.0, 5.0]], dtype=np.float32)  # metres
    out = overlays.depth(depth)
    assert out.size == (2, 2) and out.mode == "RGB"
    got = np.asarray(out, dtype=np.int64)
    magma = colormaps["magma"]
    assert got[0, 0].tolist() == list(magma(1.0, bytes=True)[:3])  # nearest: magma's bright end
    assert got[1, 1].tolist() == list(magma(0.0, bytes=True)[:3])  # farthest: its dark end
    brightness = got.sum(-1).ravel()
    assert brightness[0] > brightness[1] > brightness[2] > brightness[3]
    flat = np.asarray(overlays.depth(np.full((3, 3), 2.0)), dtype=np.int64)  # no range: no division by zero
    assert (flat == flat[0, 0]).all()


def test_boxes_outline_in_label_colour_and_caption_stays_inside():
    white = Image.new("RGB", (200, 100), "white")
    cat = {"label": "cat", "score": 0.87, "box": {"xmin": 60.0, "ymin": 50.0, "xmax": 120.0, "ymax": 90.0}}
    # min_side=0: drawn at the image's own size (small images are scaled up: see the next test)
    middle = np.asarray(overlays.boxes(white, [cat], DET_CLASSES, min_side=0), dtype=np.int64)
    blue, orange = overlays.palette(2).astype(np.int64).tolist()
    assert middle[70, 60].tolist() == blue and middle[89, 90].tolist() == blue  # left and bottom edges
    assert middle[70, 90].tolist() == [255, 255, 255]  # inside the box: the image
    assert np.asarray(white).min() == 255  # drawn on a copy
    # the caption sits above the box: its extent there is the caption's size
    rows, cols = np.nonzero((middle[:50] != 255).any(-1))
    caption = middle[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert cols.min() == 60 and rows.max() == 49 and caption.shape[1] > 30
    assert any(tuple(p) == tuple(blue) for p in caption.reshape(-1, 3))
    # a box in the top-right corner: the same caption, whole, shifted into the picture
    remote = {"label": "remote", "score": 0.5, "box": {"xmin": 190.0, "ymin": 0.0, "xmax": 200.0, "ymax": 30.0}}
    corner = np.asarray(overlays.boxes(white, [{**cat, "box": remote["box"]}], DET_CLASSES, min_side=0),
                        dtype=np.int64)
    h, w = caption.shape[:2]
    assert (corner[:h, 200 - w:] == caption).all()
    # another label: another colour; the best box is drawn last, on top
    both = np.asarray(overlays.boxes(white, [remote, {**cat, "score": 0.1, "box": remote["box"]}], DET_CLASSES,
                                     min_side=0))
    assert both[29, 195].tolist() == orange


def test_small_images_are_drawn_scaled_up_with_captions_in_proportion():
    white = Image.new("RGB", (96, 96), "white")
    remote = {"label": "remote", "score": 0.87, "box": {"xmin": 8.0, "ymin": 40.0, "xmax": 90.0, "ymax": 90.0}}
    out = overlays.boxes(white, [remote], DET_CLASSES)
    assert out.size == (576, 576)  # 96 px: scaled 6 times, to at least overlays.MIN_SIDE
    got = np.asarray(out, dtype=np.int64)
    orange = overlays.palette(2)[DET_CLASSES["remote"]].tolist()
    assert got[400, 48].tolist() == orange and got[539, 300].tolist() == orange  # the box, scaled: left, bottom
    # above the box (row 240 once scaled) there is only the caption: a small share of the picture, still readable
    rows, cols = np.nonzero((got[:240] != 255).any(-1))
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height * width <= 0.02 * 576 * 576 and height >= 12, (height, width)
    # big enough images keep their size; a thin strip is not blown up past overlays.MAX_SIDE
    assert overlays.boxes(Image.new("RGB", (640, 512), "white"), [remote], DET_CLASSES).size == (640, 512)
    assert overlays.upscale_factor(128, 96) == 6 and overlays.upscale_factor(400, 300) == 2
    assert overlays.upscale_factor(10000, 20) == 1


# --- infer --save-overlays ---------------------------------------------------------------------------------


def test_detection_overlays_draw_the_boxes(cli, tmp_path, one_torch_thread):
    rotated = tmp_path / "turned.jpg"  # stored sideways (96x128) with EXIF orientation 6: read upright, 128x96
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(DET).transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif)
    out = tmp_path / "overlays"  # created by infer
    args = ("infer", "detection", "--smoke", DET, rotated, "--threshold", "0", "--save-overlays", out, "--json")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [row["overlay"] for row in rows] == [str(out / "det_00.png"), str(out / "turned.png")]
    # 128x96 is under overlays.MIN_SIDE: drawn on a copy scaled up 6 times (boxes in the rows stay in input pixels)
    original = np.asarray(Image.open(DET).convert("RGB").resize((768, 576), Image.Resampling.LANCZOS), dtype=np.int64)
    drawn = pixels(out / "det_00.png")
    assert Image.open(rotated).size == (96, 128) and Image.open(out / "turned.png").size == (768, 576)
    assert drawn.shape == original.shape
    assert rows[0]["objects"], "--threshold 0 keeps the untrained model's boxes"
    best = rows[0]["objects"][0]  # drawn last: its outline is on top
    x0, y0, x1, y1 = (round(best["box"][k] * 6) for k in ("xmin", "ymin", "xmax", "ymax"))
    colour = overlays.palette(2)[DET_CLASSES[best["label"]]].tolist()
    left_edge = drawn[(y0 + y1) // 2:y1, x0]  # the lower half: clear of the caption
    assert (left_edge == colour).all(), (left_edge[:3], colour)
    # beyond the boxes and their captions the image is untouched
    changed = (drawn != original).any(-1)
    boxes = [o["box"] for o in rows[0]["objects"]]
    assert changed.any() and not changed[max(round(b["ymax"] * 6) for b in boxes) + 1:].any()
    rerun_refused(cli, args, out / "det_00.png")


def test_segmentation_overlay_is_the_map_blended_over_the_image(cli, tmp_path, one_torch_thread):
    maps, out = tmp_path / "maps", tmp_path / "overlays"
    args = ("infer", "seg", "--smoke", SEG, "--save-maps", maps, "--save-overlays", out)
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    original, drawn = pixels(SEG), pixels(out / "seg_00.png")
    label_map = np.asarray(Image.open(maps / "seg_00.png"), dtype=np.int64)  # both options at once
    assert drawn.shape == original.shape and (drawn != original).any()
    expected = np.round(0.5 * original + 0.5 * overlays.palette(label_map.max() + 1)[label_map])
    assert np.abs(drawn - expected).max() <= 1
    rerun_refused(cli, ("infer", "seg", "--smoke", SEG, "--save-overlays", out), out / "seg_00.png")
    # one folder for both would write NAME.png twice: refused before anything is written
    same = cli("infer", "seg", "--smoke", SEG, "--save-maps", tmp_path / "one", "--save-overlays", tmp_path / "one")
    assert_clean_error(same, "--save-maps and --save-overlays would both write", "different folders")
    assert not (tmp_path / "one").exists()


def test_depth_overlay_is_the_depth_in_colour(cli, tmp_path, one_torch_thread):
    maps, out = tmp_path / "maps", tmp_path / "overlays"
    args = ("infer", "depth", "--smoke", DEPTH, "--save-overlays", out, "--save-maps", maps, "--json")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["overlay"] == str(out / "scene_00.png")
    original, drawn = pixels(DEPTH), pixels(out / "scene_00.png")
    assert drawn.shape == original.shape and (drawn != original).any()
    depth = np.load(maps / "scene_00.npy")
    assert (drawn == np.asarray(overlays.depth(depth))).all()
    nearest = np.unravel_index(depth.argmin(), depth.shape)
    assert drawn[nearest].sum() == drawn.sum(-1).max()  # near is bright
    rerun_refused(cli, ("infer", "depth", "--smoke", DEPTH, "--save-overlays", out), out / "scene_00.png")


def test_other_tasks_refuse_save_overlays(cli, tmp_path):
    result = cli("infer", "text-classification", "--smoke", "hi", "--save-overlays", tmp_path / "o")
    assert_clean_error(result, "--save-overlays does not apply to text-classification",
                       "it is for image-segmentation, object-detection, depth-estimation")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
