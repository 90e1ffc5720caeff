"""taskcli export (issue 20): ONNX export of smoke-trained models, the exported folder run by infer/eval, and the
parity gate that fails when the exported model scores differently."""

import json
from pathlib import Path

import pytest

from conftest import NOT_FOR_INFER, assert_clean_error, modules_loaded, same_rows, slow_tier

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

NER_TEXTS = ["Alice works for Acme in Paris .", "Bob lives in Berlin"]


@pytest.fixture(scope="module")
def ner_onnx(trained, cli, tmp_path_factory, one_torch_thread):
    """The smoke NER model exported (fp32), with export's --json report."""
    model = trained("token-classification")
    out = tmp_path_factory.mktemp("ner") / "onnx"
    result = cli("export", "ner", "--model", model, "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    return model, out, json.loads(result.stdout)


def test_export_writes_a_runnable_folder_with_dynamic_axes(ner_onnx):
    import onnx

    model, out, report = ner_onnx
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "recipe.yaml", "taskcli-export.json", "README.md"} <= names
    manifest = json.loads((out / "taskcli-export.json").read_text())
    assert manifest["source"] == str(Path(model).resolve()) and manifest["model_file"] == "model.onnx"
    assert json.loads((out / "config.json").read_text())["id2label"] == json.loads(
        (Path(model) / "config.json").read_text())["id2label"]
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    # batch and sequence are symbolic: any batch of any length runs
    assert all(isinstance(d, str) for d in dims["input_ids"]), dims
    assert report["parity_failed"] == [] and report["max_abs_diff"]["onnx"] < 1e-4
    # traced with eager attention: no NaN guard (IsNaN + Where) after each softmax, as sdpa's decomposition has
    assert "IsNaN" not in {node.op_type for node in graph.node}
    assert report["metrics"]["onnx"]["f1"] == pytest.approx(report["metrics"]["torch"]["f1"], abs=0.005)
    assert "Parity passed" in (out / "README.md").read_text()


def test_the_model_is_traced_with_eager_attention_and_keeps_its_own(trained):
    from transformers import AutoModelForTokenClassification

    from taskcli.export import eager_attention

    mdl = AutoModelForTokenClassification.from_pretrained(trained("token-classification"))
    assert mdl.config._attn_implementation == "sdpa"
    with eager_attention(mdl):
        assert mdl.config._attn_implementation == "eager"
    assert mdl.config._attn_implementation == "sdpa"  # the parity check runs the model as the user has it


def test_a_model_that_refuses_eager_attention_exports_with_its_own():
    from types import SimpleNamespace

    from taskcli.export import eager_attention

    class Refuses:
        config = SimpleNamespace(_attn_implementation="sdpa", sub_configs={})
        asked: list = []

        def set_attn_implementation(self, implementation):
            self.asked.append(implementation)
            if implementation == "eager":
                raise ValueError("eager attention is not supported")

    with eager_attention(Refuses()) as mdl:
        assert mdl.config._attn_implementation == "sdpa"
    assert Refuses.asked == ["eager", {"": "sdpa"}]


def test_sessions_leave_out_the_slow_skip_layer_norm_fusion(tmp_path, monkeypatch):
    """A residual Add + LayerNorm stays two ops in the session's optimized graph (ONNX Runtime would fuse them into
    SkipLayerNormalization, whose CPU kernel measured 4x slower)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from taskcli import onnx_runtime

    dim = 16
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["s"]),
         helper.make_node("LayerNormalization", ["s", "w", "b"], ["out"], axis=-1, epsilon=1e-5)], "residual",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "L", dim]) for n in ("x", "y")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "L", dim])],
        [numpy_helper.from_array(np.ones(dim, np.float32), "w"), numpy_helper.from_array(np.zeros(dim, np.float32),
                                                                                         "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    real = ort.InferenceSession

    def keep_optimized(path, options, **kwargs):  # ONNX Runtime writes the graph it will run
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        return real(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", keep_optimized)
    sess = onnx_runtime.session(tmp_path / "g.onnx", threads=1)
    x = np.random.default_rng(0).standard_normal((2, 3, dim)).astype(np.float32)
    (out,) = sess.run(None, {"x": x, "y": x})
    s = x + x
    expected = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(out, expected, atol=1e-4)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops, ops


def test_int8_quantizes_the_embedding_tables_as_well_as_the_linear_layers(ner_onnx, tmp_path):
    """No fp32 matrix is left in the int8 graph: the word and position embeddings (Gather) were half of a
    DistilBERT-base int8 file when only MatMul/Gemm were quantized."""
    import onnx

    from taskcli.export import quantize_int8

    quantize_int8(ner_onnx[1] / "model.onnx", tmp_path / "model.int8.onnx")
    initializers = onnx.load(str(tmp_path / "model.int8.onnx")).graph.initializer
    matrices = [i.name for i in initializers if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 2]
    assert matrices == []
    quantized = {i.name for i in initializers if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    assert "distilbert.embeddings.word_embeddings.weight_quantized" in quantized, sorted(quantized)


def test_exported_model_infers_and_evaluates_as_the_torch_one(ner_onnx, cli):
    model, out, _ = ner_onnx
    rows = {}
    for name, folder in (("torch", model), ("onnx", out)):
        result = cli("infer", "ner", *NER_TEXTS, "--model", folder, "--json")
        assert result.exit_code == 0, result.stderr
        rows[name] = [json.loads(line) for line in result.stdout.splitlines()]
    assert same_rows(rows["torch"], rows["onnx"], tol=1e-4), rows
    scores = {}
    for name, folder in (("torch", model), ("onnx", out)):
        result = cli("eval", "ner", "--model", folder, "--smoke", "--json")
        assert result.exit_code == 0, result.stderr
        scores[name] = json.loads(result.stdout)["metrics"]
    assert scores["onnx"]["f1"] == pytest.approx(scores["torch"]["f1"], abs=1e-6)


def test_exported_model_infers_without_the_modeling_code(ner_onnx):
    """Issue 20's start-up: the manifest holds what loading needs from the PyTorch class (its forward's
    parameters, main_input_name), so infer never imports the modeling code and torch._dynamo with it (~1.5 s)."""
    _, out, _ = ner_onnx
    manifest = json.loads((out / "taskcli-export.json").read_text())
    assert "labels" in [name for name, _ in manifest["forward"]] and manifest["main_input_name"] == "input_ids"
    args = ["infer", "ner", "--model", out, "Alice works in Paris .", "--json"]
    watch = NOT_FOR_INFER + ("transformers.modeling_utils", "torch._dynamo", "accelerate", "onnxruntime")
    assert modules_loaded(args, watch) == ["onnxruntime"]


def test_an_export_without_forward_facts_still_loads(ner_onnx, cli, tmp_path):
    """Exports made before the manifest held the forward's parameters read them from the PyTorch class."""
    import shutil

    _, out, _ = ner_onnx
    old = tmp_path / "old"
    shutil.copytree(out, old)
    manifest = json.loads((old / "taskcli-export.json").read_text())
    del manifest["forward"], manifest["main_input_name"]
    (old / "taskcli-export.json").write_text(json.dumps(manifest))
    rows = {}
    for name, folder in (("new", out), ("old", old)):
        result = cli("infer", "ner", *NER_TEXTS, "--model", folder, "--json")
        assert result.exit_code == 0, result.stderr
        rows[name] = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows["new"] == rows["old"]


def test_an_exported_model_does_not_train(ner_onnx, cli, tmp_path):
    _, out, _ = ner_onnx
    result = cli("finetune", "ner", "--smoke", "--model", out, "--output-dir", tmp_path / "run")
    assert_clean_error(result, "is an exported (ONNX) model, which does not train")


def test_gate_fails_on_a_perturbed_export(trained, cli, tmp_path, monkeypatch, one_torch_thread):
    """A graph whose largest weight matrix is scaled scores worse: export exits 3, one line per moved metric."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from taskcli import export as export_mod

    real = export_mod.export_graph

    def perturbed(mdl, sample, path, **kwargs):
        found = real(mdl, sample, path, **kwargs)
        graph = onnx.load(str(path))
        weights = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))
        weights.CopyFrom(numpy_helper.from_array(-3 * numpy_helper.to_array(weights), weights.name))
        onnx.save(graph, str(path))
        return found

    monkeypatch.setattr(export_mod, "export_graph", perturbed)
    result = cli("export", "ner", "--model", trained("token-classification"), "-o", tmp_path / "out")
    assert result.exit_code == 3, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("parity failed: ")]
    assert lines and any(l.startswith("parity failed: f1 = ") for l in lines), result.stderr
    assert "more than --tolerance 0.005" in lines[0]
    assert "largest output difference" in result.stdout
    assert "FAILED" in (tmp_path / "out" / "README.md").read_text()  # kept, and says so


def test_missing_extra_is_one_line(cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    (tmp_path / "config.json").write_text("{}")
    result = cli("export", "ner", "--model", tmp_path)
    assert_clean_error(result, "onnxruntime", "pip install 'taskcli[onnx]'")


@pytest.mark.parametrize("task", ["summarization", "translation"])
def test_encoder_decoder_tasks_say_why_they_do_not_export(cli, tmp_path, task):
    (tmp_path / "config.json").write_text("{}")
    result = cli("export", task, "--model", tmp_path)
    assert_clean_error(result, "encoder-decoder", "does not export yet", "not its encoder")


def test_text_generation_without_transformers_exporters_is_one_line(cli, tmp_path, monkeypatch):
    """An older transformers (no transformers.exporters) is named before anything loads."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers.exporters" else real(name, *a))
    (tmp_path / "config.json").write_text("{}")
    result = cli("export", "text-generation", "--model", tmp_path)
    assert_clean_error(result, "needs transformers.exporters", "pip install -U")


def test_text_generation_exports_with_its_kv_cache_and_generates_the_same(trained, cli, tmp_path, one_torch_thread):
    """A decoder-only LM exports as prefill and decode graphs (transformers.exporters' folder, which its own
    ExportedModel reads), passes the perplexity gate in fp32 and int8, and generate() on the graphs gives the PyTorch
    model's tokens: greedy, beams, and sampling with a seed."""
    from transformers.exporters import ExportedModel

    from taskcli.onnx_generate import graph_files

    model = trained("text-generation")
    out = tmp_path / "onnx"
    result = cli("export", "text-generation", "--model", model, "-o", out, "--quantize", "int8", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == {"onnx": "export.json", "onnx-int8": "export.int8.json"} and report["parity_failed"] == []
    assert report["max_abs_diff"]["onnx"] < 1e-3, report["max_abs_diff"]
    assert report["metrics"]["onnx"]["perplexity"] == pytest.approx(report["metrics"]["torch"]["perplexity"], rel=1e-4)
    assert set(ExportedModel.from_pretrained(out).components) == {"prefill", "decode"}
    # the weights both graphs hold are on disk once, in prefill's file, for fp32 and for int8
    assert not list(out.glob("*.partial"))
    for manifest, kind in (("export.json", ""), ("export.int8.json", ".int8")):
        files = {p.name: p.stat().st_size for p in graph_files(out, manifest)}
        assert set(files) == {f"{g}{kind}.onnx{data}" for g in ("prefill", "decode") for data in ("", ".data")}
        assert files[f"decode{kind}.onnx.data"] < files[f"prefill{kind}.onnx.data"] / 10, files
    assert (out / "prefill.onnx.data").stat().st_size < 1.1 * (model / "model.safetensors").stat().st_size
    prompts = ["The history of", "A cat sat on the mat and"]

    def generated(folder, *flags):
        result = cli("infer", "text-generation", *prompts, "--model", folder, "--max-new-tokens", "12", "--json", *flags)
        assert result.exit_code == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    int8 = generated(out)  # the folder's default graphs: int8 (its logits differ by up to ~0.2, so may its tokens)
    assert [r["input"] for r in int8] == prompts and all(r["generated_text"] != r["input"] for r in int8), int8
    manifest = json.loads((out / "taskcli-export.json").read_text())
    (out / "taskcli-export.json").write_text(json.dumps({**manifest, "model_file": "export.json"}))  # fp32 graphs
    for flags in ([], ["--num-beams", "3"], ["--do-sample", "--seed", "3"]):
        torch_rows = generated(model, *flags)
        assert generated(out, *flags) == torch_rows and all(r["generated_text"] != r["input"] for r in torch_rows)


def test_whisper_says_why_it_does_not_export(cli, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper", "is_encoder_decoder": True}))
    result = cli("export", "asr", "--model", tmp_path)
    assert_clean_error(result, "encoder-decoder", "does not export yet")


def test_existing_output_folder_is_not_overwritten(cli, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    result = cli("export", "ner", "--model", tmp_path / "model", "-o", tmp_path / "out")
    assert_clean_error(result, "not empty")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_benchmark_table_across_formats(trained, cli, one_torch_thread):
    result = cli("benchmark", "ner", "--model", trained("token-classification"), "--json")
    assert result.exit_code == 0, result.stderr
    table = json.loads(result.stdout)
    assert [r["format"] for r in table["rows"]] == ["torch", "onnx", "onnx-int8"]
    for row in table["rows"]:
        assert row["metric"] == "f1" and 0 <= row["value"] <= 1 and row["size_mb"] > 0
        assert 0 < row["ms_p50"] <= row["ms_p95"] and row["inputs_per_s"] > 0 and row["load_s"] > 0
    assert [r["parity"] for r in table["rows"]] == ["–", "pass", "pass"]
    int8, fp32 = table["rows"][2], table["rows"][1]
    assert int8["size_mb"] < fp32["size_mb"]  # int8 weights


def test_benchmark_unknown_format(cli, tmp_path):
    result = cli("benchmark", "ner", "--model", tmp_path, "--formats", "torch,onxx")
    assert_clean_error(result, "unknown format 'onxx'", "did you mean 'onnx'")


def test_tolerance_is_absolute_on_scores_and_relative_above_one():
    from taskcli.export import parity_lines

    torch_scores = {"f1": 0.80, "perplexity": 11.14, "loss": 0.3}
    moved = parity_lines(torch_scores, {"f1": 0.79, "perplexity": 11.17, "loss": float("nan")}, "onnx-int8", 0.005)
    assert len(moved) == 1 and moved[0].startswith("parity failed: f1 = 0.79 for onnx-int8, 0.8 for torch")
    assert parity_lines(torch_scores, {"f1": 0.80, "perplexity": 11.3, "loss": 0.3}, "onnx", 0.005)[0].startswith(
        "parity failed: perplexity")


SAMPLES = Path(__file__).resolve().parent.parent / "taskcli" / "samples"
QA = json.loads((SAMPLES / "question-answering.jsonl").read_text().splitlines()[0])
# task, recipe, infer arguments: every single-pass task (token-classification is covered above)
SINGLE_PASS = [
    ("text-classification", None, ["I loved this film ."]),
    ("question-answering", None, ["--question", QA["question"], "--context", QA["context"]]),
    ("fill-mask", None, ["Alice walked to the <mask> and bought 3 apples ."]),
    ("image-classification", None, [SAMPLES / "image-classification" / "cat" / "cat_00.jpg"]),
    ("object-detection", None, [SAMPLES / "object-detection" / "images" / "det_00.jpg"]),
    ("image-segmentation", None, [SAMPLES / "image-segmentation" / "images" / "seg_00.jpg"]),
    # its smoke fine-tune and export cost ~2.5 CPU minutes: the slow tier (CI) runs it
    pytest.param("image-segmentation", "mask2former", [SAMPLES / "image-segmentation" / "images" / "seg_00.jpg"],
                 marks=slow_tier),
    ("depth-estimation", None, [SAMPLES / "depth-estimation" / "images" / "scene_00.png"]),
    ("audio-classification", None, [SAMPLES / "audio-classification" / "yes" / "yes_00.flac"]),
    ("automatic-speech-recognition", "wav2vec2", [SAMPLES / "automatic-speech-recognition" / "clip_01.flac"]),
]


# Mask2Former's mask logits run to tens and pass deformable attention's grid_sample: 1e-3 of them is ~1e-5 relative
OUTPUT_DIFF = {"mask2former": 1e-2}


def _case_id(case) -> str:
    task, recipe, _ = getattr(case, "values", case)  # a pytest.param's values, or the plain tuple
    return f"{task}-{recipe}" if recipe else task


@pytest.mark.parametrize("task,recipe,inputs", SINGLE_PASS, ids=[_case_id(c) for c in SINGLE_PASS])
def test_every_single_pass_task_exports_and_infers_the_same(task, recipe, inputs, trained, cli, tmp_path,
                                                             one_torch_thread):
    """The smoke model of each task passes the gate, and `infer --model OUT` gives the torch model's rows."""
    model = trained(task, recipe)
    result = cli("export", task, "--model", model, "-o", tmp_path / "onnx", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["max_abs_diff"]["onnx"] < OUTPUT_DIFF.get(recipe, 1e-3) and report["parity_failed"] == []
    rows = []
    for folder in (model, tmp_path / "onnx"):
        result = cli("infer", task, *inputs, "--model", folder, "--json")
        assert result.exit_code == 0, result.stderr
        rows.append([json.loads(line) for line in result.stdout.splitlines()])
    assert rows[0] and same_rows(rows[0], rows[1], tol=1e-3), rows
