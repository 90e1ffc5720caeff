"""A `taskcli export` folder run by ONNX Runtime, shaped like the PyTorch model it came from, so the task's Steps and
the Trainer's evaluation use it unchanged: `config`, `device`, `dtype`, `main_input_name`, and `model(**batch)`
returning the model's own output class (logits, pred_boxes, ...) as torch tensors on the CPU.

Only the forward changes: tokenizers, processors and post-processing are the task's as for the PyTorch model.
"""

from __future__ import annotations

import importlib
import inspect
import types

import torch

from taskcli.onnx_runtime import Graph, manifest


class OnnxModel(torch.nn.Module):
    """One ONNX graph of an exported folder. Load it with `load`, which names the class after the PyTorch one and
    gives `forward` that class's signature: the Trainer finds the label columns (find_labels) and the columns to
    keep from them, as it does for the PyTorch model."""

    def __init__(self, folder, file: str | None = None):
        super().__init__()
        from transformers import AutoConfig

        self.graph = Graph(folder, file)
        self.folder, self.meta, self.file = self.graph.folder, self.graph.meta, self.graph.file
        self.config = AutoConfig.from_pretrained(folder)
        module, name = self.meta["output_class"].rsplit(".", 1)
        self.output_class = getattr(importlib.import_module(module), name)
        self.main_input_name = self.meta.get("main_input_name") or getattr(architecture(self.config),
                                                                            "main_input_name", "input_ids")

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def dtype(self):
        return torch.float32

    def run(self, batch: dict):
        """The graph on a batch of torch tensors: inputs it does not take (labels...) are left out."""
        arrays = {k: v.detach().cpu().numpy() for k, v in batch.items() if torch.is_tensor(v)}
        out = {n: torch.from_numpy(v) for n, v in self.graph.run_arrays(arrays).items()}
        if any("label" in k or k in ("start_positions", "end_positions") for k in batch) and \
                "loss" in self.output_class.__dataclass_fields__:
            # the graph has no loss (exported without labels): the Trainer reads one when labels are given
            out = {"loss": torch.tensor(float("nan")), **out}
        return self.output_class(**out)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            # config-only helpers of the PyTorch class the task's steps call (CTC's _get_feat_extract_output_lengths)
            config = self.__dict__.get("config")
            fn = getattr(architecture(config), name, None) if name.startswith("_get_") and config else None
            if inspect.isfunction(fn):
                return types.MethodType(fn, self)
            raise


def architecture(config):
    """The PyTorch class the model was saved from (config.architectures[0]). Importing it loads the modeling code
    (and torch._dynamo with it, ~1.5 s), so loading an export avoids it where the manifest says enough."""
    import transformers

    return getattr(transformers, (config.architectures or ["PreTrainedModel"])[0])


def forward_facts(config) -> dict:
    """What loading the export needs from the PyTorch class, for the manifest: its forward's parameters (the
    Trainer picks the label columns by them) and main_input_name."""
    arch = architecture(config)
    return {"forward": [[p.name, p.kind.name] for p in inspect.signature(arch.forward).parameters.values()],
            "main_input_name": getattr(arch, "main_input_name", "input_ids")}


def _forward_signature(meta: dict, config) -> inspect.Signature:
    """The PyTorch forward's signature: from the manifest, else (an export made before it was written there)
    from the class itself."""
    if "forward" not in meta:
        return inspect.signature(architecture(config).forward)
    kinds = inspect.Parameter
    return inspect.Signature([kinds(name, getattr(kinds, kind), **({} if name == "self" or kind.startswith("VAR")
                                                                   else {"default": None}))
                              for name, kind in meta["forward"]])


def load(folder, file: str | None = None):
    """The exported model in `folder` (its manifest's model file, or `file`), as a class named after the PyTorch
    one ('OnnxDistilBertForTokenClassification') with that class's forward signature. A generating model's file is
    its graphs' manifest (onnx_generate.py)."""
    from transformers import AutoConfig

    from taskcli import onnx_generate

    file = file or manifest(folder)["model_file"]
    if onnx_generate.is_components(file):
        return onnx_generate.load(folder, file)
    config = AutoConfig.from_pretrained(folder)
    name = (config.architectures or ["PreTrainedModel"])[0]

    def forward(self, **batch):
        return self.run(batch)

    forward.__signature__ = _forward_signature(manifest(folder), config)
    cls = type(f"Onnx{name}", (OnnxModel,), {"forward": forward})
    return cls(folder, file)
