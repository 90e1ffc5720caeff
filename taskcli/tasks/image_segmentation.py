"""image-segmentation (semantic): image -> a class id per pixel, with a per-pixel classifier (SegFormer & co) or a
universal mask-classification model (Mask2Former, MaskFormer) trained on the same semantic maps.

Data: rows of an image and a mask, a single-channel PNG whose pixel values are class ids (palette PNGs work:
the palette index is the id), from a hub dataset, an imagefolder with metadata.jsonl/csv (`file_name`, `mask`),
or CSV/JSONL with two path columns. Class names come from `data.labels` or an id2label JSON
(`params.labels_file`: a local path, or `hub-repo:file` such as huggingface/label-files' ADE20k list). Pixels
equal to `params.ignore_index` (255) count neither in the loss nor in the scores; `params.reduce_labels` maps id 0
to ignore and shifts the rest down (ADE20k's "other").

Eval: mean IoU, mean accuracy, overall pixel accuracy and per-class IoU, from a confusion matrix summed batch by
batch at the processor's resolution, so no logits are held for the whole eval set. A universal model's class and
mask predictions are combined into per-class scores as its processor's semantic post-processing does, and its
reference map is rebuilt from the binary masks the processor made of it.
Infer: the label map at the input's own size (the processor's own post-processing, as the pipeline), per-class
pixel shares, with --save-maps DIR the maps as PNGs, and with --save-overlays DIR each image with its classes'
colours blended over it (taskcli/overlays.py).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from taskcli.task import ROW, Result, Task, rows_numbered
from taskcli.tasks import vision_common


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels_file: str | None = Field(None, description="id2label JSON: a local path or 'hub/dataset-repo:file.json'")
    ignore_index: int = Field(255, ge=0, description="mask value that marks unlabelled pixels")
    reduce_labels: bool = Field(False, description="id 0 is 'other': ignore it and shift the other ids down by one")
    augment: bool = Field(True, description="training only: random horizontal flip of image and mask together")


def labels(run, dsd) -> list[str]:
    import json

    source = run.params.labels_file
    if not source:
        raise TaskcliError("image-segmentation needs its class names",
                           "set data.labels: [background, ...] (in id order) or params.labels_file: id2label.json")
    path = Path(source).expanduser()
    if not path.is_file() and ":" in source and not path.exists():
        repo, _, filename = source.partition(":")
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(repo, filename, repo_type="dataset"))
        except Exception as err:  # noqa: BLE001 - offline or missing: say which file
            raise TaskcliError(f"cannot fetch labels file {source}: {str(err).splitlines()[0][:160]}",
                               "give a local id2label JSON in params.labels_file, or data.labels") from None
    if not path.is_file():
        raise TaskcliError(f"labels file not found: {source}", "a JSON {\"0\": \"name\", ...} or a list of names")
    doc = json.loads(path.read_text(encoding="utf-8"))
    names = doc if isinstance(doc, list) else [doc[k] for k in sorted(doc, key=int)]
    return [str(n) for n in names]


UNIVERSAL = ("mask2former", "maskformer", "oneformer")  # mask classification: (class, binary mask) per query


def load_processor(run):
    from transformers import AutoConfig, AutoImageProcessor

    kw = run.pretrained_kwargs()
    universal = AutoConfig.from_pretrained(run.model_source, **kw).model_type in UNIVERSAL
    run.learned.universal = universal
    extra = {"ignore_index": run.params.ignore_index} if universal else {}
    return AutoImageProcessor.from_pretrained(run.model_source, do_reduce_labels=run.params.reduce_labels, **extra, **kw)


def load_model(run, source, label_names):
    import transformers

    auto = transformers.AutoModelForUniversalSegmentation if run.learned.universal else \
        transformers.AutoModelForSemanticSegmentation
    kw = run.pretrained_kwargs()
    if label_names is None:
        return auto.from_pretrained(source, **kw)
    model = auto.from_pretrained(source, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                                 label2id={n: i for i, n in enumerate(label_names)}, ignore_mismatched_sizes=True, **kw)
    if hasattr(model.config, "semantic_loss_ignore_index"):
        model.config.semantic_loss_ignore_index = run.params.ignore_index
    return model


def preprocess(run, ds, training):
    """Keep image and mask references; both are decoded per batch (and flipped together when training)."""
    from taskcli import images

    flip = training and run.params.augment
    clock = run.clock

    def transform(batch):
        from PIL import Image, ImageOps

        pairs = []
        for k, (image, mask) in enumerate(zip(batch["image"], batch["mask"])):
            image, mask = images.load(image), images.load_mask(mask)
            if (mask.shape[0], mask.shape[1]) != (image.height, image.width):
                raise TaskcliError(f"mask {mask.shape[1]}x{mask.shape[0]} does not match its image "
                                   f"{image.width}x{image.height}", "masks must have their image's size")
            if flip and clock.rng(batch[ROW][k]).random() < 0.5:
                image, mask = ImageOps.mirror(image), mask[:, ::-1].copy()
            pairs.append((image, Image.fromarray(mask.astype("uint8"))))
        return {"image": [p[0] for p in pairs], "mask": [p[1] for p in pairs]}

    ds = ds.select_columns(["image", "mask"])
    return (rows_numbered(ds) if flip else ds).with_transform(transform)


class SegmentationCollator:
    """Semantic models get `labels` (the resized map); universal ones the processor's per-segment binary
    `mask_labels` and their `class_labels`, plus `pixel_mask`."""

    def __init__(self, processor, universal: bool):
        self.processor = processor
        self.universal = universal

    def __call__(self, rows):
        import numpy as np

        maps = [np.array(r["mask"]) for r in rows]  # a copy: processors edit maps in place (reduce_labels)
        batch = self.processor([r["image"] for r in rows], segmentation_maps=maps, return_tensors="pt")
        if self.universal:
            return {"pixel_values": batch["pixel_values"], "pixel_mask": batch["pixel_mask"],
                    "mask_labels": list(batch["mask_labels"]), "class_labels": list(batch["class_labels"])}
        return {"pixel_values": batch["pixel_values"], "labels": batch["labels"].long()}


def collator(run):
    return SegmentationCollator(run.processor, bool(run.learned.universal))


def _scores(run, predictions):
    """Per-class score maps [B, C, h, w] from a batch's model outputs (as gathered by the Trainer)."""
    import torch

    if not run.learned.universal:
        logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions  # as metrics.main_output
        return torch.as_tensor(logits).float()
    classes, masks = (torch.as_tensor(x).float() for x in predictions[:2])
    return torch.einsum("bqc,bqhw->bchw", classes.softmax(-1)[..., :-1], masks.sigmoid())


def _reference(run, label_ids, ignore: int):
    """The reference class map [B, H, W]: `labels`, or rebuilt from a universal model's mask/class labels."""
    import torch

    if not run.learned.universal:
        return torch.as_tensor(label_ids).long()
    mask_labels, class_labels = label_ids
    maps = []
    for masks, classes in zip(mask_labels, class_labels):
        masks = torch.as_tensor(masks)
        ref = torch.full(masks.shape[-2:], ignore, dtype=torch.long)
        for mask, cls in zip(masks, torch.as_tensor(classes).tolist()):
            ref[mask > 0.5] = int(cls)
        maps.append(ref)
    return torch.stack(maps)


def metrics(run, examples, features):
    """fn(pred, compute_result): adds each batch's pixels to a confusion matrix; scores it on the last batch."""
    import torch
    import torch.nn.functional as F

    from taskcli.metrics import segmentation

    n = len(run.labels)
    ignore = run.params.ignore_index
    state = {"cm": torch.zeros(n * n, dtype=torch.int64)}

    def compute(pred, compute_result: bool = True):
        scores, refs = _scores(run, pred.predictions).cpu(), _reference(run, pred.label_ids, ignore).cpu()
        guess = F.interpolate(scores, size=refs.shape[-2:], mode="bilinear", align_corners=False).argmax(1)
        keep = (refs != ignore) & (refs >= 0) & (refs < n)
        state["cm"] += torch.bincount((refs[keep] * n + guess[keep]).cpu(), minlength=n * n)
        if not compute_result:
            return {}
        result = segmentation(state["cm"].reshape(n, n).numpy(), run.labels)
        state["cm"].zero_()
        return result

    return compute


def setup(run, model, options):
    # One size per batch: the processors pad a batch to its largest image (Mask2Former's post-processing does not
    # undo that padding, so a small image batched with a large one came back distorted); same-size batches give
    # exactly the pipeline's one-image-at-a-time maps. Per-pixel classifiers give `logits`, universal models
    # class and mask predictions per query; the processor's post-processing reads whichever its model gives.
    return vision_common.context(vision_common.VisionContext, run, model, options, same_size=True,
                                 outputs=("logits", "class_queries_logits", "masks_queries_logits"),
                                 map_suffixes=(".png",))


def decode(ctx, picture, outputs):
    """The processor's own post-processing (upsample to the image's size, argmax), then per-class pixel shares."""
    import numpy as np
    from PIL import Image

    from taskcli import overlays

    image = picture.image
    label_map = ctx.processor.post_process_semantic_segmentation(outputs[0], target_sizes=[image.size[::-1]])[0]
    ids = label_map.cpu().numpy()
    counts = np.bincount(ids.ravel(), minlength=len(ctx.id2label))
    segments = [{"label": ctx.id2label[int(i)], "id": int(i), "share": float(counts[i] / ids.size)}
                for i in np.argsort(-counts) if counts[i]]
    result = {"segments": segments, "size": [int(ids.shape[1]), int(ids.shape[0])]}
    if picture.source in ctx.maps:
        path = ctx.maps[picture.source][0]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids.astype(np.uint8 if ids.max() < 256 else np.int32)).save(path)
        result["mask"] = str(path)
    return Result(result, overlay=overlays.save(ctx.overlays.get(picture.source),
                                                lambda: overlays.segmentation(image, ids)))


STEPS = vision_common.steps(setup, decode)


def render(item, result):
    return [{"label": s["label"], "pixels": f"{100 * s['share']:.1f}%", **({"mask": result["mask"]} if k == 0 and
            "mask" in result else {})} for k, s in enumerate(result["segments"])]


TASK = Task(
    infer_options=vision_common.MapOptions,
    name="image-segmentation",
    aliases=("semantic-segmentation", "segmentation", "seg"),
    summary="Label every pixel of an image with a class (semantic segmentation)",
    modality="image",
    metric_names=("mean_iou", "mean_accuracy", "overall_accuracy"),
    best_metric="mean_iou",
    columns={"image": "image file path (or a hub Image column)",
             "mask": "class-id map: single-channel PNG path (or a hub Image column)"},
    sample="image-segmentation",
    default_recipe="segformer",
    auto_model="AutoModelForSemanticSegmentation",
    alt_auto_models=("AutoModelForUniversalSegmentation",),
    load_processor=load_processor,
    load_model=load_model,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    steps=lambda run, model: STEPS,
    render=render,
    labels=labels,
    params=Params,
    collator_reads_raw=True,
    batch_eval_metrics=True,
    # Mask2Former leaves some weights without a gradient in a step (DDP stops at the second step without the search);
    # SegFormer uses all of its own
    ddp_find_unused_parameters=lambda run, model: run.learned.universal,
)
