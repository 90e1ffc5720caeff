"""infer keeps freed buffers in its heap (taskcli/heap.py): a large buffer comes from the heap and its memory stays
there when freed, for the next batch, instead of a mapping of its own each time; and infer asks for it."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

PROBE = """
import ctypes, json
import numpy as np
from taskcli import heap
kept = heap.keep()

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
buffer = np.ones(16 * 2**20, dtype=np.float32)  # 64 MB, as a batch's activation
live = libc.mallinfo2()
del buffer
freed = libc.mallinfo2()
print(json.dumps({"kept": kept, "mapped_mb": live.hblkhd / 2**20, "free_in_heap_mb": freed.fordblks / 2**20}))
"""


def probe(**env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not glibc or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc's options (2.33+)")
def test_a_freed_large_buffer_stays_in_the_heap_for_the_next_batch():
    """glibc's own counters: plain, a 64 MB buffer is a mapping of its own (given back, and faulted in anew, each
    time); kept, it comes from the heap and its memory stays there, free, after it is freed."""
    kept, plain = probe(), probe(TASKCLI_KEEP_HEAP="0")
    assert kept["kept"] is True and plain["kept"] is False
    assert plain["mapped_mb"] >= 64 and plain["free_in_heap_mb"] < 64, plain
    assert kept["mapped_mb"] < 64 and kept["free_in_heap_mb"] >= 64, kept


def test_infer_keeps_the_heap(cli, trained, monkeypatch):
    from taskcli import heap

    calls = []
    monkeypatch.setattr(heap, "keep", lambda: calls.append(1) or False)
    result = cli("infer", "text-classification", "--model", trained("text-classification"), "good", "--json")
    assert result.exit_code == 0, result.stderr
    assert calls == [1]
