"""`taskcli serve TASK --model DIR`: the task's model over HTTP (FastAPI + uvicorn, the `serve` extra).

    POST /predict   {"inputs": [...]} or {"input": ...}  ->  {"results": [{"input": ..., <infer --json fields>}]}
    GET  /health    {"status": "ok", "worker": "alive", "queue": 0, ...}

Inputs are what `infer --json` takes, as JSON: texts (or objects such as QA's {"question", "context"}) for text
tasks; for image and audio tasks {"name": "photo.jpg", "base64": "..."}, the file's bytes, decoded in memory (nothing
is written to disk). A text is never read as a path on the server: each is handed to the task's parse step as a JSON
object ({"text": ...}), as infer reads a JSON line.

Rows come back in input order, a bad input as {"input": ..., "error": "input 2 is empty"} in its place (as
`infer --skip-bad`), naming the client's input index or file name. A request none of whose inputs could be used is a
400; a failure of ours is a 500 with one line (the traceback goes to the server's stderr with TASKCLI_DEBUG=1).

One worker thread answers requests: those that arrive together share one predict call (gathered for up to
--max-wait-ms or --batch-size inputs); a batch that fails is retried input by input, so one input that breaks the
model fails only its own row. Nothing a request does stops the worker; /health says whether it is alive and how
many requests wait. Limits (`Limits`) bound what one request or client can take; see the README's "Serving".
"""

import base64
import binascii
import json
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


def require() -> None:
    import importlib

    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise TaskcliError(f"taskcli serve needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                           "not installed", "pip install 'taskcli[serve]'")


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


def _h11_protocol(read_timeout: float):
    """uvicorn's h11 protocol that closes a connection whose request line and headers are not all in within
    `read_timeout` s: uvicorn times out idle keep-alive connections but not a client trickling headers."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._headers_due(None)

        def on_response_complete(self):
            done = self.cycle
            super().on_response_complete()
            self._headers_due(done)

        def _headers_due(self, cycle) -> None:
            self.loop.call_later(read_timeout, self._expire, cycle)

        def _expire(self, cycle) -> None:
            if self.cycle is cycle and not self.transport.is_closing():  # no new request began since
                self.transport.close()

    return Protocol


def app_for(predictor: Predictor, model_name: str, limits: Limits = Limits(), api_key: str | None = None,
            cors_origins: list[str] | None = None, docs: bool = False):
    import asyncio
    import hmac

    from fastapi import FastAPI, Request
    from starlette.responses import Response

    app = FastAPI(title=f"taskcli serve {predictor.run.task.name}", docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    max_body = int(limits.max_body_mb * 1024 * 1024)

    def answer(status: int, body: dict, headers: dict | None = None) -> Response:
        # ASCII JSON: a text echoed back with a lone surrogate cannot be encoded as UTF-8
        return Response(json.dumps(body, default=float), status, headers, media_type="application/json")

    def refused(request: Request) -> Response | None:
        if api_key is None:
            return None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_key.encode()):
            return None
        return answer(401, {"error": "missing or wrong API key: send the header 'Authorization: Bearer KEY'"},
                      {"WWW-Authenticate": "Bearer"})

    async def body_of(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length", "")
        too_big = answer(413, {"error": f"the body is over {limits.max_body_mb:g} MB",
                               "hint": "send fewer inputs per request, or start the server with a larger --max-body-mb"})
        if declared.isdigit() and int(declared) > max_body:
            return too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return too_big
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/health")
    def health(request: Request):
        denied = refused(request)
        if denied is not None:
            return denied
        state = {**predictor.health(), "task": predictor.run.task.name, "model": model_name}
        return answer(200 if state["worker"] == "alive" else 503, state)

    @app.post("/predict")
    async def predict(request: Request):
        denied = refused(request)
        if denied is not None:
            return denied
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return answer(415, {"error": f"the body must be application/json, not {kind or 'untyped'}",
                                "hint": "send the header 'Content-Type: application/json'"})
        try:
            raw = await asyncio.wait_for(body_of(request), limits.read_timeout)
        except asyncio.TimeoutError:
            return answer(408, {"error": f"the body did not arrive within {limits.read_timeout:g} s"})
        if isinstance(raw, Response):
            return raw
        try:
            body = json.loads(raw or b"null")
        except (ValueError, RecursionError) as err:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
            why = "it is nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0][:200]
            return answer(400, {"error": f"the body is not JSON: {why}"})
        if not isinstance(body, dict) or ("inputs" in body) == ("input" in body):
            return answer(400, {"error": 'send {"inputs": [...]} or {"input": ...}'})
        inputs = body["inputs"] if "inputs" in body else [body["input"]]
        if not isinstance(inputs, list):
            return answer(400, {"error": '"inputs" must be a list'})
        if not inputs:
            return answer(400, {"error": 'no inputs: send {"inputs": [...]}'})
        if len(inputs) > limits.max_inputs:
            return answer(400, {"error": f"{len(inputs)} inputs in one request, more than {limits.max_inputs}",
                                "hint": "split them over several requests, or start the server with a larger "
                                        "--max-inputs"})
        if predictor.stopped:
            return answer(503, WORKER_STOPPED)
        try:
            future = predictor.submit(inputs)
        except queue.Full:
            return answer(503, {"error": f"the server is busy: {predictor.requests.maxsize} requests are waiting",
                                "hint": f"retry after {RETRY_AFTER_S} s"}, {"Retry-After": str(RETRY_AFTER_S)})
        status, reply = await asyncio.wrap_future(future)
        return answer(status, reply)

    return app


def serve(task: str, model: str | None, recipe: str | None, sets: list[str] | None, smoke: bool, host: str,
          port: int, batch_size: int | None, max_wait_ms: float, log, limits: Limits = Limits(),
          api_key: str | None = None, cors_origins: list[str] | None = None, docs: bool = False) -> None:
    require()
    import uvicorn

    from taskcli import audio, images, model_loading

    images.set_max_pixels(limits.max_image_pixels)
    audio.set_max_seconds(limits.max_audio_seconds)
    run, mdl = model_loading.load_for_inference(task, model, recipe, sets, smoke)
    options = {"batch_size": batch_size} if batch_size else {}  # the recipe's infer settings fill in the rest
    predictor = Predictor(run, mdl, options, max_wait_ms / 1000, limits.max_queue)
    log(f"serving {run.task.name} ({model or run.model_source}) on http://{host}:{port}  —  POST /predict, GET /health"
        + ("" if api_key else "  (no --api-key: anyone who can reach the port can use it)"))
    config = uvicorn.Config(
        app_for(predictor, model or run.model_source, limits, api_key, cors_origins, docs), host=host, port=port,
        log_level="warning", http=_h11_protocol(limits.read_timeout), limit_concurrency=limits.max_concurrency,
        timeout_keep_alive=limits.keep_alive, timeout_graceful_shutdown=limits.graceful_timeout,
        h11_max_incomplete_event_size=HEADER_BYTES, server_header=False)
    try:
        uvicorn.Server(config).run()
    finally:
        run.close()
