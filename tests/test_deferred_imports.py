"""scipy.optimize imported at first use (taskcli/deferred_imports.py): a one-line infer never imports scipy, and code
that uses scipy.optimize (DETR's matcher, or anything else in it) gets the real module's answers."""

import itertools
import json
import os
import subprocess
import sys

from conftest import REPO

PROBE = """
import json, sys
from taskcli import deferred_imports
installed = deferred_imports.install()
import scipy.optimize as early                               # what transformers' loss module does, in two spellings
from scipy.optimize import linear_sum_assignment
deferred = "scipy.optimize._optimize" not in sys.modules
import scipy.optimize._linprog_util                          # a submodule, while the package is not imported
rows, cols = linear_sum_assignment(json.loads(sys.argv[1]))
print(json.dumps({"installed": installed, "deferred": deferred, "pairs": [[int(r), int(c)] for r, c in zip(rows, cols)],
                  "real_after_call": type(sys.modules["scipy.optimize"]).__name__ == "module",
                  "early_reads_real": early.minimize is sys.modules["scipy.optimize"].minimize,
                  "again": deferred_imports.install()}))
"""


def probe(cost, **env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cost)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_stand_in_defers_the_import_and_answers_as_scipy():
    cost = [[4, 1, 3, 9], [2, 0, 5, 1], [3, 2, 2, 7], [8, 6, 1, 4]]
    best = min(itertools.permutations(range(4)), key=lambda p: sum(cost[r][c] for r, c in enumerate(p)))
    got = probe(cost)
    assert got == {"installed": True, "deferred": True, "pairs": [[r, c] for r, c in enumerate(best)],
                   "real_after_call": True, "early_reads_real": True, "again": False}
    off = probe(cost, TASKCLI_DEFER_IMPORTS="0")
    assert off["installed"] is False and off["deferred"] is False and off["pairs"] == got["pairs"]


def test_a_one_line_infer_imports_no_scipy(trained):
    """transformers' modeling code imports its object-detection loss, which imports scipy.optimize: not any more."""
    model = trained("token-classification")

    def scipy_modules(**env) -> set[str]:
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "taskcli", "infer", "ner", "--model",
                               str(model), "Alice works in Paris .", "--json"], cwd=REPO, capture_output=True,
                              text=True, timeout=180, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["input"] == "Alice works in Paris ."
        return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:") and line.rsplit("|", 1)[1].strip().startswith("scipy")}

    assert scipy_modules() == set()
    assert "scipy.optimize" in scipy_modules(TASKCLI_DEFER_IMPORTS="0")  # the import it saves is still there
