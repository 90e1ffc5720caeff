"""`infer.precision` / `--precision`: bf16 inference on CPU and its attention path (taskcli/attention.py)."""

import json

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from taskcli import attention


class _Module(torch.nn.Module):
    is_causal = False


def _qkv(b=2, h=3, length=300, d=16, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, h, length, d, generator=g).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("q_len", [300, 3])  # head by head (long queries), one batched matmul (short ones)
def test_fast_path_is_eager_attention_in_bf16(q_len):
    from transformers.models.whisper.modeling_whisper import eager_attention_forward

    q, k, v = _qkv()
    q = q[:, :, :q_len]
    module = _Module().eval()
    fast, _ = attention.attention_forward(module, q, k, v, None, scaling=0.3)
    eager, _ = eager_attention_forward(module, q, k, v, None, scaling=0.3)
    ref32, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), None, scaling=0.3)
    assert fast.shape == eager.shape == (2, q_len, 3, 16) and fast.dtype == torch.bfloat16
    # as close to the fp32 answer as transformers' eager attention in bf16 is (the two round in different places)
    err_fast, err_eager = (fast.float() - ref32).abs(), (eager.float() - ref32).abs()
    assert err_fast.max() <= 2 * err_eager.max() and err_fast.mean() <= 1.25 * err_eager.mean()
    assert err_fast.max() < 0.03


@pytest.mark.parametrize("case", ["mask", "causal", "fp32"])
def test_everything_else_is_stock_sdpa(case):
    q, k, v = _qkv(dtype=torch.float32 if case == "fp32" else torch.bfloat16)
    module = _Module().eval()
    mask = None
    if case == "mask":
        mask = torch.zeros(2, 1, q.shape[2], k.shape[2], dtype=q.dtype)
        mask[..., -7:] = torch.finfo(q.dtype).min
    if case == "causal":
        module.is_causal = True
    ours, _ = attention.attention_forward(module, q, k, v, mask)
    stock, _ = sdpa_attention_forward(module, q, k, v, mask)
    assert torch.equal(ours, stock)


def test_whisper_encoder_takes_the_fast_path_and_agrees(tmp_path):
    from transformers import WhisperForConditionalGeneration

    from taskcli.tiny import build

    build("whisper", tmp_path, ["a tiny test"], {"chunk_length": 30, "d_model": 64})  # 1,500 encoder positions
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    features = torch.randn(2, model.config.num_mel_bins, 3000, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model.model.encoder(features).last_hidden_state
        model.to(torch.bfloat16)
        stock = model.model.encoder(features.bfloat16()).last_hidden_state.float()
        assert attention.use_for(model)
        assert model.model.encoder.config._attn_implementation == attention.NAME
        calls = []
        original = attention.attention_forward

        def counting(*a, **kw):
            calls.append(a[1].shape[2])
            return original(*a, **kw)

        from transformers import AttentionInterface

        AttentionInterface.register(attention.NAME, counting)
        try:
            fast = model.model.encoder(features.bfloat16()).last_hidden_state.float()
        finally:
            AttentionInterface.register(attention.NAME, original)
    assert calls and set(calls) == {1500}
    scale = ref.abs().max().item()
    assert (fast - ref).abs().max().item() <= 2 * (stock - ref).abs().max().item() + 0.01 * scale


def test_bf16_infer_agrees_with_fp32(cli, trained):
    out = trained("token-classification")
    text = "Alice works for Globex in Tokyo ."
    runs = [cli("infer", "ner", text, "--model", out, "--json", *extra) for extra in ([], ["--precision", "bf16"])]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    fp32, bf16 = (json.loads(r.stdout) for r in runs)
    assert [e["entity_group"] for e in bf16["entities"]] == [e["entity_group"] for e in fp32["entities"]]
    for a, b in zip(fp32["entities"], bf16["entities"]):
        assert a["word"] == b["word"] and abs(a["score"] - b["score"]) < 0.05


def test_a_padded_batch_keeps_its_mask(trained):
    """transformers builds no attention mask for an attention name without a mask function: the padded rows of a
    batch attended to their padding (the benchmark's bf16 row found it: logits 5x further from fp32's than stock)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out = trained("token-classification")
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(["Alice works for Acme in Paris .", "Bob lives in Berlin"], return_tensors="pt", padding=True)
    stock, ours = (AutoModelForTokenClassification.from_pretrained(out).eval().to(torch.bfloat16) for _ in range(2))
    assert attention.use_for(ours)
    with torch.inference_mode():
        assert torch.equal(ours(**batch).logits, stock(**batch).logits)
