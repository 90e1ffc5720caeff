"""object-detection: image -> labelled boxes with scores (DETR & co, set-prediction detectors).

Data: rows of an image and its objects, `{"bbox": [[x, y, width, height], ...], "category": [...]}` in pixels
(COCO's box convention, the layout of the Hub's detection datasets such as cppe-5); categories are ClassLabel ids
or names. Hub dataset, an imagefolder with metadata.jsonl (`file_name`, `objects`), or JSONL with a path column.

Eval: COCO mAP (IoU 0.50:0.95), mAP@0.50, mAP@0.75, mAR@100 and per-class AP, by pycocotools' COCOeval on the
boxes in each image's own pixels; predictions and references are gathered batch by batch (no logits are kept).
Infer: boxes above `params.threshold` through the processor's own post-processing, as the pipeline returns them;
with --save-overlays DIR each image with its boxes drawn as DIR/NAME.png (taskcli/overlays.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from taskcli.task import ROW, Result, Task, rows_numbered
from taskcli.tasks import label_sets, vision_common


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.5, ge=0, le=1, description="infer: keep boxes scoring at least this")
    augment: bool = Field(True, description="training only: random horizontal flip of image and boxes")


def labels(run, dsd) -> list[str]:
    def category(features):  # objects: {category: List(ClassLabel)} or List({category: ClassLabel})
        objects = features.get("objects")
        return objects.get("category") if isinstance(objects, dict) else getattr(objects, "feature", {}).get("category")

    return label_sets.names(dsd, category, lambda ds: (c for objs in ds["objects"] for c in objs["category"]),
                            "object categories")


def load_model(run, source, label_names):
    from taskcli.task import load_pretrained

    model = load_pretrained(run, source, label_names)
    # eval keeps only class logits and boxes per batch, not DETR's hidden states and loss breakdown
    model.config.keys_to_ignore_at_inference = ["loss_dict", "last_hidden_state", "encoder_last_hidden_state",
                                                "auxiliary_outputs", "intermediate_hidden_states"]
    return model


def preprocess(run, ds, training):
    """Keep the image and its objects; decoding (and a flip of image and boxes when training) happens per batch."""
    from taskcli import images

    index = {n: i for i, n in enumerate(run.labels or [])}
    flip = training and run.params.augment

    clock = run.clock

    def transform(batch):
        from PIL import ImageOps

        out_images, out_targets = [], []
        for k, (image, objects) in enumerate(zip(batch["image"], batch["objects"])):
            image = images.load(image)
            boxes = [list(map(float, b)) for b in objects["bbox"]]
            if flip and clock.rng(batch[ROW][k]).random() < 0.5:
                image = ImageOps.mirror(image)
                boxes = [[image.width - x - w, y, w, h] for x, y, w, h in boxes]
            anns = [{"bbox": b, "category_id": label_sets.label_id(c, index, "object category"), "area": b[2] * b[3],
                     "iscrowd": 0} for b, c in zip(boxes, objects["category"]) if b[2] > 0 and b[3] > 0]
            out_images.append(image)
            out_targets.append(anns)
        return {"image": out_images, "objects": out_targets}

    ds = ds.select_columns(["image", "objects"])
    return (rows_numbered(ds) if flip else ds).with_transform(transform)


class DetectionCollator:
    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows):
        annotations = [{"image_id": i, "annotations": r["objects"]} for i, r in enumerate(rows)]
        batch = self.processor(images=[r["image"] for r in rows], annotations=annotations, return_tensors="pt")
        out = {"pixel_values": batch["pixel_values"], "labels": list(batch["labels"])}
        if "pixel_mask" in batch:
            out["pixel_mask"] = batch["pixel_mask"]
        return out


def collator(run):
    return DetectionCollator(run.processor)


def metrics(run, examples, features):
    """fn(pred, compute_result): collects each batch's boxes (post-processed to the original image size) and its
    reference boxes; on the last batch scores them with pycocotools."""
    import types

    import torch

    from taskcli.metrics import coco_detection

    gathered: dict = {"pred": [], "ref": []}

    def compute(pred, compute_result: bool = True):
        logits, boxes = (torch.as_tensor(x).float().cpu() for x in pred.predictions[:2])
        refs = pred.label_ids
        sizes = [tuple(int(v) for v in r["orig_size"]) for r in refs]
        found = run.processor.post_process_object_detection(
            types.SimpleNamespace(logits=logits, pred_boxes=boxes), threshold=0.0, target_sizes=sizes)
        for f in found:
            gathered["pred"].append([(int(c), float(s), [float(v) for v in b])
                                     for s, c, b in zip(f["scores"], f["labels"], f["boxes"])])
        for r, (h, w) in zip(refs, sizes):
            cx, cy, bw, bh = (torch.as_tensor(r["boxes"]).float().cpu() * torch.tensor([w, h, w, h])).unbind(-1)
            xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            gathered["ref"].append([(int(c), [float(v) for v in b])
                                    for c, b in zip(torch.as_tensor(r["class_labels"]).tolist(), xyxy)])
        if not compute_result:
            return {}
        result = coco_detection(gathered["pred"], gathered["ref"], run.labels)
        gathered["pred"], gathered["ref"] = [], []
        return result

    return compute


@dataclass
class _Context(vision_common.VisionContext):
    threshold: float = 0.5  # keep boxes scoring at least this
    class_ids: dict = field(default_factory=dict)  # label -> class id: overlay colours, as segmentation's


class Options(vision_common.OverlayOptions):
    threshold: float | None = Field(None, ge=0.0, le=1.0)  # keep boxes scoring at least this (default: the recipe's)


def setup(run, model, options):
    threshold = options.threshold if options.threshold is not None else run.params.threshold
    id2label = model.config.id2label
    return vision_common.context(_Context, run, model, options, outputs=("logits", "pred_boxes"),
                                 threshold=threshold, class_ids={name: int(k) for k, name in id2label.items()})


def decode(ctx, picture, outputs):
    """The processor's own post-processing: boxes in the input's pixels, xmin/ymin/xmax/ymax, best first."""
    from taskcli import overlays

    image = picture.image
    found = ctx.processor.post_process_object_detection(outputs[0], threshold=ctx.threshold,
                                                        target_sizes=[image.size[::-1]])[0]
    # DETR's boxes can reach past the image edge: clip them to the picture (0..width, 0..height)
    w, h = image.size
    objects = [{"label": ctx.id2label[int(c)], "score": float(s),
                "box": dict(zip(("xmin", "ymin", "xmax", "ymax"),
                                (round(min(max(float(v), 0.0), float(w if k % 2 == 0 else h)), 2)
                                 for k, v in enumerate(b))))}
               for s, c, b in zip(found["scores"], found["labels"], found["boxes"])]
    result = {"objects": sorted(objects, key=lambda o: -o["score"])}
    return Result(result, overlay=overlays.save(ctx.overlays.get(picture.source),
                                                lambda: overlays.boxes(image, result["objects"], ctx.class_ids)))


STEPS = vision_common.steps(setup, decode)


def render(item, result):
    return [{"label": o["label"], "score": f"{o['score']:.3f}",
             "box": "{xmin:.0f},{ymin:.0f} - {xmax:.0f},{ymax:.0f}".format(**o["box"])} for o in result["objects"]]


TASK = Task(
    infer_options=Options,
    name="object-detection",
    aliases=("detection", "detect", "od"),
    summary="Find objects in an image: labelled boxes with scores",
    modality="image",
    metric_names=("map", "map_50", "map_75"),
    best_metric="map",
    columns={"image": "image file path (or a hub Image column)",
             "objects": "{bbox: [[x, y, w, h], ...] in pixels, category: [id or name, ...]}"},
    sample="object-detection",
    default_recipe="detr",
    auto_model="AutoModelForObjectDetection",
    load_processor=vision_common.load_processor,
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
)
