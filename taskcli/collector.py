"""Python's cyclic garbage collector, kept off the objects that live as long as the process.

torch, transformers and datasets create ~800k objects at import that live until the process ends. Every full
collection walks all of them and finds nothing: about 0.7 CPU-s of a `taskcli finetune` start-up, and ~0.45 s more
at each `trainer.train()`, whose first act is a `gc.collect()` (Accelerate's `free_memory`). Measured by
bench/bench_startup.py; the tests in tests/test_collector.py check the collector's state, not time.

- `pause()` (a `taskcli` process's start: `run`, which cli.run calls): collections only every 100,000 allocations
  while the libraries load, not every 700. Nothing is switched off: a command that never reaches `resume()` still
  collects.
- `resume()`: what start-up made moves to the permanent generation (`gc.freeze()`), and the usual thresholds return.
- `training()`: around `trainer.train()`, the objects that exist before it (libraries, model, data) are left out of
  the collections inside it; they are back in sight after it, so nothing they hold is kept for good.
- `skip_teardown()` + `end(code)`: the interpreter's teardown after torch is loaded (freeing those objects one by
  one, the libraries' own destructors) takes 0.17-0.19 s of a one-line `taskcli infer` against 0.04-0.06 s without
  it (measured from the command's end to the process's); a command whose files are all closed when it returns (infer)
  asks `run` to leave it out. The atexit handlers still run (temporary folders, worker processes, logging) and
  the output streams are flushed; only the freeing, which the operating system does anyway, is skipped.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

STARTUP_THRESHOLD = 100_000  # allocations between young collections while the libraries load (Python's default: 700)
_paused: dict[str, tuple[int, int, int] | None] = {"thresholds": None}
_teardown = {"skip": False}


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


def run(main) -> None:
    """A `taskcli` process (cli.run): `main` (typer's app, which always ends in SystemExit) with collections paused
    while it loads the libraries, then `end`."""
    pause()
    try:
        main()
    except SystemExit as done:
        end(done.code)
        raise


def skip_teardown() -> None:
    """The command has closed everything it wrote: `end` may leave out the interpreter's teardown."""
    _teardown["skip"] = True


# How long `end` waits for each thread still running before it leaves the exit to Python (which waits as long as it
# takes, and first wakes the threads that wait for it: a library's unclosed ThreadPoolExecutor hung `end` forever).
THREAD_WAIT_S = 1.0


def end(code) -> None:
    """After a `taskcli` process's command (`run`; never inside a test's in-process runner): when the command asked
    for it and succeeded (`code` 0), run the atexit handlers, flush, and leave at once with 0. Otherwise return, and
    Python ends the process as usual."""
    import atexit
    import os
    import sys
    import threading

    if not _teardown["skip"] or code not in (0, None):
        return
    for thread in threading.enumerate():  # Python's own exit waits for these too
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(THREAD_WAIT_S)
            if thread.is_alive():  # e.g. a ThreadPoolExecutor's idle worker: only Python's exit tells it to stop
                return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left: as cli_common._reader_gone
        os._exit(141)
    except OSError:  # e.g. a full disk under a redirected stdout: Python's own exit reports it
        return
    os._exit(0)
