"""The worker behind `taskcli serve`: one thread that owns the model, gathers the inputs of requests that arrive
together into one predict call, retries a failed batch input by input, and answers each request's future. Nothing a
request sends stops it (see serve.py for the HTTP side)."""

import base64
import binascii
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from taskcli.errors import TaskcliError
from taskcli.inputs import BadInput


@dataclass(frozen=True)
class Limits:
    """What one request or client may take; every one has a `taskcli serve` option to raise it."""

    max_body_mb: float = 32  # request body (413 over it)
    max_inputs: int = 64  # inputs per request (the only worker is held while it answers them)
    max_image_pixels: int = 40_000_000  # decoded width x height (a 389 KB PNG can hold 20000x20000)
    max_audio_seconds: float = 120  # a recording's length, read from its header before decoding
    max_concurrency: int = 64  # open connections and requests (uvicorn's limit_concurrency: 503 over it)
    max_queue: int = 32  # requests waiting for the worker (503 with Retry-After when full)
    read_timeout: float = 10  # seconds a client has to send a request's headers, and then its body
    keep_alive: int = 5  # seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)
    graceful_timeout: int = 10  # seconds SIGTERM waits for requests in progress (uvicorn's timeout_graceful_shutdown)


HEADER_BYTES = 16 * 1024  # most bytes of request line and headers (h11's max incomplete event size)
RETRY_AFTER_S = 1  # what a 503 for a full queue tells the client to wait
WORKER_STOPPED = {"error": "the server's worker has stopped", "hint": "restart the server"}


def _log(message: str) -> None:
    print(f"serve: {message}", file=sys.stderr, flush=True)


def _ours(err: BaseException, what: str) -> str:
    """The one line a client gets for a failure of ours; the server's stderr gets the rest."""
    _log(f"{what}: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
    if os.environ.get("TASKCLI_DEBUG") == "1":
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    return f"internal error while {what} ({type(err).__name__}; logged on the server)"


class Upload(dict):
    """A client's file, {"bytes", "path": its name}, as images.load/audio.decode take it. Hashed by identity: the
    vision steps key their per-input plans by input."""

    __hash__ = object.__hash__


class _Bad(Exception):
    """One input the task cannot use: its row's error (the input's fault)."""


@dataclass
class _Row:
    name: object  # what the row shows as its input
    parsed: object = None
    encoded: object = None
    result: object = None  # its task.Result
    error: str | None = None
    ours: bool = False  # error is a failure of ours, not the input's


@dataclass
class _Job:
    inputs: list
    future: Future
    rows: list | None = None


def _text_ok(value) -> bool:
    """False when a string anywhere in `value` holds a lone surrogate (valid JSON escapes, not Unicode text)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_text_ok(k) and _text_ok(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_text_ok(v) for v in value)
    return True


class Predictor:
    """The model, and a worker thread that answers queued requests together."""

    def __init__(self, run, model, options: dict, max_wait_s: float, max_queue: int = Limits.max_queue):
        """`options`: infer's flags by option field (serve gives batch_size), validated by the session."""
        from taskcli import inference

        self.run = run
        self.steps, self.ctx = inference.session(run, model, options)
        self.max_wait_s = max_wait_s
        self.media = run.task.modality.media
        self.stats = {"requests": 0, "predict_calls": 0, "bad_inputs": 0, "internal_errors": 0}
        self.busy_since: float | None = None
        self.stopped = False  # the worker ended (it should not): requests are refused, not left waiting
        self.requests: queue.Queue = queue.Queue(maxsize=max_queue)
        self.worker = threading.Thread(target=self._work, name="taskcli-serve-worker", daemon=True)
        self.worker.start()

    def health(self) -> dict:
        alive = self.worker.is_alive() and not self.stopped
        busy = self.busy_since
        return {"status": "ok" if alive else "worker stopped", "worker": "alive" if alive else "dead",
                "queue": self.requests.qsize(), "queue_limit": self.requests.maxsize,
                "busy_s": round(time.monotonic() - busy, 3) if busy is not None else 0.0, **self.stats}

    def warm_up(self) -> float:
        """Run the task's warm-up inputs through the model, one alone and then two together, before the server
        listens: a compiled forward compiles for its first shapes (15-30 s at base size on a small CPU), which would
        otherwise hold the first clients' requests. Seconds taken; TaskcliError when an input fails."""
        task = self.run.task
        inputs = list(task.warm_up) or task.modality.warm_up()
        start = time.monotonic()
        for batch in (inputs[:1], inputs):
            rows = self._read(batch)
            if all(row.error is None for row in rows):
                self._predict(rows)  # (sets a row's error when it fails)
            failed = [row.error for row in rows if row.error is not None]
            if failed:
                raise TaskcliError(f"warming the compiled model up failed: {failed[0]}",
                                   "leave infer.compile off, or see the server's log above (TASKCLI_DEBUG=1 for the "
                                   "traceback)")
        self.stats["predict_calls"] = 0  # (the clients' calls only)
        return time.monotonic() - start

    def submit(self, inputs: list) -> Future:
        """Queue a request's inputs (read by the worker, off the event loop); queue.Full when too many wait."""
        future: Future = Future()
        self.requests.put_nowait(_Job(inputs, future))
        if self.stopped:  # (after the put: the worker sets it before it empties the queue, so no job is missed)
            _settle(future, 503, WORKER_STOPPED)
        return future

    # --------------------------------------------------------------------- the worker

    def _work(self) -> None:
        jobs: list = []
        try:
            self._loop(jobs)
        finally:  # only something that is not an Exception ends the loop: answer everyone waiting, then end
            self.stopped = True
            while True:
                try:
                    jobs.append(self.requests.get_nowait())
                except queue.Empty:
                    break
            for job in jobs:
                _settle(job.future, 503, WORKER_STOPPED)
            _log("the worker stopped: requests are refused (503); restart the server")

    def _loop(self, jobs: list) -> None:
        """Answer queued requests until the process ends; `jobs` holds the ones being answered."""
        while True:
            jobs[:] = [self.requests.get()]
            deadline = time.monotonic() + self.max_wait_s
            while sum(len(j.inputs) for j in jobs) < self.ctx.batch_size:
                try:
                    jobs.append(self.requests.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            self.busy_since = time.monotonic()
            try:
                self._answer([j for j in jobs if j.future.set_running_or_notify_cancel()])  # skip clients gone
            except Exception as err:  # noqa: BLE001 - _answer settles its requests; this is the last net
                line = _ours(err, "answering requests")
                for job in jobs:
                    _settle(job.future, 500, {"error": line})
            finally:
                self.busy_since = None

    def _answer(self, jobs: list) -> None:
        for job in jobs:
            try:
                job.rows = self._read(job.inputs)
            except TaskcliError as err:  # the request as a whole (e.g. a task's read step)
                _settle(job.future, 400, {"error": err.message})
            except Exception as err:  # noqa: BLE001
                _settle(job.future, 500, {"error": _ours(err, "reading the inputs")})
        jobs = [j for j in jobs if j.rows is not None]
        todo = [row for job in jobs for row in job.rows if row.error is None]
        if todo:
            self._predict(todo)
        for job in jobs:
            self._reply(job)

    def _read(self, inputs: list) -> list[_Row]:
        """One row per input, parsed by the task's own step (media decoded, in memory), or with its error."""
        rows = []
        for k, value in enumerate(inputs, 1):
            try:
                if self.media:
                    upload = self._upload(value, k)
                    rows.append(_Row(upload["path"], upload))
                else:
                    if not isinstance(value, (str, dict)):
                        raise _Bad(f"input {k} is a {type(value).__name__}, not a text or a JSON object")
                    if not _text_ok(value):
                        raise _Bad(f"input {k} holds a lone surrogate escape (such as \\ud800), not Unicode text")
                    rows.append(_Row(value, value if isinstance(value, dict) else {"text": value}))
            except _Bad as bad:
                rows.append(_Row(value if not self.media else f"input {k}", error=str(bad)))
        for k, row in enumerate(rows, 1):
            if row.error is None:
                self._parse(row, f"input {k}")
        return rows

    def _upload(self, value, k: int) -> Upload:
        if not isinstance(value, dict) or not isinstance(value.get("base64"), str):
            raise _Bad(f"input {k}: {self.run.task.name} takes files, sent as {{\"name\": \"x.jpg\", \"base64\": ...}}")
        name = value.get("name", f"input {k}")
        if not isinstance(name, str) or not name or not _text_ok(name):
            raise _Bad(f"input {k}: \"name\" must be a non-empty text")
        try:
            data = base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise _Bad(f"input {k} ({name}): base64 is not valid") from None
        if not data:  # (an empty upload must not fall through to reading "path" on the server)
            raise _Bad(f"input {k} ({name}): the file is empty")
        return Upload(bytes=data, path=name)

    def _parse(self, row: _Row, where: str) -> None:
        try:
            row.parsed = self.steps.parse(self.ctx, row.parsed)
        except BadInput as err:
            row.error = f"{where} {err.says}"
        except (TaskcliError, *self.steps.errors) as err:
            row.error = getattr(err, "message", str(err))
        except Exception as err:  # noqa: BLE001 - e.g. a tokenizer refusing a text: that row, not the server
            row.error, row.ours = _ours(err, f"reading {where}"), True

    def _predict(self, rows: list[_Row]) -> None:
        """Results for parsed rows: all in one predict call, or, if that fails, one row at a time, so only the
        rows that fail alone get an error."""
        from taskcli import inference

        try:
            results = inference.predict(self.ctx, self.steps, self.steps.encode(self.ctx, [row.parsed for row in rows]))
            self.stats["predict_calls"] += 1
        except Exception as err:  # noqa: BLE001 - one row: its error; several: retried one by one
            if len(rows) == 1:
                rows[0].error, rows[0].ours = _ours(err, "predicting"), True
            else:
                for row in rows:
                    self._predict([row])
            return
        for row, result in zip(rows, results):
            row.result = result

    def _reply(self, job: _Job) -> None:
        rows = job.rows
        out = [{"input": row.name, "error": row.error} if row.error is not None else
               {"input": row.name, **row.result.json()} for row in rows]
        bad = [row for row in rows if row.error is not None]
        self.stats["requests"] += 1
        self.stats["bad_inputs"] += sum(not row.ours for row in bad)
        self.stats["internal_errors"] += sum(row.ours for row in bad)
        if len(bad) < len(rows):
            _settle(job.future, 200, {"results": out})
            return
        status = 500 if all(row.ours for row in bad) else 400
        line = bad[0].error if len(rows) == 1 else f"none of the {len(rows)} inputs could be used ({bad[0].error})"
        _settle(job.future, status, {"error": line, "results": out})


def _settle(future: Future, status: int, body: dict) -> None:
    """Answer a request unless it is answered already or its client has gone (cancelled)."""
    if not future.done():
        try:
            future.set_result((status, body))
        except Exception:  # noqa: BLE001 - cancelled in between: nobody is waiting
            pass
