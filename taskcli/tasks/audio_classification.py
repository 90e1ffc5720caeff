"""audio-classification: audio file -> top-k labels with scores (Wav2Vec2 & co + a classification head).

Data: a hub dataset with an audio column, a folder per label (audio/<label>/*.wav), an audiofolder with
metadata.csv/jsonl, or CSV/JSONL with path + label columns. Audio is decoded from paths (taskcli.audio),
mixed to mono and resampled to the feature extractor's rate; training clips are cut to params.max_duration_s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskcli import audio
from taskcli.task import Context, Encoded, RankedOptions, Steps, Task
from taskcli.tasks import classification_common, label_sets


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_duration_s: float = Field(1.0, gt=0, description="training/eval clips are truncated to this length")
    freeze_feature_encoder: bool = Field(False, description="keep the convolutional feature encoder frozen")


def labels(run, dsd) -> list[str]:
    return classification_common.class_names(dsd, "audio")


def load_processor(run):
    from transformers import AutoFeatureExtractor

    return AutoFeatureExtractor.from_pretrained(run.model_source, **run.pretrained_kwargs())


def load_model(run, source, label_names):
    from taskcli.task import load_pretrained

    model = load_pretrained(run, source, label_names)
    if run.params.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


def preprocess(run, ds, training):
    from taskcli import audio

    ds = audio.undecoded(ds, "audio")
    fe = run.processor
    rate = fe.sampling_rate
    max_len = int(run.params.max_duration_s * rate)
    index = {n: i for i, n in enumerate(run.labels or [])}

    def encode(row):
        array = audio.load(row["audio"], rate)
        values = fe(array, sampling_rate=rate, max_length=max_len, truncation=True).input_values[0]
        return {"input_values": values, "labels": label_sets.label_id(row["label"], index)}

    return run.map(ds, encode, remove_columns=ds.column_names)


class AudioCollator:
    def __init__(self, use_mask: bool):
        self.use_mask = use_mask

    def __call__(self, features):
        import numpy as np
        import torch

        xs = [np.asarray(f["input_values"], dtype=np.float32) for f in features]
        width = max(len(x) for x in xs)
        values = np.zeros((len(xs), width), dtype=np.float32)
        mask = np.zeros((len(xs), width), dtype=np.int64)
        for i, x in enumerate(xs):
            values[i, : len(x)] = x
            mask[i, : len(x)] = 1
        batch = {"input_values": torch.from_numpy(values),
                 "labels": torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)}
        if self.use_mask:
            batch["attention_mask"] = torch.from_numpy(mask)
        return batch


def collator(run):
    return AudioCollator(bool(getattr(run.processor, "return_attention_mask", False)))


@dataclass
class _Context(Context):
    fe: Any = None  # the feature extractor (this task's processor)
    rate: int = 16000
    top_k: int = 1
    id2label: dict = field(default_factory=dict)


def setup(run, model, options):
    fe = run.processor
    return _Context(run, model, options, audio.infer_batch_size(fe, options.batch_size), fe=fe,
                    rate=fe.sampling_rate, top_k=options.top_k, id2label=model.config.id2label)


def encode(ctx, arrays):
    """Each clip whole (no cut, as the pipeline), normalised by the feature extractor on its own."""
    values = ctx.fe(arrays, sampling_rate=ctx.rate).input_values
    return [Encoded([{"input_values": v}], [len(v)]) for v in values]


def decode(ctx, enc, outputs):
    """Softmax top-k, as the audio-classification pipeline scores."""
    return classification_common.top_k(outputs[0].logits, ctx.top_k, ctx.id2label)[0]


STEPS = Steps(setup=setup, parse=audio.parse, encode=encode, decode=decode, errors=(audio.BadAudio,))


TASK = Task(
    infer_options=RankedOptions,
    name="audio-classification",
    label_column="label",
    aliases=("audio-cls", "audio-classify", "keyword-spotting"),
    summary="Label an audio clip (keyword spotting, intent, sound events)",
    modality="audio",
    metric_names=("accuracy", "f1"),
    best_metric="accuracy",
    columns={"audio": "audio file path (or a hub Audio column)", "label": "class name or ClassLabel id"},
    sample="audio-classification",
    default_recipe="wav2vec2",
    auto_model="AutoModelForAudioClassification",
    load_processor=load_processor,
    load_model=load_model,
    preprocess=preprocess,
    collator=collator,
    metrics=classification_common.metrics,
    steps=lambda run, model: STEPS,
    render=classification_common.render,
    labels=labels,
    params=Params,
    cross_entropy_loss=True,
)
