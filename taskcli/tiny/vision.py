"""Tiny vision checkpoints: ViT and ConvNeXT backbones with their image processors (no tokenizer: the strings the
engine passes, file paths and labels, are ignored). Like the real `google/vit-base-patch16-224-in21k` they ship no
classification head; the task adds one sized for the labels.

The smoke images are 64 px; the models see 32 px (`image_size`), which keeps a CPU step in milliseconds.
"""

from __future__ import annotations

from pathlib import Path


def vit(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
               intermediate_size=96)
    cfg.update(overrides)
    ViTModel(ViTConfig(**cfg), add_pooling_layer=False).save_pretrained(out_dir)
    size = cfg["image_size"]
    ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
                      ).save_pretrained(out_dir)


def convnext(out_dir: Path, texts: list[str], overrides: dict) -> None:
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    cfg = dict(image_size=32, patch_size=4, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1])
    cfg.update(overrides)
    ConvNextModel(ConvNextConfig(**cfg)).save_pretrained(out_dir)
    # below 384 px ConvNeXT's processor resizes the short side to size/crop_pct, then centre-crops to size
    ConvNextImageProcessor(size={"shortest_edge": cfg["image_size"]}, crop_pct=0.875).save_pretrained(out_dir)


BUILDERS = {"vit": vit, "convnext": convnext}
