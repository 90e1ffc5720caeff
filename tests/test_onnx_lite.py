"""An exported NER model run without torch or transformers (taskcli/onnx_lite.py, issue 20's start-up): the
`tokenizers` library, ONNX Runtime and numpy give the rows the transformers path gives, and a one-line infer imports
neither torch nor transformers."""

import json
import shutil

import pytest

from conftest import NOT_FOR_INFER, modules_loaded, same_rows

pytest.importorskip("onnxruntime")

TEXTS = ["Alice works for Acme in Paris .", "Bob lives in Berlin",
         "Zoë Müller visited São Paulo and Kraków with François .",  # accents
         ".", "東京 is where Ærø lives 😀 with Ωmega Corp",  # a lone stop; characters the vocabulary lacks ([UNK])
         " ".join(["Alice works for Acme in Paris and Bob lives in Berlin"] * 30)]  # ~360 tokens: over the window


def export_both(trained, cli, tmp_path_factory, task: str):
    """(the task's smoke model, its export, the export with the manifest's tokenizer record removed: an export made
    before it, which infers through transformers)."""
    model = trained(task)
    out = tmp_path_factory.mktemp("lite") / "onnx"
    result = cli("export", task, "--model", model, "-o", out)
    assert result.exit_code == 0, result.stderr
    old = out.with_name("old")
    shutil.copytree(out, old)
    manifest = json.loads((old / "taskcli-export.json").read_text())
    del manifest["tokenizer"]
    (old / "taskcli-export.json").write_text(json.dumps(manifest))
    return model, out, old


@pytest.fixture(scope="module")
def exports(trained, cli, tmp_path_factory, one_torch_thread):
    return export_both(trained, cli, tmp_path_factory, "token-classification")


def _rows(cli, *args, task="ner") -> list[dict]:
    result = cli("infer", task, *map(str, args), "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_export_records_the_tokenizer_and_infer_takes_the_torch_free_path(exports):
    from taskcli import model_loading, onnx_lite

    _, out, old = exports
    facts = json.loads((out / "taskcli-export.json").read_text())["tokenizer"]
    assert facts["pad_token_id"] == 0 and facts["model_input_names"] == ["input_ids", "attention_mask"]
    run, model = model_loading.load_for_inference("ner", str(out), None, [], False)
    assert isinstance(model, onnx_lite.NumpyModel) and isinstance(run.processor, onnx_lite.FastTokenizer)
    _, model = model_loading.load_for_inference("ner", str(old), None, [], False)
    assert not isinstance(model, onnx_lite.NumpyModel)  # no record: the transformers tokenizer and OnnxModel


@pytest.mark.parametrize("window", [[], ["--set", "data.max_length=16"]], ids=["one-window", "16-token-windows"])
def test_torch_free_rows_are_the_transformers_paths_rows(exports, cli, window):
    """The same rows, to the bit, as the transformers tokenizer + OnnxModel path, long texts read in windows too;
    and the PyTorch model's (its logits differ from ONNX Runtime's in the 6th digit)."""
    model, out, old = exports
    lite = _rows(cli, *TEXTS, "--model", out, *window)
    assert lite == _rows(cli, *TEXTS, "--model", old, *window)
    assert same_rows(_rows(cli, *TEXTS, "--model", model, *window), lite, tol=1e-4)
    assert len(lite) == len(TEXTS) and lite[0]["entities"] and lite[-1]["entities"][-1]["end"] > 500


def test_one_line_onnx_infer_imports_neither_torch_nor_transformers(exports):
    _, out, _ = exports
    args = ["infer", "ner", "--model", out, "Alice works in Paris .", "--json"]
    watch = NOT_FOR_INFER + ("torch", "transformers", "huggingface_hub", "tokenizers", "onnxruntime")
    assert modules_loaded(args, watch) == ["tokenizers", "onnxruntime"]


@pytest.mark.parametrize("model_type", ["distilbert", "bert", "roberta"])
def test_fast_tokenizer_answers_as_the_transformers_one(model_type, tmp_path):
    """WordPiece (uncased), WordPiece with token types, byte-level BPE loaded with add_prefix_space (as NER loads
    RoBERTa): the same windows, offsets, special-token masks, padding and token strings."""
    from transformers import AutoTokenizer

    from taskcli import tiny
    from taskcli.onnx_lite import FastTokenizer, tokenizer_facts

    tiny.build(model_type, tmp_path / "src", TEXTS)
    tok = AutoTokenizer.from_pretrained(tmp_path / "src", **({"add_prefix_space": True} if model_type == "roberta"
                                                             else {}))
    tok.save_pretrained(tmp_path / "out")
    facts = tokenizer_facts(tok, tmp_path / "out")
    lite = FastTokenizer(tmp_path / "out", json.loads(json.dumps(facts)))  # as the manifest gives them back
    args = dict(truncation=True, max_length=16, stride=4, return_overflowing_tokens=True,
                return_offsets_mapping=True, return_special_tokens_mask=True)
    expected, got = tok(TEXTS, **args), lite(TEXTS, **args)
    expected["offset_mapping"] = [[tuple(o) for o in row] for row in expected["offset_mapping"]]
    assert dict(expected) == got and list(expected) == list(got)
    assert max(got["overflow_to_sample_mapping"]) == len(TEXTS) - 1 and len(got["input_ids"]) > len(TEXTS)
    features = [{k: got[k][i] for k in ("input_ids", "attention_mask")} for i in (0, 3, 4)]
    padded, ours = tok.pad(features, return_tensors="np"), lite.pad(features, return_tensors="np")
    assert list(padded) == list(ours) and all((padded[k] == ours[k]).all() and padded[k].dtype == ours[k].dtype
                                              for k in padded)
    ids = got["input_ids"][len(got["input_ids"]) // 2]
    tokens = [lite.convert_ids_to_tokens(i) for i in ids]
    assert tokens == [tok.convert_ids_to_tokens(i) for i in ids]
    assert lite.convert_tokens_to_string(tokens) == tok.convert_tokens_to_string(tokens)
    assert (lite.num_special_tokens_to_add(), lite.unk_token_id) == (tok.num_special_tokens_to_add(), tok.unk_token_id)


def test_a_tokenizer_transformers_changes_as_it_loads_is_not_recorded(tmp_path):
    """The file must be what transformers runs: a backend that differs from the saved tokenizer.json (here: its
    lowercasing switched off after saving) gets no record, so infer keeps the transformers path."""
    from transformers import AutoTokenizer

    from taskcli import tiny
    from taskcli.onnx_lite import tokenizer_facts

    tiny.build("distilbert", tmp_path / "src", TEXTS)
    tok = AutoTokenizer.from_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "out")
    assert tokenizer_facts(tok, tmp_path / "out")
    from tokenizers import normalizers

    tok.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    assert tokenizer_facts(tok, tmp_path / "out") is None


def test_serve_answers_from_the_torch_free_path(exports, cli):
    pytest.importorskip("httpx")
    import httpx
    from test_serve import Server

    _, out, _ = exports
    server = Server("ner", "--model", out)
    try:
        answer = httpx.post(f"{server.url}/predict", json={"inputs": TEXTS[:3]}, timeout=60)
    finally:
        server.stop()
    assert answer.status_code == 200 and answer.json()["results"] == _rows(cli, *TEXTS[:3], "--model", out)
