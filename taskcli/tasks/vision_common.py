"""Pieces shared by the image tasks: loading the image processor, their infer options (the files written per
image), and infer's steps over image files (plan what is written for them, decode each image, batch them through
the processor and the model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from taskcli import images
from taskcli.task import Context, Encoded, InferOptions, Steps


class OverlayOptions(InferOptions):
    """Tasks whose predictions can be drawn (taskcli/overlays.py)."""

    save_overlays: str | None = None  # DIR: each image with its prediction drawn, DIR/NAME.png


class MapOptions(OverlayOptions):
    """Tasks that give a map per image (segmentation's class ids, depth in metres)."""

    save_maps: str | None = None  # DIR: segmentation DIR/NAME.png (class ids), depth DIR/NAME.npy + a .png preview


def load_processor(run):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(run.model_source, **run.pretrained_kwargs())


@dataclass
class VisionContext(Context):
    """An image task's infer run: its processor, and what it writes for each input, planned by `read`."""

    processor: Any = None
    id2label: dict = field(default_factory=dict)
    # model outputs the task's post-processing reads; the others (hidden states, auxiliary losses...) are dropped
    # as soon as a batch is through, so a chunk's results do not hold them
    outputs: tuple[str, ...] = ()
    # batch only images of one size: processors that keep each image's own size (GLPN), or pad a batch to its
    # largest image where the post-processing does not undo it (Mask2Former)
    same_size: bool = False
    # fewest pixels a side may have: processors that round sizes down to a multiple (GLPN: 32) make nothing of less
    min_side: int = 1
    map_suffixes: tuple[str, ...] = ()  # the files --save-maps writes per input (none: the task has no maps)
    maps: dict[str, list[Path]] = field(default_factory=dict)  # input -> its --save-maps files
    overlays: dict[str, Path] = field(default_factory=dict)  # input -> its --save-overlays picture


@dataclass
class Picture(Encoded):
    """One decoded image; its only feature is the image itself (the processor runs per batch, see `collate`)."""

    source: str = ""  # the input as given: whose maps and overlay these are
    image: Any = None  # RGB PIL image as the model saw it (EXIF applied): post-processing's size, overlays


def context(cls: type[VisionContext], run, model, options: InferOptions, **fields) -> VisionContext:
    return cls(run, model, options, processor=run.processor, id2label=model.config.id2label, **fields)


def plan(ctx: VisionContext, sources: list[str]) -> None:
    """The --save-maps and --save-overlays files of these images planned and checked before any is decoded:
    nothing already there is overwritten, and no work is wasted on a run that would stop at a clash."""
    from taskcli import files, overlays

    # (image-classification's options have neither field)
    maps, drawn = getattr(ctx.options, "save_maps", None), getattr(ctx.options, "save_overlays", None)
    if maps and ctx.map_suffixes:
        ctx.maps = files.output_paths(maps, sources, ctx.map_suffixes)
    if drawn:
        ctx.overlays = overlays.plan(drawn, sources, ctx.maps)


def parse(ctx: VisionContext, path: str) -> tuple[str, Any]:
    """(the path, its decoded image); images.BadImage for a file that is not one, or one too small."""
    image = images.load(path)
    if min(image.size) < ctx.min_side:
        raise images.BadImage(path, f"it is {image.width}x{image.height} pixels; this model needs at least "
                                    f"{ctx.min_side} on each side")
    return path, image


def encode(ctx: VisionContext, loaded: list[tuple[str, Any]]) -> list[Picture]:
    # sorted by pixel count, so a batch the processor pads to its largest image (DETR) holds similar sizes
    return [Picture([image], [image.width * image.height], image.size if ctx.same_size else None,
                    source=path, image=image) for path, image in loaded]


def collate(ctx: VisionContext, batch_images: list) -> dict:
    """The processor on one batch's images: resized, normalised and padded (with DETR's pixel_mask) as it does
    for the pipeline and in training. Run per batch, not per chunk, so only one batch's pixels are held."""
    batch = ctx.processor(images=batch_images, return_tensors="pt")
    return {key: batch[key] for key in ("pixel_values", "pixel_mask") if key in batch}


def forward(ctx: VisionContext, batch: dict) -> list:
    from taskcli.task import rows_of

    output = ctx.model(**batch)
    kept = {key: output[key] for key in ctx.outputs if key in output}
    return rows_of(type(output)(**kept) if kept else output, len(batch["pixel_values"]))


def steps(setup: Callable[[Any, Any, Any], VisionContext], decode: Callable[[Any, Picture, list], Any]) -> Steps:
    """An image task's Steps: its own setup and decode around the shared plan/parse/encode/collate/forward (the
    files themselves are read as every image task's are: taskcli/inference.py's entries)."""
    return Steps(setup=setup, plan=plan, parse=parse, encode=encode, collate=collate, forward=forward,
                 decode=decode, errors=(images.BadImage,))
