"""`infer` options are checked against the task (never silently ignored), and generate() settings are merged in one
place (taskcli.generation): sampling samples, greedy is greedy."""

import json

import pytest

from conftest import assert_clean_error

DOC = "The council approved the new budget on Tuesday after a long debate about school funding."


@pytest.mark.parametrize("task, args, fragments", [
    ("ner", ["Alice works in Paris", "--threshold", "0.5"], ["--threshold does not apply to token-classification",
                                                            "it is for text-classification, image-classification, object-detection"]),
    ("text-classification", ["good", "--max-new-tokens", "4"], ["--max-new-tokens does not apply", "summarization"]),
    ("summarization", [DOC, "--question", "why?"], ["--question does not apply to summarization",
                                                    "question-answering"]),
    ("fill-mask", ["a <mask> day", "--language", "en"], ["--language does not apply", "automatic-speech-recognition"]),
    ("text-classification", ["good", "--save-maps", "maps"], ["--save-maps does not apply",
                                                              "image-segmentation, depth-estimation"]),
    ("token-classification", ["Alice", "--greedy"], ["--do-sample/--greedy does not apply", "text-generation"]),
])
def test_an_option_of_another_task_is_an_error_naming_its_tasks(cli, task, args, fragments):
    assert_clean_error(cli("infer", task, *args, "--smoke"), *fragments)


def _summary(cli, *flags):
    result = cli("infer", "summarization", DOC, "--smoke", "--json", "--max-new-tokens", "12", *flags)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["summary_text"]


def test_sampling_samples_and_greedy_is_greedy(cli):
    """infer.top_k (1, labels per input) used to reach generate(): --do-sample then drew from the top 1 token,
    greedy decoding under another name, the same text for every seed."""
    sampled = {_summary(cli, "--do-sample", "--seed", str(seed)) for seed in (1, 2, 3)}
    assert len(sampled) == 3
    assert _summary(cli, "--do-sample", "--seed", "2") == _summary(cli, "--do-sample", "--seed", "2")
    assert _summary(cli, "--greedy", "--seed", "1") == _summary(cli, "--greedy", "--seed", "2") == _summary(cli)
    # --top-k is the sampling top-k when asked: top-1 sampling is greedy decoding
    assert _summary(cli, "--do-sample", "--top-k", "1", "--seed", "5") == _summary(cli)
