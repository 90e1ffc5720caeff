"""Image input, done once for every vision task: decode with Pillow, apply EXIF orientation, convert
to RGB. As transformers' `load_image` (the pipelines) and its processors do, an alpha channel is dropped, not
composited: the pixels under transparent areas are what the model sees, whichever path the image takes.

Dataset image columns may hold a path, a datasets `Image` value (a PIL image, or an undecoded {"bytes", "path"}
dict) or a PIL image; :func:`load` takes any of them. No torchvision: the image processors' Pillow backend does the
resizing and normalising. Finding image files among `taskcli infer` arguments and reading an image dataset folder
are the image modality's (taskcli/modality.py).
"""

from __future__ import annotations

import io
from pathlib import Path

from taskcli.errors import TaskcliError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# True wherever the error shows up: `infer` has --skip-bad, training and eval data must be fixed instead.
_FIX = ("check the file (a JPEG/PNG/WebP/BMP/TIFF image) or remove it from the data; `taskcli infer` skips such "
        "files with --skip-bad")


# Most pixels (width x height) an image may decode to: a small compressed file can hold a huge image (a 389 KB PNG
# of 20000x20000 decodes to 1.2 GB). Pillow's own bomb limit by default (89.5 MP); `taskcli serve` lowers it
# (--max-image-pixels). A larger image is a bad input naming its file, refused from its header before decoding.
MAX_PIXELS = 89_478_485


def set_max_pixels(limit: int) -> None:
    """Set the decoded-pixel limit (`MAX_PIXELS`) for this process; Pillow's own check follows it."""
    global MAX_PIXELS
    MAX_PIXELS = int(limit)


def _guarded_pillow():
    """PIL.Image with its bomb check at MAX_PIXELS: its warning (between 1x and 2x the limit) is silenced, as
    `_check_pixels` refuses those images itself; above 2x Pillow raises DecompressionBombError, caught as BadImage."""
    import warnings

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    return Image


def _check_pixels(image, name: str) -> None:
    if image.width * image.height > MAX_PIXELS:
        raise _too_big(name, f"{image.width}x{image.height} = {image.width * image.height:,} pixels")


def _too_big(name: str, size: str) -> "BadImage":
    return BadImage(name, f"it is {size}, more than the limit of {MAX_PIXELS:,} decoded pixels (a decompression "
                          "bomb, or an image to scale down first)")


def _bomb(name: str, err: Exception) -> "BadImage":
    """Pillow's DecompressionBombError (over twice the limit, raised while reading the header) as a BadImage."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(err))
    return _too_big(name, f"{int(found[1]):,} pixels" if found else "too many pixels")


class BadImage(TaskcliError):
    """One unreadable image; ``path`` names it."""

    def __init__(self, path: str, why: str):
        self.path = path
        super().__init__(f"cannot read image {path}: {why}", _FIX)


def _rgb(image):
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    return image.convert("RGB") if image.mode != "RGB" else image


def load(source):
    """An RGB PIL image from a path, a {"bytes", "path"} dict or a PIL image."""
    from PIL import UnidentifiedImageError

    Image = _guarded_pillow()
    if isinstance(source, Image.Image):
        return _rgb(source)
    name = str(source.get("path") or "<image bytes>") if isinstance(source, dict) else str(source)
    if isinstance(source, dict):
        if source.get("bytes"):
            source = io.BytesIO(source["bytes"])
        elif source.get("path"):
            source = source["path"]
        else:
            raise BadImage(name, "the image entry has neither bytes nor a path")
    if not isinstance(source, io.BytesIO):
        path = Path(str(source)).expanduser()
        if not path.exists():
            raise BadImage(name, "no such file")
        if path.is_dir():
            raise BadImage(name, "it is a directory")
        if path.stat().st_size == 0:
            raise BadImage(name, "the file is empty")
        source = path
    try:
        with Image.open(source) as image:
            _check_pixels(image, name)  # from the header, before a pixel is decoded
            image.load()  # decode now: a truncated file fails here, not later inside a batch
            return _rgb(image)
    except Image.DecompressionBombError as err:
        raise _bomb(name, err) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        why = "not an image Pillow can read" if isinstance(err, UnidentifiedImageError) else f"{err}"[:120]
        raise BadImage(name, why) from None


def _name(source) -> str:
    return str(source.get("path") or "<in-memory image>") if isinstance(source, dict) else str(source)


def _open_map(source, unnamed: str):
    """A per-pixel map (mask, depth) as a PIL image in its own mode: no RGB conversion, no EXIF rotation."""
    Image = _guarded_pillow()
    if isinstance(source, Image.Image):
        return source
    name = str(source.get("path") or unnamed) if isinstance(source, dict) else str(source)
    raw = io.BytesIO(source["bytes"]) if isinstance(source, dict) and source.get("bytes") else (
        source.get("path") if isinstance(source, dict) else source)
    if raw is None or (not isinstance(raw, io.BytesIO) and not Path(str(raw)).is_file()):
        raise BadImage(name, "no such file")
    try:
        with Image.open(raw) as opened:
            _check_pixels(opened, name)
            opened.load()
            return opened.copy()
    except Image.DecompressionBombError as err:
        raise _bomb(name, err) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(name, f"{err}"[:120]) from None


def load_mask(source):
    """A segmentation map as an int64 array [H, W] of class ids, from a single-channel image (L, P or I mode:
    palette indices are the ids, as in VOC/ADE-style PNGs). Colour-coded RGB masks are refused."""
    import numpy as np

    if isinstance(source, np.ndarray):
        return source.astype(np.int64)
    image = _open_map(source, "<mask bytes>")
    if image.mode not in ("L", "P", "I", "I;16", "1"):
        raise TaskcliError(f"segmentation mask {_name(source)} is {image.mode}, not single-channel class ids",
                           "save masks as 8-bit greyscale or palette PNGs whose pixel values are the class ids")
    return np.asarray(image, dtype=np.int64)


def load_depth(source, scale: float):
    """A depth map as float32 metres [H, W]: integer images (16-bit PNG) are divided by `scale` (1000 for
    millimetres, 256 for KITTI), float images (32-bit TIFF, a datasets float Image) and .npy arrays are taken as
    metres. 0 marks a pixel without a measurement."""
    import numpy as np

    if isinstance(source, np.ndarray):
        return source.astype(np.float32)
    if isinstance(source, (str, Path)) and str(source).endswith(".npy"):
        if not Path(source).is_file():
            raise BadImage(str(source), "no such file")
        return np.load(source).astype(np.float32)
    image = _open_map(source, "<depth bytes>")
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode not in ("I", "I;16", "I;16B", "L"):
        raise TaskcliError(f"depth map {_name(source)} is {image.mode}, not a single-channel depth image",
                           "use 16-bit PNGs (millimetres, see params.depth_scale), float TIFFs or .npy (metres)")
    return np.asarray(image, dtype=np.float32) / scale


def expand_inputs(args: list[str]) -> list[str]:
    """`taskcli infer` arguments -> image paths; kept for callers not yet on `modality.IMAGE.expand_inputs`."""
    from taskcli import files

    return files.expand_inputs(args, IMAGE_SUFFIXES, "image")


def header_problem(source, name: str | None) -> str | None:
    """Why an image (a path or a BytesIO) will not open, from its header (Pillow's open decodes no pixels), or
    None."""
    from PIL import Image

    try:
        with Image.open(source) as image:
            image.size  # noqa: B018 - the header is read by open
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file
        return f"{name or 'image bytes'} is not an image Pillow can read ({type(err).__name__})"
    return None


def header_size(source) -> tuple[int, int] | None:
    """(width, height) from the image's header (Pillow's open reads no pixels), or None when it will not open."""
    from PIL import Image

    try:
        with Image.open(source) as image:
            return image.size
    except Exception:  # noqa: BLE001 - an unreadable file is a preflight problem, listed there
        return None
