"""fp32 CPU inference's large linear layers through oneDNN (taskcli/cpu_linear.py): the same outputs as torch's own
linear, only where it is faster, never under autograd, and switched on by infer's loading (cast_for_inference)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from taskcli import cpu_linear

pytestmark = pytest.mark.skipif(not cpu_linear.available(), reason="this torch has no oneDNN linear")


def stack(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(),
                               torch.nn.Linear(4 * width, width, bias=False), torch.nn.Linear(width, 8)).eval()


def test_switched_layers_give_torchs_outputs():
    model = stack(384)
    x = torch.randn(3, 17, 384)
    with torch.inference_mode():
        before = model(x)
        assert cpu_linear.use_for(model) == 2  # the 8-output head is too small to gain
        after = model(x)
        strided = model(x.transpose(0, 1))  # a non-contiguous input
    assert model[3].forward.__func__ is not cpu_linear._forward and model[0].forward.__func__ is cpu_linear._forward
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5) and not torch.equal(before, torch.zeros_like(before))
    assert torch.allclose(strided, before.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_gradients_autocast_and_other_dtypes_take_torchs_own_linear(recwarn):
    model = stack(384)
    cpu_linear.use_for(model)
    x = torch.randn(2, 384, requires_grad=True)
    model(x).sum().backward()  # oneDNN's op has no autograd kernel: with gradients on, F.linear runs
    assert x.grad is not None and model[0].weight.grad is not None
    assert not [w for w in recwarn if "autograd kernel was not registered" in str(w.message)]
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's bf16 product, as F.linear gives it
            assert model[0](x.detach()).dtype == torch.bfloat16
        assert model.to(torch.bfloat16)(x.detach().bfloat16()).dtype == torch.bfloat16


def test_infer_loading_switches_fp32_cpu_models_unless_turned_off(monkeypatch):
    from taskcli.model_loading import cast_for_inference

    model = stack(384)
    model.device = torch.device("cpu")  # as a PreTrainedModel has it
    cast_for_inference(model, "fp32")
    assert sum(m.forward.__func__ is cpu_linear._forward for m in model if isinstance(m, torch.nn.Linear)) == 2
    monkeypatch.setenv("TASKCLI_ONEDNN_LINEAR", "0")
    fresh = stack(384)
    fresh.device = torch.device("cpu")
    cast_for_inference(fresh, "fp32")
    assert not [m for m in fresh if "forward" in vars(m)]


def _packed(model) -> list[int]:
    return [i for i, m in enumerate(model) if "_taskcli_packed" in vars(m)]


def test_switched_weights_are_packed_once_and_a_changed_weight_is_read_as_it_is():
    """oneDNN's blocked copy of each switched weight is what the layer multiplies by; a weight changed in place or
    replaced after packing is used as it now is (the stale copy would give the old layer's outputs)."""
    model = stack(384)
    x = torch.randn(5, 384)
    cpu_linear.use_for(model)
    assert _packed(model) == [0, 2]
    with torch.inference_mode():
        assert torch.allclose(model[0](x), torch.nn.functional.linear(x, model[0].weight, model[0].bias), atol=1e-5)
        with torch.no_grad():
            model[0].weight.mul_(-2.0)
        assert torch.allclose(model[0](x), torch.nn.functional.linear(x, model[0].weight, model[0].bias), atol=1e-5)
        model[2].weight = torch.nn.Parameter(torch.randn(384, 1536))
        y = torch.randn(2, 1536)
        assert torch.allclose(model[2](y), y @ model[2].weight.t(), atol=1e-4)


def test_no_packed_copy_without_room_for_it_or_when_turned_off(monkeypatch):
    import psutil

    model = stack(384)
    weights = sum(m.weight.numel() * 4 for m in (model[0], model[2]))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": 2 * weights - 8})())
    assert cpu_linear.use_for(model) == 2 and _packed(model) == []  # switched all the same
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": 2 * weights})())
    fits = stack(384)
    assert cpu_linear.use_for(fits) == 2 and _packed(fits) == [0, 2]
    monkeypatch.setenv("TASKCLI_ONEDNN_PACK", "0")
    off = stack(384)
    assert cpu_linear.use_for(off) == 2 and _packed(off) == []


GROWTH = """
import json, os, random, sys
import psutil, torch
from taskcli import cpu_linear
torch.manual_seed(0); random.seed(0)
model = torch.nn.Sequential(torch.nn.Linear(768, 3072), torch.nn.GELU(), torch.nn.Linear(3072, 768)).eval()
conv = torch.nn.Conv1d(4, 4, 3) if sys.argv[1] == "conv" else None  # e.g. a speech model's feature encoder
cpu_linear.use_for(torch.nn.ModuleList([model] + ([conv] if conv else [])))
rss = lambda: psutil.Process().memory_info().rss
with torch.inference_mode():
    model(torch.randn(8, 768))
    before = rss()
    for rows in random.sample(range(32, 1200), 250):  # a new row count each call, as a text batch has
        model(torch.randn(rows, 768))
        if conv:  # and a new length, as a recording has
            conv(torch.randn(1, 4, rows))
print(json.dumps({"grew_mb": (rss() - before) / 2**20, "caches": [os.environ.get(n) for n in cpu_linear.CACHES]}))
"""


def _growth(kind: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in cpu_linear.CACHES}
    done = subprocess.run([sys.executable, "-c", GROWTH, kind], capture_output=True, text=True, timeout=300,
                          env={**clean, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_oneDNN_caches_are_capped_so_new_shapes_do_not_grow_memory():
    """Every new row count or length builds oneDNN primitives; with the caches at their 1,024 entries memory grows by
    hundreds of MB over a long run (measured here: ~250 MB for 250 shapes; capped: a few tens). A convolution adds 2
    entries (each forward needs its own primitive)."""
    for kind, entries in (("text", cpu_linear.CACHE_ENTRIES), ("conv", cpu_linear.CACHE_ENTRIES + 2)):
        capped = _growth(kind)
        uncapped = _growth(kind, ONEDNN_PRIMITIVE_CACHE_CAPACITY="1024", LRU_CACHE_CAPACITY="1024")  # the user's
        assert capped["caches"] == [str(entries)] * 2 and uncapped["caches"] == ["1024", "1024"]
        assert capped["grew_mb"] < uncapped["grew_mb"] / 2, (kind, capped, uncapped)
