"""fp32 linear layers on CPU through oneDNN's fused-bias kernel, for inference (infer, serve, benchmark's torch rows).

Why: on CPU `nn.Linear` is `addmm`: it copies the bias into the output, then runs MKL's sgemm onto it. oneDNN's
linear (`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile's CPU backend emits) adds the bias inside the
product. Measured on the 2-core Genoa (AVX-512), DistilBERT-base shapes (1,120 tokens x 768 -> 768 / 768 -> 3,072 /
3,072 -> 768): 171 / 166 / 191 GFLOP/s through F.linear, 204 / 203 / 200 through oneDNN; a whole NER forward over
1,000 sentences 1.19x faster (the two models interleaved batch by batch), logits within 3e-6 and the same argmax.

Small layers are slower through it (its per-call overhead: 0.27x at 32 features), so only layers with at least
MIN_FEATURES inputs and outputs switch. Autograd does not go through the op: a call with gradients on, under CPU
autocast, or on another dtype or device takes F.linear as before. TASKCLI_ONEDNN_LINEAR=0 keeps torch's own everywhere.

Each switched layer's weight is also kept in oneDNN's own blocked layout (`mkldnn._reorder_linear_weight`, what
torch.compile's frozen graphs use), so no call reorders it again: the same outputs bit for bit, and 1.01-1.20x the
layer's speed (1,120 x 768 -> 3,072: 210 -> 219 GFLOP/s; 32 rows: 184 -> 221); the NER forward over 1,000 sentences
80.0 / 82.5 % -> 84.8 / 86.1 % of the GEMM peak (bench_gemm, two interleaved pairs). The copy costs the layers' weights
again in memory, so it is made only while all copies fit in half the memory available; TASKCLI_ONEDNN_PACK=0 skips it.
A weight changed after packing (in place or replaced) is read as it is, unpacked.

oneDNN builds a primitive for each new row count (batch x length) and keeps it in two caches (its own and ideep's,
1,024 entries each), with the memory freed around them: over a long text infer that grew the process by hundreds of
MB (1,000 / 5,000 / 10,000 NER sentences, DistilBERT-base size: peak RSS 1.15 / 1.62 / 2.03 GB). Both caches now
keep 16 entries, 2 more per convolution (1.09-1.15 / 1.26 / 1.28 GB, no slower: _cap_caches).
"""

from __future__ import annotations

import os
import types

import torch
import torch.nn.functional as F

MIN_FEATURES = 384
# oneDNN's primitive cache and ideep's (torch's wrapper around it), read when first used: entries each
CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
CACHE_ENTRIES = 16  # and 2 more per convolution (_cap_caches)
PACK_ROWS = 1024  # the batch size oneDNN lays the packed weight out for (as fast or faster at 32-2,400 rows, measured)


def available() -> bool:
    return (os.environ.get("TASKCLI_ONEDNN_LINEAR", "1") != "0" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _forward(self, x):
    if (x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")):  # autocast would have run F.linear in bf16
        weight, packed = self.weight, self.__dict__.get("_taskcli_packed")
        if packed is not None and packed[0] is weight and packed[1] == _version(weight):  # else changed since packing
            weight = packed[2]
        return torch.ops.mkldnn._linear_pointwise(x, weight, self.bias, "none", [], "")
    return F.linear(x, self.weight, self.bias)


def _version(weight):
    """Its in-place change counter; None for a tensor made under inference_mode, which keeps none."""
    return None if weight.is_inference() else weight._version


def _room_to_pack(layers: list) -> bool:
    if os.environ.get("TASKCLI_ONEDNN_PACK", "1") == "0":
        return False
    try:
        import psutil  # (accelerate's dependency)
    except ImportError:
        return False
    return sum(m.weight.numel() * m.weight.element_size() for m in layers) <= psutil.virtual_memory().available / 2


def _cap_caches(model) -> None:
    """Keep a forward's worth of primitives in each of oneDNN's caches instead of 1,024, unless the user set them:
    16 entries, and 2 more per convolution. A batch meets a shape (rows, a recording's length) that earlier batches
    rarely had, and each new one builds and caches primitives (~1 MB each with the memory freed around them, for
    768 x 3,072 weights): a long infer or a server grew by hundreds of MB (cpu_linear's docstring). Within a forward
    every linear layer of a shape reuses its primitive, so a few entries keep that reuse; each convolution needs its
    own (and a reorder) in every forward. Measured on the 2-core Genoa: wav2vec2-base size (8 convolutions), 200
    forwards of 1-4 recordings of 0.5-4 s: RSS 1.13 -> 2.33 GB at 1,024 entries, 1.24-1.29 GB at 32, 1.25 GB at 16,
    no slower; ResNet-50 (53) at one shape: 122 entries as fast as 1,024 (250-264 against 269-282 ms a forward), 16
    ~10 % slower. Process-wide, and only before oneDNN's first use in the process."""
    convolutions = sum(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
    for name in CACHES:
        os.environ.setdefault(name, str(CACHE_ENTRIES + 2 * convolutions))


def use_for(model) -> int:
    """Route the model's large fp32 CPU `nn.Linear` layers (the class itself, not subclasses such as quantized or
    adapter layers, which have forwards of their own) through oneDNN; how many switched."""
    if not available():
        return 0
    layers = [module for module in model.modules()
              if type(module) is torch.nn.Linear and module.weight.dtype == torch.float32
              and module.weight.device.type == "cpu" and min(module.in_features, module.out_features) >= MIN_FEATURES]
    if layers:
        _cap_caches(model)
    pack = _room_to_pack(layers)
    for module in layers:
        module.forward = types.MethodType(_forward, module)
        if pack:  # (not a buffer: state_dict and .to() never see it)
            weight = module.weight
            with torch.no_grad():
                module.__dict__["_taskcli_packed"] = (weight, _version(weight),
                                                      torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS))
    return len(layers)
