"""How data is laid out and read (issue 19): one table of split names every local reader follows, a task's own file
format read through its Task hook (CoNLL for token-classification) instead of data.py naming the task, modalities as
the registry's objects. (tests/test_structure.py checks that no module names a task, and that imports go only
downward.)"""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from taskcli import conll, data, data_files, files, modality, provenance, registry, splits

PACKAGE = Path(data.__file__).parent


@pytest.mark.parametrize("alias", sorted(splits.ALIASES))
def test_each_split_alias_resolves_the_same_everywhere(tmp_path, alias):
    """A file or folder named for a split is that split for every reader: data files, CoNLL files and media folders
    (data.py read an `eval.csv` as train where media folders read `eval/` as validation). Names are case-blind."""
    want, name = splits.ALIASES[alias], alias.capitalize()
    table = tmp_path / "table"
    table.mkdir()
    (table / f"{name}.csv").write_text("text,label\nhi,a\n")
    assert list(data_files.local_files(table)[1]) == [want]
    tagged = tmp_path / "conll"
    tagged.mkdir()
    (tagged / f"{name}.conll").write_text("EU B-ORG\n")
    assert list(conll.files(tagged)) == [want]
    media = tmp_path / "media" / name / "cat"
    media.mkdir(parents=True)
    (media / "a.png").write_bytes(b"")
    assert list(files.load_folder(tmp_path / "media", {".png"}, "image")) == [want]


def test_a_name_that_is_no_split_is_train(tmp_path):
    (tmp_path / "reviews.csv").write_text("text,label\nhi,a\n")
    (tmp_path / "sentences.conll").write_text("EU B-ORG\n")
    assert list(data_files.local_files(tmp_path)[1]) == ["train"]
    assert list(conll.files(tmp_path)) == ["train"]


def test_conll_is_read_through_the_tasks_hook(tmp_path):
    """Only token-classification declares a reader of its own; data.load_raw reads CoNLL through it, and without it
    the same file is not CoNLL to anyone."""
    from taskcli.errors import TaskcliError
    from taskcli.recipe import resolve

    assert [t.name for t in registry.all_tasks() if t.read_data] == ["token-classification"]
    ner = registry.get("ner")
    recipe = resolve(ner, None).recipe
    path = tmp_path / "train.conll"
    path.write_text("EU B-ORG\nrejects O\n")
    assert data.load_raw(str(path), recipe, ner.modality, ner.read_data)["train"][0] == {
        "tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}
    with pytest.raises(TaskcliError, match="unsupported data file type '.conll'"):
        data.load_raw(str(path), recipe, ner.modality)


def test_data_load_calls_any_tasks_reader(tmp_path):
    """data.load asks the run's task for its reader (not a task name): a text-classification task given one reads a
    file format no built-in reader knows."""
    import datasets

    from taskcli import run as run_mod

    run = run_mod.prepare("text-classification", None, [], False)
    seen = []

    def reader(recipe, path):
        seen.append(path)
        rows = {"text": [f"review {i}" for i in range(10)], "label": ["good", "bad"] * 5}
        return datasets.DatasetDict(train=datasets.Dataset.from_dict(rows))

    run.task = dataclasses.replace(run.task, read_data=reader)
    path = tmp_path / "reviews.toy"
    path.write_text("whatever the format holds")
    dsd = data.load(run, str(path))
    assert seen == [path] and len(dsd["train"]) + len(dsd["eval"]) == 10


def test_every_task_holds_a_modality_the_registry_lists():
    tasks = registry.all_tasks()
    assert all(isinstance(t.modality, modality.Modality) and t.modality in registry.modalities() for t in tasks)
    assert {t.modality.name for t in tasks} == {m.name for m in registry.modalities()} == {"text", "image", "audio"}
    assert registry.get("seg").modality is modality.IMAGE and registry.get("asr").modality is modality.AUDIO


def test_what_differs_by_modality_is_on_its_object(tmp_path):
    """Infer's chunk size (README: 8 batches and at least 256 inputs for text, 4 batches for images and audio), which
    files are whose, folder datasets, streaming."""
    assert (modality.TEXT.chunk_size(4), modality.TEXT.chunk_size(64)) == (256, 512)
    assert modality.IMAGE.chunk_size(8) == modality.AUDIO.chunk_size(8) == 32
    assert not modality.TEXT.media and modality.IMAGE.media and modality.AUDIO.media
    assert not modality.IMAGE.streams and modality.TEXT.streams and modality.AUDIO.streams
    for name in ("a.png", "b.flac", "c.txt"):
        (tmp_path / "label" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "label" / name).write_bytes(b"")
    assert modality.IMAGE.expand_inputs([str(tmp_path)]) == [str(tmp_path / "label" / "a.png")]
    assert modality.AUDIO.expand_inputs([str(tmp_path)]) == [str(tmp_path / "label" / "b.flac")]
    assert modality.TEXT.folder(tmp_path) is None
    assert modality.IMAGE.folder(tmp_path)["train"][0] == {"image": str(tmp_path / "label" / "a.png"), "label": "label"}
    assert modality.AUDIO.folder(tmp_path)["train"]["audio"] == [str(tmp_path / "label" / "b.flac")]


@pytest.mark.parametrize("task, expected", [
    ("summarization", ['AutoModelForSeq2SeqLM', 'prefix + "Replace this with your text."']),
    ("question-answering", ["AutoModelForQuestionAnswering.from_pretrained", "question, context = "]),
    ("image-classification", ["pipeline('image-classification'", 'pipe("photo.jpg")']),
    ("automatic-speech-recognition", ["pipeline('automatic-speech-recognition'", 'pipe("clip.flac")']),
])
def test_model_card_snippet_follows_the_task_and_modality(task, expected):
    code = provenance.snippet(SimpleNamespace(task=registry.get(task), seq2seq=True), Path("out"))
    assert all(part in code for part in expected), code
    compile(code, "snippet", "exec")
