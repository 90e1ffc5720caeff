"""LoRA fine-tuning through peft (`train.lora`, `--lora`): adapters on the pretrained body, the task head trained whole.

The output dir gets the merged model (what `from_pretrained` and `pipeline()` load as they are) and the adapter
alone in `adapter/` (with the head weights, as peft's `modules_to_save`).
"""

from __future__ import annotations

from pathlib import Path

from taskcli.errors import TaskcliError


def _peft():
    try:
        import peft
    except ImportError:
        raise TaskcliError("train.lora needs the peft package, which is not installed",
                           "pip install 'taskcli[lora]'") from None
    return peft


def parts(model) -> tuple[str | None, list[str]]:
    """(name of the pretrained body module, names of the head modules to train whole).

    The body is the child named by `base_model_prefix` (distilbert, vit, model...). The heads are the other
    children with weights, except an output embedding (a language model's head shares the input embedding
    matrix: it is adapted through the body, not copied). A model with no such body child (T5) has no head."""
    prefix = getattr(model, "base_model_prefix", "")
    children = dict(model.named_children())
    if prefix not in children:
        return None, []
    tied = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    heads = [name for name, child in children.items()
             if name != prefix and child is not tied and any(True for _ in child.parameters())]
    return prefix, heads


def target_modules(model, body: str | None, wanted):
    """The recipe's target_modules, else peft's default for the architecture, else every linear layer of the body
    (a regex on full module names, so the head's linear layers stay out: they are trained whole)."""
    import torch

    if wanted:
        return wanted
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(model.config, "model_type", "")
    if model_type in DEFAULTS:
        return list(DEFAULTS[model_type])
    root = getattr(model, body) if body else model
    names = sorted({name.rsplit(".", 1)[-1] for name, m in root.named_modules() if isinstance(m, torch.nn.Linear)})
    if not names:
        raise TaskcliError(f"no linear layers to adapt in this {model_type} model", "set train.lora.target_modules")
    scope = rf"{body}\..*" if body else r".*"
    return rf"^{scope}\.({'|'.join(names)})$"


def wrap(run, model):
    """The model with LoRA adapters; prints nothing (the run header reports trainable / total parameters)."""
    peft = _peft()
    settings = run.recipe.train.lora
    body, heads = parts(model)
    config = peft.LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=target_modules(model, body, settings.target_modules),
                             modules_to_save=heads or None)
    try:
        wrapped = peft.get_peft_model(model, config)
    except ValueError as err:  # e.g. target modules not found in the model
        raise TaskcliError(f"LoRA: {str(err).splitlines()[0]}", "set train.lora.target_modules to module names of "
                                                                 "this model") from None
    return wrapped


def merge(model, adapter_dir: Path):
    """Save the adapter (+ head) to `adapter_dir`, then return the plain model with the adapter merged in."""
    model.save_pretrained(str(adapter_dir))
    return model.merge_and_unload()
