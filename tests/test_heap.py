"""infer keeps freed buffers in its heap (taskcli/heap.py): large buffers freed and allocated again are reused, not
mapped and page-faulted anew, and infer asks for it."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

PROBE = """
import json, resource
import numpy as np
from taskcli import heap
kept = heap.keep()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(6):  # a 64 MB buffer, written, freed, six times: as a batch's activations are
    buffer = np.ones(16 * 2**20, dtype=np.float32)
    del buffer
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""


def probe(**env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not glibc, reason="the options are glibc's")
def test_freed_large_buffers_are_reused_instead_of_faulted_in_again():
    kept, plain = probe(), probe(TASKCLI_KEEP_HEAP="0")
    assert kept["kept"] is True and plain["kept"] is False
    # plain: each buffer mapped and faulted in again (6 times; fewer faults than 4 KB pages where the kernel gives
    # huge pages); kept: the first one faulted in, then reused. Measured here: 3,264 against 531.
    assert plain["faults"] > 3 * kept["faults"], (plain, kept)


def test_infer_keeps_the_heap(cli, trained, monkeypatch):
    from taskcli import heap

    calls = []
    monkeypatch.setattr(heap, "keep", lambda: calls.append(1) or False)
    result = cli("infer", "text-classification", "--model", trained("text-classification"), "good", "--json")
    assert result.exit_code == 0, result.stderr
    assert calls == [1]
