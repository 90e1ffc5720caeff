"""image-classification: image file -> top-k labels with scores (ViT, ConvNeXT & co + a classification head).

Data: a hub dataset with an image column, a folder per label (photos/<label>/*.jpg), an imagefolder with
metadata.csv/jsonl, or CSV/JSONL with path + label columns. Images are decoded per batch (taskcli.images) rather
than stored as pixel arrays, so a large dataset costs no extra disk; training images get a random resized crop
and a horizontal flip (params.augment), then the checkpoint's image processor resizes and normalises them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from taskcli import multilabel
from taskcli.task import ROW, Task, rows_numbered
from taskcli.tasks import classification_common, label_sets, vision_common


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    augment: bool = Field(True, description="training only: random resized crop + horizontal flip")
    crop_scale: tuple[float, float] = Field((0.6, 1.0), description="augment: crop area range, fraction of the image")


def labels(run, dsd) -> list[str]:
    return classification_common.class_names(dsd, "image")


def augmented(image, scale: tuple[float, float], rng):
    """Random resized crop (area in `scale`, aspect 3/4..4/3) and a coin-flip mirror, drawn from `rng` (the row's
    EpochClock generator: the same in a resumed run)."""
    import math

    from PIL import ImageOps

    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            image = image.crop((left, top, left + cw, top + ch))
            break
    return ImageOps.mirror(image) if rng.random() < 0.5 else image


def preprocess(run, ds, training):
    """Keep the image reference and the label id; decoding happens per batch in the collator."""
    from taskcli import images

    index = {n: i for i, n in enumerate(run.labels or [])}
    multi = bool(run.learned.multi_label)
    feature = ds.features.get("label")
    names = list(getattr(getattr(feature, "feature", feature), "names", None) or [])
    augment = training and run.params.augment
    scale = tuple(run.params.crop_scale)
    clock = run.clock

    def transform(batch):
        out = [images.load(x) for x in batch["image"]]
        if augment:
            out = [augmented(x, scale, clock.rng(row)) for x, row in zip(out, batch[ROW])]
        if multi:  # one 0/1 target per label (float: BCE's)
            return {"image": out, "labels": [multilabel.multi_hot(v, index, names) for v in batch["label"]]}
        return {"image": out, "labels": [label_sets.label_id(v, index) for v in batch["label"]]}

    ds = ds.select_columns(["image", "label"])
    return (rows_numbered(ds) if augment else ds).with_transform(transform)


class ImageCollator:
    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows):
        import torch

        batch = self.processor([r["image"] for r in rows], return_tensors="pt")
        labels = [r["labels"] for r in rows]
        multi = isinstance(labels[0], list)  # multi-label: 0/1 per label, as floats
        return {"pixel_values": batch["pixel_values"],
                "labels": torch.tensor(labels, dtype=torch.float32) if multi else
                torch.tensor([int(v) for v in labels], dtype=torch.long)}


def collator(run):
    return ImageCollator(run.processor)


@dataclass
class _Context(vision_common.VisionContext):
    top_k: int = 1  # labels per image
    threshold: float | None = None  # multi-label: list every label scoring at least this


def setup(run, model, options):
    return vision_common.context(_Context, run, model, options, outputs=("logits",),
                                 top_k=options.top_k, threshold=multilabel.threshold(run, model, options.threshold))


def decode(ctx, picture, outputs):
    """Softmax top-k, as the pipeline scores; multi-label: every label over the threshold, by sigmoid."""
    if ctx.threshold is not None:
        return classification_common.sigmoid_over(outputs[0].logits, ctx.threshold, ctx.id2label)
    return classification_common.top_k(outputs[0].logits, ctx.top_k, ctx.id2label)[0]


STEPS = vision_common.steps(setup, decode)


TASK = Task(
    infer_options=classification_common.ClassifyOptions,
    name="image-classification",
    label_column="label",
    aliases=("image-cls", "image-classify", "img-cls"),
    summary="Label an image (objects, scenes, products, defects)",
    modality="image",
    metric_names=("accuracy", "f1"),
    best_metric="accuracy",
    columns={"image": "image file path (or a hub Image column)",
             "label": "class name or ClassLabel id (multi-label: a list, a separated string or 0/1 columns)"},
    sample="image-classification",
    default_recipe="vit",
    auto_model="AutoModelForImageClassification",
    load_processor=vision_common.load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=classification_common.metrics,
    steps=lambda run, model: STEPS,
    render=classification_common.render,
    labels=labels,
    load_model=classification_common.load_model,
    params=Params,
    cross_entropy_loss=True,
    multi_label=True,
    check=multilabel.check,
    before_save=multilabel.before_save,
    collator_reads_raw=True,
)
