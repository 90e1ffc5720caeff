"""Pieces shared by the image tasks: loading the image processor, and infer's forward passes over images."""

from __future__ import annotations


def load_processor(run):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(run.model_source, **run.pretrained_kwargs())


def forward_batches(run, model, inputs, options, default_batch_size: int = 8, same_size: bool = False):
    """Yield (indices, images, outputs) for batches of the inputs: images decoded once (read_inputs' cache, else
    now), through the processor and the model; floating outputs in fp32 whatever the model ran in, ready for
    the processor's post-processing. same_size: batch only images of one size (processors that keep each
    image's own size, e.g. GLPN's)."""
    import torch

    from taskcli import images

    cache = options.get("_decoded") or {}
    decoded = [cache[x] if isinstance(x, str) and x in cache else images.load(x) for x in inputs]
    bs = int(options.get("batch_size") or default_batch_size)
    groups: dict = {}
    for i, image in enumerate(decoded):
        groups.setdefault(image.size if same_size else None, []).append(i)
    for group in groups.values():
        for start in range(0, len(group), bs):
            idx = group[start:start + bs]
            chunk = [decoded[i] for i in idx]
            batch = run.processor(images=chunk, return_tensors="pt")
            kw = {"pixel_mask": batch["pixel_mask"].to(model.device)} if "pixel_mask" in batch else {}
            with torch.inference_mode():
                outputs = model(pixel_values=batch["pixel_values"].to(model.device, model.dtype), **kw)
            for key, value in outputs.items():
                if torch.is_tensor(value) and value.is_floating_point():
                    outputs[key] = value.float()
            yield idx, chunk, outputs
