"""Typed infer options and results (issue 19): each task declares the options its steps read as a pydantic model,
validated once where the session starts (recipe defaults under the flags); display is the caller's (on_text), and
the loop hands back Results whose overlay and streamed marks are attributes, never keys of the JSON row."""

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import assert_clean_error

SAMPLES = Path(__file__).resolve().parents[1] / "taskcli" / "samples"
DET = SAMPLES / "object-detection" / "images" / "det_00.jpg"
CLIP = SAMPLES / "automatic-speech-recognition" / "clip_00.flac"


def test_recipe_defaults_are_merged_under_the_flags_and_validated_once():
    from taskcli import inference, registry
    from taskcli.run import prepare

    run = prepare("text-classification", None, ["infer.top_k=3", "infer.batch_size=5"], True)
    options = inference.options_for(run, {})
    assert (options.batch_size, options.top_k) == (5, 3)
    assert inference.options_for(run, {"top_k": 2, "batch_size": None}).top_k == 2
    assert inference.options_for(run, options) is options  # typed already: not validated again
    with pytest.raises(ValueError):  # pydantic's ValidationError
        options.top_k = 4  # frozen: what the session starts with is what every step reads
    # a generating task's --top-k is sampling's: infer.top_k (labels per input) never fills it
    summarizing = prepare("summarization", None, ["infer.top_k=3"], True)
    gen = inference.options_for(summarizing, {})
    assert gen.top_k is None and gen.batch_size == summarizing.recipe.infer.batch_size
    for task in registry.all_tasks():  # the display is not an option of any task
        assert not {"as_json", "interactive", "streamed", "overlay"} & set(task.infer_options.model_fields)


def test_a_new_infer_flag_is_one_field_in_one_task_s_model(monkeypatch):
    """The refusal names the tasks whose models have the field: a field added to one model is taken by that task
    and refused by the others, naming it, with no list elsewhere to update."""
    from taskcli import inference, registry
    from taskcli.errors import TaskcliError
    from taskcli.task import RankedOptions

    class Toy(RankedOptions):
        calibrate: float | None = None

    tasks = tuple(dataclasses.replace(t, infer_options=Toy) if t.name == "text-classification" else t
                  for t in registry.all_tasks())
    monkeypatch.setattr(registry, "all_tasks", lambda: tasks)
    inference.check_flags(tasks[0], {"calibrate": 0.5, "top_k": 2})
    with pytest.raises(TaskcliError) as err:
        inference.check_flags(registry.get("ner"), {"calibrate": 0.5})
    assert str(err.value).startswith("--calibrate does not apply to token-classification: it is for "
                                     "text-classification")


def test_a_bad_option_value_is_one_line_naming_its_flag(cli):
    """ASR's --task is the field `mode` (transcribe|translate); a value outside it is named by the flag before the
    model loads (it used to reach generate())."""
    result = cli("infer", "asr", "--smoke", CLIP, "--task", "sing")
    assert_clean_error(result, "--task", "'transcribe' or 'translate'", "'sing'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_shown_as_it_is_made_goes_to_the_caller_s_on_text():
    from taskcli import inference

    shown: list = []
    args = dict(smoke=True, options={"max_new_tokens": 6, "do_sample": False}, on_text=lambda t, end: shown.append((t, end)))
    done = inference.infer_stream("text-generation", ["Once upon a time"], **args)
    [row] = [r for chunk in done.chunks for r in chunk]
    assert row.streamed and "streamed" not in row.row()
    assert "".join(t for t, _ in shown) == row.fields["generated_text"] and shown[-1][1] is True
    shown.clear()  # two prompts, or beam search: nothing is shown, the results come back whole
    rows = [r for chunk in inference.infer_stream("text-generation", ["a", "b"], **args).chunks for r in chunk]
    beams = [r for c in inference.infer_stream("text-generation", ["a"], **{**args, "options": {
        "max_new_tokens": 4, "num_beams": 2}}).chunks for r in c]
    assert not shown and not any(r.streamed for r in rows + beams)


def test_an_overlay_is_an_attribute_of_the_result_and_the_last_field_of_its_row(tmp_path):
    from taskcli import inference

    done = inference.infer_stream("object-detection", [str(DET)], smoke=True,
                                  options={"save_overlays": str(tmp_path / "o"), "threshold": 0.0})
    [row] = [r for chunk in done.chunks for r in chunk]
    assert row.overlay == tmp_path / "o" / "det_00.png" and row.overlay.is_file()
    assert "overlay" not in row.fields and not row.bad
    assert list(row.row()) == ["input", "objects", "overlay"] and row.row()["overlay"] == str(row.overlay)
    assert json.loads(json.dumps(row.row()))["input"] == str(DET)


def test_worst_examples_run_the_loop_on_the_rows_inputs(tmp_path):
    """A sentence pair has no single-text CLI form, so the report used to show no prediction for it; its input now
    goes to the loop as {"text", "text_pair"}, as an infer JSON line would."""
    import datasets

    from taskcli import inference, worst
    from taskcli.model_loading import load_for_inference

    run, model = load_for_inference("text-classification", None, "bert", None, True)
    try:
        pairs = {"text": ["The cat sat.", "It rained all day."], "text_pair": ["A cat was sitting.", "It was dry."],
                 "label": [0, 1]}
        path = worst.write(run, model, datasets.Dataset.from_dict(pairs), [(1, 2.0), (0, 1.0)], tmp_path)
        rows = [line.split(" | ") for line in path.read_text().splitlines() if line.startswith("| 1 ")]
        prediction = rows[0][5].rstrip(" |")
        assert prediction.split()[0] in set(model.config.id2label.values()), rows  # was "—": no CLI form
        steps, ctx = inference.session(run, model, {"batch_size": 1, "top_k": 1})
        expected = inference.results(ctx, steps, [("pair", {"text": "It rained all day.",
                                                            "text_pair": "It was dry."})])
    finally:
        run.close()
    assert prediction.split()[0] == expected[0].fields["label"]  # the loop's own answer


def test_a_run_s_temp_dir_goes_when_it_closes():
    from taskcli.run import prepare

    run = prepare("automatic-speech-recognition", "wav2vec2", None, True)
    folder = Path(run.temp_dir("taskcli-test-"))
    assert folder.is_dir()
    run.close()
    assert not folder.exists()
