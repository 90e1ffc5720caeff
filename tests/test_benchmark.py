"""taskcli benchmark --precision and --plot (issue 20): a torch row per precision, scored and timed on the same rows,
held to the torch fp32 metric; the figure's bars and band are the table's numbers; bad values are one line."""

import json

import pytest

from conftest import assert_clean_error

PNG = b"\x89PNG\r\n\x1a\n"


def one_line_error(result, *fragments):
    assert_clean_error(result, *fragments)
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


@pytest.mark.slow
def test_torch_rows_per_precision_with_their_own_metric_and_parity(trained, cli, tmp_path, one_torch_thread):
    plot = tmp_path / "bench.png"
    # bf16 asked first: fp32, the reference, is still a row, and the first
    result = cli("benchmark", "ner", "--model", trained("token-classification"), "--formats", "torch",
                 "--precision", "bf16,fp32", "--plot", plot, "--json")
    table = json.loads(result.stdout)
    rows = table["rows"]
    assert [(r["format"], r["precision"]) for r in rows] == [("torch", "fp32"), ("torch", "bf16")]
    fp32, bf16 = rows
    assert table["reference"] == fp32["value"] and fp32["parity"] == "–" and fp32["max_abs_diff"] == 0.0
    for row in rows:
        assert row["metric"] == "f1" and 0 <= row["value"] <= 1
        assert 0 < row["ms_p50"] <= row["ms_p95"] and row["inputs_per_s"] > 0 and row["load_s"] > 0
    # the bf16 row ran a bf16 model: half the weight bytes, outputs that differ from fp32's
    assert bf16["size_mb"] < fp32["size_mb"] and bf16["max_abs_diff"] > 0
    moved = abs(bf16["value"] - fp32["value"]) > table["tolerance"]
    assert bf16["parity"] == ("fail" if moved else "pass") and bool(bf16["failed"]) == moved
    assert result.exit_code == (3 if moved else 0), result.stderr
    assert table["plot"] == str(plot) and plot.read_bytes().startswith(PNG) and plot.stat().st_size > 1000


def test_a_row_outside_the_tolerance_fails_parity():
    from taskcli.benchmark import table_row

    scored = {"scores": {"f1": 0.90}, "load_s": 0.5, "size_mb": 1.0, "ms_p50": 1.0, "ms_p95": 2.0,
              "inputs_per_s": 10.0, "max_abs_diff": 0.1}
    row = table_row("torch", "bf16", scored, {"f1": 0.92}, "f1", 0.005)
    assert row["parity"] == "fail" and row["failed"][0].startswith("parity failed: f1 = 0.9 for torch bf16")
    assert table_row("torch", "bf16", scored, {"f1": 0.902}, "f1", 0.005)["parity"] == "pass"
    assert table_row("onnx-int8", "int8", scored, {"f1": 0.92}, "f1", 0.005)["failed"][0].count("onnx-int8") == 1


def test_plot_draws_the_table_numbers_and_the_tolerance_band(tmp_path):
    from taskcli import benchmark_plot

    rows = [{"format": f, "precision": p, "metric": "f1", "value": v, "ms_p50": a, "ms_p95": b, "parity": s}
            for f, p, v, a, b, s in [("torch", "fp32", 0.8, 4.0, 5.0, "–"), ("torch", "bf16", 0.79, 2.0, 2.5, "fail"),
                                     ("onnx-int8", "int8", 0.801, 1.0, 1.2, "pass")]]
    result = {"task": "token-classification", "model": "runs/ner", "samples": 48, "tolerance": 0.005,
              "reference": 0.8, "rows": rows}
    fig = benchmark_plot.figure(result)
    speed, score = fig.axes[:2]
    assert [bar.get_width() for bar in speed.patches] == [4.0, 2.0, 1.0]
    assert [t.get_text() for t in speed.get_yticklabels()] == ["torch fp32", "torch bf16", "onnx-int8"]
    from matplotlib.container import ErrorbarContainer

    errorbar = next(c for c in speed.containers if isinstance(c, ErrorbarContainer))
    whiskers = errorbar.lines[2][0].get_segments()  # the p95 whiskers
    assert [tuple(seg[:, 0]) for seg in whiskers] == [(4.0, 5.0), (2.0, 2.5), (1.0, 1.2)]
    assert [tuple(xy) for xy in score.collections[0].get_offsets()] == [(0.8, 0), (0.79, 1), (0.801, 2)]
    assert score.lines[0].get_xdata()[0] == 0.8  # torch fp32's metric
    band = score.patches[0].get_x(), score.patches[0].get_x() + score.patches[0].get_width()
    assert band == pytest.approx((0.795, 0.805))
    colours = [tuple(bar.get_facecolor()) for bar in speed.patches]
    assert colours[1] != colours[0] == colours[2]  # the failed row is drawn apart
    benchmark_plot.write(result, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("args,fragments", [
    (["--precision", "fp32,bf61"], ["unknown precision 'bf61'", "did you mean 'bf16'"]),
    (["--formats", "onnx,onnx-int8", "--precision", "bf16"], ["--precision applies to the torch format only",
                                                               "add torch to --formats"]),
    (["--plot", "bench.txt"], ["--plot bench.txt: not an image file name", ".png"]),
    (["--plot", "missing/bench.png"], ["no such folder missing"]),
], ids=["unknown-precision", "only-onnx", "plot-suffix", "plot-folder"])
def test_bad_values_are_one_line(cli, tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    one_line_error(cli("benchmark", "ner", "--model", tmp_path, *args), *fragments)


def test_fp16_needs_cuda(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: fp16 is allowed")
    one_line_error(cli("benchmark", "ner", "--model", tmp_path, "--precision", "fp32,fp16"),
                   "--precision fp16 needs a CUDA GPU", "--precision fp32,bf16")


def test_an_existing_plot_file_is_not_overwritten(cli, tmp_path):
    mine = tmp_path / "bench.png"
    mine.write_bytes(b"mine")
    one_line_error(cli("benchmark", "ner", "--model", tmp_path, "--plot", mine), "already exists")
    assert mine.read_bytes() == b"mine"
