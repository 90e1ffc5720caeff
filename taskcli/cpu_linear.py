"""fp32 linear layers on CPU through oneDNN's fused-bias kernel, for inference (infer, serve, benchmark's torch rows).

Why: on CPU `nn.Linear` is `addmm`: it copies the bias into the output, then runs MKL's sgemm onto it. oneDNN's
linear (`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile's CPU backend emits) adds the bias inside the
product. Measured on the 2-core Genoa (AVX-512), DistilBERT-base shapes (1,120 tokens x 768 -> 768 / 768 -> 3,072 /
3,072 -> 768): 171 / 166 / 191 GFLOP/s through F.linear, 204 / 203 / 200 through oneDNN; a whole NER forward over
1,000 sentences 1.19x faster (the two models interleaved batch by batch), logits within 3e-6 and the same argmax.

Small layers are slower through it (its per-call overhead: 0.27x at 32 features), so only layers with at least
MIN_FEATURES inputs and outputs switch. Autograd does not go through the op: a call with gradients on, under CPU
autocast, or on another dtype or device takes F.linear as before. TASKCLI_ONEDNN_LINEAR=0 keeps torch's own everywhere.
"""

from __future__ import annotations

import os
import types

import torch
import torch.nn.functional as F

MIN_FEATURES = 384


def available() -> bool:
    return (os.environ.get("TASKCLI_ONEDNN_LINEAR", "1") != "0" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _forward(self, x):
    if (x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")):  # autocast would have run F.linear in bf16
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
    return F.linear(x, self.weight, self.bias)


def use_for(model) -> int:
    """Route the model's large fp32 CPU `nn.Linear` layers (the class itself, not subclasses such as quantized or
    adapter layers, which have forwards of their own) through oneDNN; how many switched."""
    if not available():
        return 0
    switched = 0
    for module in model.modules():
        if (type(module) is torch.nn.Linear and module.weight.dtype == torch.float32
                and module.weight.device.type == "cpu"
                and min(module.in_features, module.out_features) >= MIN_FEATURES):
            module.forward = types.MethodType(_forward, module)
            switched += 1
    return switched
