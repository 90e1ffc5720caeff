"""transformers' import-structure scan, cached across processes (taskcli/import_cache.py): the cached answer is
transformers' own, a changed file is scanned again, and a damaged or unwritable cache only costs the scan."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from taskcli import import_cache

PROBE = """
import inspect, json, sys
from pathlib import Path
from taskcli import import_cache
import_cache.install()
import transformers, transformers.models
stats = dict(import_cache.stats)  # the imports' own scans (the comparison below reads the cache again)
from transformers.utils import import_utils
models = Path(transformers.__file__).parent / "models"
cached = import_utils.define_import_structure
same = all(cached(*args) == inspect.unwrap(cached)(*args)  # transformers' function, without either cache
           for args in ((models, "models"), (str(models / "__init__.py"), None)))
print(json.dumps({**stats, "same": same}))
"""


def probe(cache: Path, **env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_second_process_reads_transformers_own_scan_from_the_cache(tmp_path):
    """Both scans `import transformers` + `transformers.models` make: scanned and written by the first process, read
    by the next, and equal to transformers' own uncached function both times."""
    assert probe(tmp_path) == {"hits": 0, "misses": 2, "same": True}
    assert len(list((tmp_path / "taskcli").glob("import-structure-*.json"))) == 2
    assert probe(tmp_path) == {"hits": 2, "misses": 0, "same": True}
    assert probe(tmp_path, TASKCLI_IMPORT_CACHE="0") == {"hits": 0, "misses": 0, "same": True}


def scan_of(folder: Path):
    """A stand-in for transformers' scan: each file's names, counting its calls."""
    calls = []

    def scan():
        calls.append(1)
        return {frozenset({"torch"}): {p.stem: set(p.read_text().split()) for p in sorted(folder.rglob("*.py"))}}

    return scan, calls


def test_a_changed_damaged_or_unwritable_cache_falls_back_to_the_scan(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "models"
    (folder / "bert").mkdir(parents=True)
    (folder / "bert" / "modeling_bert.py").write_text("BertModel")
    scanner = tmp_path / "import_utils.py"
    scanner.write_text("# transformers' scanning code")
    scan, calls = scan_of(folder)

    first = import_cache.load_or_scan(scan, folder, "models", scanner)
    assert import_cache.load_or_scan(scan, folder, "models", scanner) == first and len(calls) == 1
    (folder / "bert" / "modeling_bert.py").write_text("BertModel BertForMaskedLM")  # an edited file
    assert import_cache.load_or_scan(scan, folder, "models", scanner)[frozenset({"torch"})]["modeling_bert"] == \
        {"BertModel", "BertForMaskedLM"} and len(calls) == 2
    (folder / "gpt2").mkdir()  # a new model folder
    import_cache.load_or_scan(scan, folder, "models", scanner)
    assert len(calls) == 3

    stored = next((tmp_path / "cache" / "taskcli").glob("import-structure-*.json"))
    for damage in ("{not json", json.dumps({"fingerprint": json.loads(stored.read_text())["fingerprint"],
                                            "structure": [[["torch"], {"modeling_bert": "BertModel"}]]})):
        stored.write_text(damage)
        assert import_cache.load_or_scan(scan, folder, "models", scanner) == scan()
    calls.clear()
    import_cache.load_or_scan(scan, folder, "models", scanner)
    assert calls == []  # rewritten by the scan that replaced the damaged file

    monkeypatch.setenv("XDG_CACHE_HOME", str(stored))  # a file where the folder should be: nothing can be written
    assert import_cache.load_or_scan(scan, folder, "models", scanner) == scan()
