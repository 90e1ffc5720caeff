"""An exported text-classification model run without torch or transformers (taskcli/onnx_lite.py): sentence pairs,
--top-k and texts cut at the model's maximum give the transformers path's rows, with neither library imported."""

import json

import pytest

from conftest import modules_loaded, same_rows
from test_onnx_lite import _rows, export_both

pytest.importorskip("onnxruntime")

LINES = ["a great film", {"text": "the plot was thin", "text_pair": "but the acting saved it"},
         "Zoë's café was ünbelievably bad 😀", " ".join(["what a wonderful terrible film"] * 120)]  # > 512 tokens


@pytest.fixture(scope="module")
def exports(trained, cli, tmp_path_factory, one_torch_thread):
    return export_both(trained, cli, tmp_path_factory, "text-classification")


def test_torch_free_rows_are_the_transformers_paths_rows(exports, cli, tmp_path):
    model, out, old = exports
    table = tmp_path / "inputs.txt"
    table.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in LINES))
    args = (table, "--top-k", "2")
    lite = _rows(cli, *args, "--model", out, task="text-cls")
    assert lite == _rows(cli, *args, "--model", old, task="text-cls")
    assert same_rows(_rows(cli, *args, "--model", model, task="text-cls"), lite, tol=1e-4)
    assert [len(r["top_k"]) for r in lite] == [2] * len(LINES) and lite[-1]["truncated"] is True
    assert lite[1]["input"] == LINES[1]


def test_one_line_infer_imports_neither_torch_nor_transformers(exports):
    _, out, _ = exports
    args = ["infer", "text-cls", "--model", out, "a great film", "--json"]
    assert modules_loaded(args, ("torch", "transformers", "onnxruntime")) == ["onnxruntime"]
