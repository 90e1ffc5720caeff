"""An exported text model run without torch or transformers (issue 20's start-up): `tokenizers` loads the folder's
tokenizer.json, ONNX Runtime runs the graph, numpy carries the arrays.

The task's Steps stay as they are: `FastTokenizer` answers the calls they make of a transformers fast tokenizer
(encode with windows, pad, ids to tokens to text) with the same values, and `NumpyModel` is called like the model
and gives its outputs as numpy arrays (`tensor_type` "np": the loop then skips torch). transformers may change a
tokenizer as it loads it (a class's own set-up, `add_prefix_space`), so `export` records what the tokenizer it
loaded adds to the file only when that tokenizer's backend is the saved tokenizer.json; a folder without that
record (an older export, a processor that is not a fast tokenizer) takes the transformers path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from taskcli.onnx_runtime import Graph, is_exported, manifest

TOKENIZER_FILE = "tokenizer.json"
_PER_CALL = ("truncation", "padding")  # tokenizer.json settings transformers sets on every call anyway


def tokenizer_facts(processor, folder: Path) -> dict | None:
    """What the transformers tokenizer `processor` adds to its saved tokenizer.json, for export's manifest; None
    when it is no fast tokenizer or its backend is not the file (the folder then infers through transformers)."""
    backend = getattr(processor, "backend_tokenizer", None)
    if backend is None or not (folder / TOKENIZER_FILE).is_file():
        return None
    from tokenizers import Tokenizer

    def settings(tok):
        return {k: v for k, v in json.loads(tok.to_str()).items() if k not in _PER_CALL}

    if settings(backend) != settings(Tokenizer.from_file(str(folder / TOKENIZER_FILE))):
        return None
    return {"pad_token_id": processor.pad_token_id, "pad_token_type_id": processor.pad_token_type_id,
            "unk_token_id": processor.unk_token_id, "model_max_length": processor.model_max_length,
            "padding_side": processor.padding_side, "truncation_side": processor.truncation_side,
            "model_input_names": list(processor.model_input_names),
            "split_special_tokens": bool(getattr(processor, "split_special_tokens", False))}


class FastTokenizer:
    """tokenizer.json through `tokenizers`, answering as transformers' fast tokenizer does
    (TokenizersBackend._encode_plus / pad) for the calls the text tasks' steps make."""

    def __init__(self, folder: Path, facts: dict):
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.backend.no_padding()  # padding is `pad`'s, per batch
        self.backend.encode_special_tokens = facts["split_special_tokens"]
        self.facts = facts
        self.pad_token_id, self.unk_token_id = facts["pad_token_id"], facts["unk_token_id"]
        self.model_max_length, self.padding_side = facts["model_max_length"], facts["padding_side"]
        self.is_fast = True

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.backend.num_special_tokens_to_add(pair)

    def __call__(self, texts: list[str], text_pair: list[str] | None = None, truncation: bool = False,
                 max_length: int | None = None, stride: int = 0, return_overflowing_tokens: bool = False,
                 return_offsets_mapping: bool = False, return_special_tokens_mask: bool = False,
                 verbose: bool = True) -> dict:
        """A batch of texts (or of pairs, with `text_pair`) as lists per key (an overflowing text's windows are rows
        of their own, with overflow_to_sample_mapping), as the transformers tokenizer called with the same
        arguments gives them. `verbose` is transformers' (a warning about long inputs), here for the same calls."""
        if truncation:
            self.backend.enable_truncation(max_length or self.model_max_length, stride=stride,
                                           strategy="longest_first", direction=self.facts["truncation_side"])
        else:
            self.backend.no_truncation()
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in self.facts["model_input_names"]
                or k == "input_ids"]
        keys += ["special_tokens_mask"] * return_special_tokens_mask + ["offset_mapping"] * return_offsets_mapping
        field = {"input_ids": "ids", "token_type_ids": "type_ids", "offset_mapping": "offsets"}
        out: dict = {k: [] for k in keys}
        owners = []
        batch = list(zip(texts, text_pair)) if text_pair is not None else texts
        for i, encoding in enumerate(self.backend.encode_batch(batch, add_special_tokens=True)):
            for e in [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]:
                owners.append(i)
                for k in keys:
                    out[k].append(getattr(e, field.get(k, k)))
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = owners
        return out

    def pad(self, features: list[dict], return_tensors: str = "np") -> dict:
        """Feature rows padded to the longest, as int64 arrays (transformers' pad with return_tensors="np")."""
        import numpy as np

        if return_tensors != "np":
            raise ValueError(f"FastTokenizer pads to numpy arrays only, not {return_tensors!r}")
        longest = max(len(f["input_ids"]) for f in features)
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": self.facts["pad_token_type_id"],
                "special_tokens_mask": 1}
        out = {}
        for key in features[0]:
            rows = []
            for f in features:
                gap = [fill[key]] * (longest - len(f[key]))
                rows.append(list(f[key]) + gap if self.padding_side == "right" else gap + list(f[key]))
            out[key] = np.array(rows, dtype=np.int64)
        return out

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.backend.id_to_token(int(token_id))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self.backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)


class Outputs(dict):
    """A forward's outputs by name, also as attributes (`.logits`), as transformers' ModelOutput gives them."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class NumpyModel:
    """The exported graph called like the model (`model(**batch).logits`), numpy arrays in and out, with its
    config.json as `config` (id2label with int keys, as transformers reads it)."""

    tensor_type = "np"
    device = "cpu"
    dtype = "float32"

    def __init__(self, folder: Path):
        self.graph = Graph(folder)
        config = json.loads((folder / "config.json").read_text())
        config["id2label"] = {int(k): v for k, v in config.get("id2label", {}).items()}
        # what transformers' PretrainedConfig gives beside the file's keys
        self.config = SimpleNamespace(**{"problem_type": None, **config, "num_labels": len(config["id2label"])})
        self.main_input_name = self.graph.meta.get("main_input_name", "input_ids")

    def __call__(self, **batch) -> Outputs:
        return Outputs(self.graph.run_arrays(batch))


def load(run, model: str | None):
    """The exported folder `model` (else the recipe's infer_default) as a NumpyModel, its tokenizer set as
    run.processor, when the task's steps take one and export recorded the tokenizer; else None (the caller loads
    through transformers, which also says what is wrong with a folder that does not load)."""
    source = model or run.recipe.model.infer_default
    folder = Path(source).expanduser() if source else None
    if not (run.task.numpy_steps and folder and is_exported(folder)):
        return None
    if run.recipe.infer.precision not in ("no", "fp32"):
        return None  # the transformers path says what --precision does to an exported model
    try:
        meta = manifest(folder)
        if meta.get("task") != run.task.name or not meta.get("tokenizer"):
            return None  # another task's model: the transformers path names it
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        processor, mdl = FastTokenizer(folder, meta["tokenizer"]), NumpyModel(folder)
    except Exception as err:  # noqa: BLE001 - whatever a damaged folder raises
        from taskcli.errors import TaskcliError

        if isinstance(err, TaskcliError) or os.environ.get("TASKCLI_DEBUG") == "1":
            raise
        return None  # a damaged folder: the transformers path loads it or says what is wrong
    run.model_source, run.processor = str(folder), processor
    return mdl
