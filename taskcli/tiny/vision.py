"""Tiny vision checkpoints: ViT, ConvNeXT and SegFormer backbones with their image processors (no tokenizer: the
strings the engine passes, file paths and labels, are ignored). Like the real `google/vit-base-patch16-224-in21k`
and `nvidia/mit-b0` they ship no task head; the task adds one sized for its labels.

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


def segformer(out_dir: Path, texts: list[str], overrides: dict) -> None:
    """A two-stage MiT encoder (the real B0 has four); the task adds the all-MLP decode head for its labels."""
    from transformers import SegformerConfig, SegformerImageProcessor, SegformerModel

    overrides = dict(overrides)
    size = int(overrides.pop("image_size", 64))
    cfg = dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3],
               strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=32)
    cfg.update(overrides)
    SegformerModel(SegformerConfig(**cfg)).save_pretrained(out_dir)
    SegformerImageProcessor(size={"height": size, "width": size}, do_reduce_labels=False).save_pretrained(out_dir)


def mask2former(out_dir: Path, texts: list[str], overrides: dict) -> None:
    """A tiny Swin backbone (4 stages) under Mask2Former's pixel decoder and a 2-layer masked-attention decoder.
    Sizes are multiples of 32 (the pixel decoder's GroupNorm) and images 64 px (the smallest that fits)."""
    from transformers import Mask2FormerConfig, Mask2FormerImageProcessor, Mask2FormerModel, SwinConfig

    overrides = dict(overrides)
    size = int(overrides.pop("image_size", 64))
    swin = SwinConfig(image_size=size, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = dict(feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64,
               encoder_layers=1, decoder_layers=2, num_attention_heads=2, num_queries=8, common_stride=4,
               train_num_points=1024)  # the released 12,544 sampled points exceed a 64 px mask's 4,096 pixels
    cfg.update(overrides)
    Mask2FormerModel(Mask2FormerConfig(backbone_config=swin, use_pretrained_backbone=False, **cfg)
                     ).save_pretrained(out_dir)
    Mask2FormerImageProcessor(size={"height": size, "width": size}, do_reduce_labels=False, ignore_index=255
                              ).save_pretrained(out_dir)


def glpn(out_dir: Path, texts: list[str], overrides: dict) -> None:
    """GLPN: a four-stage MiT encoder and its lightweight decoder; the depth head is part of the checkpoint
    (`max_depth`: 10 m as NYU's, 80 m as KITTI's)."""
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    cfg = dict(num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[4, 2, 1, 1], hidden_sizes=[8, 16, 32, 64],
               patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], num_attention_heads=[1, 1, 2, 2],
               mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, max_depth=10, head_in_index=-1)
    cfg.update(overrides)
    GLPNForDepthEstimation(GLPNConfig(**cfg)).save_pretrained(out_dir)
    GLPNImageProcessor(size_divisor=32).save_pretrained(out_dir)


def detr(out_dir: Path, texts: list[str], overrides: dict) -> None:
    """DETR on a tiny ResNet built from its config (not timm, and no pretrained backbone download), a 1+2-layer
    transformer and 10 object queries; the processor resizes to 96..128 px (the real one: 800..1333)."""
    from transformers import DetrConfig, DetrImageProcessor, DetrModel, ResNetConfig

    overrides = dict(overrides)
    short, long = int(overrides.pop("shortest_edge", 96)), int(overrides.pop("longest_edge", 128))
    stage = overrides.pop("backbone_stage", "stage4")  # stride 32, as ResNet-50 DETR (stage3: stride 16)
    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1],
                            layer_type="basic", out_features=[stage])
    cfg = dict(d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
               encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10)
    cfg.update(overrides)
    DetrModel(DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False, **cfg)
              ).save_pretrained(out_dir)
    DetrImageProcessor(size={"shortest_edge": short, "longest_edge": long}).save_pretrained(out_dir)


BUILDERS = {"vit": vit, "convnext": convnext, "segformer": segformer, "mask2former": mask2former, "glpn": glpn,
            "detr": detr}
