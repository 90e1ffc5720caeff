"""Python's cyclic garbage collector, kept off the objects that live as long as the process.

torch, transformers and datasets create ~800k objects at import that live until the process ends. Every full
collection walks all of them and finds nothing: about 0.7 CPU-s of a `taskcli finetune` start-up, and ~0.45 s more
at each `trainer.train()`, whose first act is a `gc.collect()` (Accelerate's `free_memory`). Measured by
bench/bench_startup.py; the tests in tests/test_collector.py check the collector's state, not time.

- `pause()` (a `taskcli` process's start, `cli.run`): collections only every 100,000 allocations while the libraries
  load, not every 700. Nothing is switched off: a command that never reaches `resume()` still collects.
- `resume()`: what start-up made moves to the permanent generation (`gc.freeze()`), and the usual thresholds return.
- `training()`: around `trainer.train()`, the objects that exist before it (libraries, model, data) are left out of
  the collections inside it; they are back in sight after it, so nothing they hold is kept for good.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

STARTUP_THRESHOLD = 100_000  # allocations between young collections while the libraries load (Python's default: 700)
_paused: dict[str, tuple[int, int, int] | None] = {"thresholds": None}


def pause() -> None:
    """Fewer collections while a process imports its libraries; `resume()` ends it."""
    if _paused["thresholds"] is None:
        _paused["thresholds"] = gc.get_threshold()
        gc.set_threshold(STARTUP_THRESHOLD, *_paused["thresholds"][1:])


def resume() -> None:
    """Start-up is over: its objects leave the collector's sight, the usual thresholds return. Once per pause."""
    if _paused["thresholds"] is not None:
        gc.freeze()
        gc.set_threshold(*_paused["thresholds"])
        _paused["thresholds"] = None


@contextmanager
def training():
    """Collections inside walk only what the loop itself makes."""
    resume()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
