"""Image input, done once for every vision task: find files, decode with Pillow, apply EXIF orientation, convert
to RGB. As transformers' `load_image` (the pipelines) and its processors do, an alpha channel is dropped, not
composited: the pixels under transparent areas are what the model sees, whichever path the image takes.

Dataset image columns may hold a path, a datasets `Image` value (a PIL image, or an undecoded {"bytes", "path"}
dict) or a PIL image; :func:`load` takes any of them. No torchvision: the image processors' Pillow backend does the
resizing and normalising.
"""

from __future__ import annotations

import io
from pathlib import Path

from taskcli.errors import TaskcliError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# True wherever the error shows up: `infer` has --skip-bad, training and eval data must be fixed instead.
_FIX = ("check the file (a JPEG/PNG/WebP/BMP/TIFF image) or remove it from the data; `taskcli infer` skips such "
        "files with --skip-bad")


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
    from PIL import Image, UnidentifiedImageError

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
            image.load()  # decode now: a truncated file fails here, not later inside a batch
            return _rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        why = "not an image Pillow can read" if isinstance(err, UnidentifiedImageError) else f"{err}"[:120]
        raise BadImage(name, why) from None


def _name(source) -> str:
    return str(source.get("path") or "<in-memory image>") if isinstance(source, dict) else str(source)


def _open_map(source, unnamed: str):
    """A per-pixel map (mask, depth) as a PIL image in its own mode: no RGB conversion, no EXIF rotation."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    name = str(source.get("path") or unnamed) if isinstance(source, dict) else str(source)
    raw = io.BytesIO(source["bytes"]) if isinstance(source, dict) and source.get("bytes") else (
        source.get("path") if isinstance(source, dict) else source)
    if raw is None or (not isinstance(raw, io.BytesIO) and not Path(str(raw)).is_file()):
        raise BadImage(name, "no such file")
    try:
        with Image.open(raw) as opened:
            opened.load()
            return opened.copy()
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
    """`taskcli infer` arguments -> image paths (see files.expand_inputs)."""
    from taskcli import files

    return files.expand_inputs(args, IMAGE_SUFFIXES, "image")


def has_images(folder: Path) -> bool:
    from taskcli import files

    return files.has_media(folder, IMAGE_SUFFIXES)


def load_folder(root: Path):
    """DatasetDict from an image folder (see files.load_folder); image paths in column 'image'."""
    from taskcli import files

    return files.load_folder(root, IMAGE_SUFFIXES, "image")
