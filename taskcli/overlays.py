"""Pictures of vision predictions for `taskcli infer --save-overlays DIR`: one DIR/NAME.png per input image, for
people to look at (`--save-maps` keeps the numbers). Every overlay has its input's size (EXIF orientation applied,
as the model saw it), so it lines up pixel for pixel with the photo, except detection overlays of small images.

- object-detection: the image with each kept box outlined in its label's colour and captioned "label 0.87". An image
  under MIN_SIDE pixels on its short side is drawn on a copy scaled up by a whole factor (a 96x128 input gives
  576x768), so captions can be read without hiding the picture; captions are sized from the drawn image.
- image-segmentation: a colour per class blended over the image at 50%.
- depth-estimation: the depth alone as a colour map (magma: near bright, far dark), not side by side with the
  photo and not blended over it: blending muddies the colours that carry the depth, and one size for every task
  keeps the file an image's twin.

The tasks that draw are those whose infer options have a `save_overlays` field (vision_common.OverlayOptions).
Colours are fixed: class id k gets palette colour k % 20, the same in every image and every run. Heavy imports
(numpy, matplotlib, Pillow) happen inside the functions, so `taskcli --help` stays light.
"""

from __future__ import annotations

from pathlib import Path

from taskcli.errors import TaskcliError

OPTION = "--save-overlays"
MIN_SIDE = 512  # detection overlays: smaller images are drawn on a copy scaled up to at least this short side
MAX_SIDE = 4096  # ... but never past this long side (a 20x10000 strip stays as it is)


def plan(folder: str, sources: list[str], maps: dict[str, list[Path]] | None = None) -> dict[str, Path]:
    """Where --save-overlays DIR draws each input: {input: DIR/NAME.png}, checked before any work (see
    files.output_paths). `maps`: the --save-maps files planned for the same inputs; one of them at the same path
    (both options given one folder) would be written twice: refused up front."""
    from taskcli import files

    targets = {src: paths[0] for src, paths in files.output_paths(folder, sources, (".png",), OPTION).items()}
    taken = {p.resolve() for paths in (maps or {}).values() for p in paths}
    shared = next((p for p in targets.values() if p.resolve() in taken), None)
    if shared is not None:
        raise TaskcliError(f"--save-maps and {OPTION} would both write {shared}", "give them different folders")
    return targets


def save(path: Path | None, draw) -> Path | None:
    """Writes draw() (a PIL image) to `path`, this input's overlay as plan() put it, and returns the path (the
    input's Result names it). Without a path (no --save-overlays) nothing is drawn: `draw` is only called when
    there is somewhere to write it."""
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    draw().save(path)
    return path


def palette(n: int):
    """n RGB colours (uint8 array [n, 3]) for class ids 0..n-1: matplotlib's tab20, cycling. Its dark shades come
    first, then the light ones: tab20 pairs each hue dark/light, so ids 0 and 1 would otherwise both be blue."""
    import numpy as np
    from matplotlib import colormaps

    colours = list(colormaps["tab20"].colors)
    ordered = np.array(colours[0::2] + colours[1::2])
    return (ordered[np.arange(n) % len(ordered)] * 255).round().astype(np.uint8)


def upscale_factor(width: int, height: int, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> int:
    """The whole factor that brings the short side to at least `min_side`, keeping the long side within
    `max_side` (1: drawn at the input's size)."""
    want = -(-min_side // max(min(width, height), 1))  # ceil
    return max(1, min(want, max_side // max(width, height, 1)))


def boxes(image, objects: list[dict], class_ids: dict[str, int], min_side: int = MIN_SIDE):
    """The image with each object {"label", "score", "box": {xmin, ymin, xmax, ymax}} (pixels) outlined in its
    label's colour (the palette colour of its class id, `class_ids[label]`) and captioned "label 0.87". Below
    `min_side` on the short side it is drawn on a copy scaled up by `upscale_factor` (boxes scaled with it)."""
    from PIL import Image, ImageDraw, ImageFont

    out = image.convert("RGB")  # a copy: the decoded input stays as the model saw it
    k = upscale_factor(*out.size, min_side=min_side)
    if k > 1:
        out = out.resize((out.width * k, out.height * k), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(out)
    w, h = out.size
    width = max(2, round(min(w, h) / 150))
    font = ImageFont.load_default(size=max(10, round(min(w, h) / 30)))
    colours = palette(max(class_ids.values(), default=0) + 1)
    # best last, so the most confident box and its caption stay on top of the ones they overlap
    for obj in sorted(objects, key=lambda o: o["score"]):
        colour = tuple(int(c) for c in colours[class_ids.get(obj["label"], 0)])
        x0, y0, x1, y1 = (round(obj["box"][side] * k) for side in ("xmin", "ymin", "xmax", "ymax"))
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=width)
        caption = f"{obj['label']} {obj['score']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        tw, th = right - left + 4, bottom - top + 2
        # above the box when there is room, else just inside its top edge; never past the image's right edge
        cx = min(max(x0, 0), max(w - tw, 0))
        cy = y0 - th if y0 - th >= 0 else min(y0, max(h - th, 0))
        draw.rectangle((cx, cy, cx + tw - 1, cy + th - 1), fill=colour)
        dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 140  # text that reads on the fill
        draw.text((cx + 2 - left, cy + 1 - top), caption, font=font, fill="white" if dark else "black")
    return out


def segmentation(image, label_map, alpha: float = 0.5):
    """The image with each pixel's class colour (see palette) blended over it: (1 - alpha) image + alpha colour.
    label_map: class ids [H, W] at the image's size."""
    import numpy as np
    from PIL import Image

    ids = np.asarray(label_map, dtype=np.int64)
    colours = palette(int(ids.max()) + 1 if ids.size else 1)[ids].astype(np.float32)
    photo = np.asarray(image.convert("RGB"), dtype=np.float32)
    if photo.shape[:2] != ids.shape:
        raise ValueError(f"label map {ids.shape[1]}x{ids.shape[0]} does not match the image "
                         f"{image.width}x{image.height}")
    return Image.fromarray(((1 - alpha) * photo + alpha * colours).round().astype(np.uint8))


def depth(depth_map, cmap: str = "magma"):
    """The depth map [H, W] as an RGB colour map: the nearest pixel at the bright end of `cmap`, the farthest at
    the dark end (scaled to this image's own range; a flat map is all dark)."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    d = np.asarray(depth_map, dtype=np.float64)
    finite = np.isfinite(d)
    near, far = (float(d[finite].min()), float(d[finite].max())) if finite.any() else (0.0, 0.0)
    closeness = np.where(finite, (far - d) / ((far - near) or 1.0), 0.0)  # 1 nearest, 0 farthest (or unknown)
    rgba = colormaps[cmap](np.clip(closeness, 0.0, 1.0), bytes=True)
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
