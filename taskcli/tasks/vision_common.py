"""Pieces shared by the image tasks: loading the image processor, and infer's steps over image files (read the
paths and plan what is written for them, decode each image, batch them through the processor and the model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from taskcli import images
from taskcli.task import Context, Encoded, Steps


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


def context(cls: type[VisionContext], run, model, options: dict, **fields) -> VisionContext:
    return cls(run, model, options, int(options["batch_size"]), processor=run.processor,
               id2label=model.config.id2label, **fields)


def read(ctx: VisionContext, args: list[str]) -> list[tuple[str, str]]:
    """Image paths from the arguments, with their --save-maps and --save-overlays files planned and checked
    before any image is decoded: nothing already there is overwritten, and no work is wasted on a run that
    would stop at a clash."""
    from taskcli import files, inputs, overlays

    paths = inputs.media_paths(ctx, args, ctx.run.task.modality.expand_inputs)  # a table's rows too
    usable = [p for p in paths if not isinstance(p, inputs.Unusable)]  # (a table row without a path: an error row)
    if ctx.options.get("save_maps") and ctx.map_suffixes:
        ctx.maps = files.output_paths(ctx.options["save_maps"], usable, ctx.map_suffixes)
    if ctx.options.get("save_overlays"):
        ctx.overlays = overlays.plan(ctx.options["save_overlays"], usable, ctx.maps)
    return [(path, path) for path in paths]


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


def steps(setup: Callable[[Any, Any, dict], VisionContext], decode: Callable[[Any, Picture, list], dict]) -> Steps:
    """An image task's Steps: its own setup and decode around the shared read/parse/encode/collate/forward."""
    return Steps(setup=setup, read=read, parse=parse, encode=encode, collate=collate, forward=forward,
                 decode=decode, errors=(images.BadImage,))
