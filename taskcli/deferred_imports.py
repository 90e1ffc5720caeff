"""scipy.optimize, imported when first used instead of with every PyTorch model: ~0.2 s of a one-line infer.

transformers' modeling_utils imports all its loss functions, and the object-detection one runs
`from scipy.optimize import linear_sum_assignment` (DETR's Hungarian matcher) at import time, so loading any model
imported scipy.optimize and scipy.linalg with it. Only training or evaluating a detector calls that function.
Measured on the 2-core Genoa, a one-line `taskcli infer ner`, medians of 7 interleaved rounds: 2.74 -> 2.56 s on a
smoke model, 2.94 -> 2.72 s at DistilBERT-base size.

`install()` (run.quiet_libraries, before transformers loads) puts a stand-in module under the name: its
`linear_sum_assignment` imports the real module at its first call, and any other name read from it does the same and
answers from the real one, so code that imports anything else from scipy.optimize gets what it always got.
TASKCLI_DEFER_IMPORTS=0 leaves the import as it was.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

NAME = "scipy.optimize"


class StandIn(types.ModuleType):
    """In sys.modules until something needs the real module; then every lookup answers from it."""

    def __getattr__(self, attr):
        if attr.startswith("__"):  # __spec__, __file__, ...: a stand-in has none, and looking must not import
            raise AttributeError(attr)
        return getattr(real(), attr)


def real() -> types.ModuleType:
    """The real scipy.optimize, imported the first time (the stand-in leaves sys.modules)."""
    if isinstance(sys.modules.get(NAME), StandIn):
        del sys.modules[NAME]
    return importlib.import_module(NAME)


def linear_sum_assignment(*args, **kwargs):
    return real().linear_sum_assignment(*args, **kwargs)


def install() -> bool:
    """Put the stand-in in place; False (nothing done) when scipy is missing, already imported, or deferring is off."""
    if os.environ.get("TASKCLI_DEFER_IMPORTS", "1") == "0" or NAME in sys.modules:
        return False
    spec = importlib.util.find_spec("scipy")  # a top-level name: finds the folder, imports nothing
    folder = Path(spec.submodule_search_locations[0]) / "optimize" if spec and spec.submodule_search_locations else None
    if folder is None or not folder.is_dir():
        return False
    stand_in = StandIn(NAME, "scipy.optimize, imported at first use (taskcli.deferred_imports)")
    # a package's path, so `from scipy.optimize import x` and `import scipy.optimize.sub` work without importing it
    stand_in.__path__ = [str(folder)]
    stand_in.linear_sum_assignment = linear_sum_assignment
    sys.modules[NAME] = stand_in
    return True
