"""A decoder-only language model (text-generation) exported with its KV cache, run by transformers' own generate().

`transformers.exporters.OnnxExporter.export_for_generation` runs one real generate() call and traces the two forwards
it makes: `prefill` (the prompt, on an empty cache) and `decode` (new tokens on a filled cache), both with dynamic
batch, sequence and cache axes. The folder it writes (`export.json` naming each graph's file and its traced inputs and
outputs) is its own format: `ExportedModel.from_pretrained` reads it too.

Running it: `load` gives a parameter-free model of the PyTorch class whose forward hands each call to the prefill or
decode graph (ONNX Runtime, through transformers' runner, which rebuilds the DynamicCache from the graph's outputs).
generate() itself is unchanged, so greedy, sampling (same seed, same tokens), beams, stopping and streaming are the
PyTorch model's; with `labels` the forward adds the model's own loss, so `eval` scores perplexity as for torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

COMPONENTS = "export.json"  # transformers.exporters' manifest; the int8 graphs get their own (export.int8.json)


def is_components(file: str) -> bool:
    """Whether an export's format file is a generating model's graphs manifest (else it is the one ONNX graph)."""
    return file.endswith(".json")


def export(mdl, batch: dict, folder: Path) -> str:
    """Trace `mdl`'s prefill and decode graphs from a generate() call on two of `batch`'s rows and write them into
    `folder`; returns the components manifest's name."""
    import logging

    from transformers.exporters import OnnxConfig, OnnxExporter, exporter_dynamo, exporter_onnx

    # their loggers are named by file path, outside transformers' tree: the advice to pass explicit dynamic_shapes is
    # the exporter's own (a DynamicCache's axes vary by model), not the user's to act on
    loggers = [logging.getLogger(module.__file__) for module in (exporter_dynamo, exporter_onnx)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        exported = OnnxExporter().export_for_generation(mdl, sample(batch), OnnxConfig(dynamic=True),
                                                        multi_token_decode=True)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    exported.save_pretrained(folder)
    share_weights(folder, COMPONENTS)
    return COMPONENTS


def share_weights(folder: Path, manifest: str) -> None:
    """Store the weights the graphs have in common once. The exporter writes each graph's weights into its own
    `<graph>.data` file and quantize_dynamic keeps them inside each graph, so prefill and decode held every weight
    twice (a distilgpt2-size export: 626 MB for 312). Each tensor of 1 KB or more goes, the first time its bytes are
    met, into the `.data` file of the graph that has it (page-aligned, so ONNX Runtime can map it); a later graph's
    tensor with the same bytes points there. Every graph keeps its own `.data` file (ExportedModel.from_pretrained
    fetches one per graph), the later ones holding only what they do not share."""
    import hashlib

    import onnx

    protos = {graph: onnx.load(str(folder / graph), load_external_data=False) for graph in _graphs(folder, manifest)}
    places = {}
    for graph, proto in protos.items():
        # written beside: the graphs' tensors still point at their old files until all are read
        with open(folder / f"{graph}.data.partial", "wb") as out:
            for tensor in _tensors(proto.graph):
                data = _take_bytes(folder, tensor)
                if data is None:
                    continue
                digest = hashlib.sha256(data).digest()
                if digest not in places:
                    out.write(b"\0" * (-out.tell() % 4096))
                    places[digest] = (f"{graph}.data", out.tell())
                    out.write(data)
                tensor.data_location = onnx.TensorProto.EXTERNAL
                del tensor.external_data[:]  # (onnx's set_external_data wants the bytes in the proto first)
                for key, value in zip(("location", "offset", "length"), (*places[digest], len(data))):
                    tensor.external_data.add(key=key, value=str(value))
    for graph, proto in protos.items():
        (folder / f"{graph}.data.partial").replace(folder / f"{graph}.data")
        onnx.save(proto, str(folder / graph))
    # no other file is deleted: what a graph read from may be another format's (int8 graphs pointing at fp32 data)


def _take_bytes(folder: Path, tensor) -> bytes | None:
    """A tensor's bytes, from its external file or out of the proto (1 KB or more; None for smaller ones, which stay
    in the graph)."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    if uses_external_data(tensor):
        info = ExternalDataInfo(tensor)
        with open(folder / info.location, "rb") as src:
            src.seek(info.offset or 0)
            return src.read() if info.length is None else src.read(info.length)
    if len(tensor.raw_data) < 1024:
        return None
    data = tensor.raw_data
    tensor.ClearField("raw_data")
    return data


def _graphs(folder: Path, manifest: str) -> list[str]:
    """The graph files a components manifest names (prefill first)."""
    return [entry["file"] for entry in json.loads((folder / manifest).read_text())["components"].values()]


def _tensors(graph):
    """Every tensor a graph holds: its initializers and those of nodes' attributes and subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def sample(batch: dict) -> dict:
    """generate()'s inputs for the trace: two rows (one would fix the batch axis at 1), at most 8 tokens each."""
    ids, mask = batch["input_ids"][:2, :8], batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask[:2, :8]
    if len(ids) == 1:
        ids, mask = ids.repeat(2, 1), mask.repeat(2, 1)
    return {"input_ids": ids, "attention_mask": mask}


def quantize(folder: Path, quantize_graph) -> str:
    """Each graph through `quantize_graph(src, dst)` (export's dynamic int8), with a manifest of its own."""
    components = json.loads((folder / COMPONENTS).read_text())
    for entry in components["components"].values():
        int8 = entry["file"].replace(".onnx", ".int8.onnx")
        quantize_graph(folder / entry["file"], folder / int8)
        entry["file"] = int8
    name = COMPONENTS.replace(".json", ".int8.json")
    (folder / name).write_text(json.dumps(components, indent=2) + "\n")
    share_weights(folder, name)
    return name


def graph_files(folder: Path, file: str) -> list[Path]:
    """The files a format takes on disk: its graph, or each graph of a generating model, with their own `.data` files
    and any other file of weights they point to (each file once)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    folder = Path(folder)
    graphs = _graphs(folder, file) if is_components(file) else [file]
    names = dict.fromkeys(name for graph in graphs for name in (graph, f"{graph}.data"))
    for graph in graphs:
        proto = onnx.load(str(folder / graph), load_external_data=False)
        pointed = (ExternalDataInfo(t).location for t in _tensors(proto.graph) if uses_external_data(t))
        names.update(dict.fromkeys(pointed))
    return [folder / name for name in names if (folder / name).is_file()]


def load(folder, file: str = COMPONENTS):
    """The exported graphs in `folder` (their manifest `file`) as a model of the PyTorch class, without weights."""
    import transformers
    from transformers import AutoConfig, GenerationConfig, PreTrainedModel
    from transformers.exporters.metadata import ExportMetadata
    from transformers.exporters.runners.runner_onnx import OnnxModelRunner

    from taskcli.onnx_runtime import session

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    components = json.loads((folder / file).read_text())["components"]
    runners = {name: OnnxModelRunner(ExportMetadata(**entry["metadata"]), session(folder / entry["file"]))
               for name, entry in components.items()}
    arch = getattr(transformers, (config.architectures or ["AutoModelForCausalLM"])[0])

    def __init__(self, config):
        PreTrainedModel.__init__(self, config)  # not the class's own: it would build (and allocate) every layer
        self.runners = runners

    def forward(self, input_ids=None, cache=None, attention_mask=None, position_ids=None, labels=None, **kwargs):
        past = 0 if cache is None else cache.get_seq_length()
        if position_ids is None:  # as the PyTorch forward makes them (eval's batches come without)
            position_ids = torch.arange(past, past + input_ids.shape[1]).expand(input_ids.shape[0], -1)
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape[0], past + input_ids.shape[1], dtype=torch.long)
        out = self.runners["decode" if past else "prefill"](input_ids=input_ids, cache=cache,
                                                           attention_mask=attention_mask, position_ids=position_ids)
        if labels is not None:  # the graphs have no loss: the model's own (shifted cross-entropy) on their logits
            out.loss = self.loss_function(out.logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return out

    cpu = property(lambda self: torch.device("cpu"))
    fp32 = property(lambda self: torch.float32)
    cls = type(f"Onnx{arch.__name__}", (arch,), {"__init__": __init__, "forward": forward, "device": cpu,
                                                 "dtype": fp32})
    model = cls(config)
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model.eval()
