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

import json
import os
import queue
import signal
import sys

from taskcli.errors import TaskcliError
from taskcli.serve_worker import HEADER_BYTES, RETRY_AFTER_S, WORKER_STOPPED, Limits, Predictor


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
    """The FastAPI app: /health and /predict, each request checked (key, type, size, time, shape) before the
    model's worker sees its inputs."""
    import asyncio

    from fastapi import FastAPI, Request
    from starlette.responses import Response

    app = FastAPI(title=f"taskcli serve {predictor.run.task.name}", docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.get("/health")
    def health(request: Request):
        denied = _refused(request, api_key)
        if denied is not None:
            return denied
        state = {**predictor.health(), "task": predictor.run.task.name, "model": model_name}
        return _answer(200 if state["worker"] == "alive" else 503, state)

    @app.post("/predict")
    async def predict(request: Request):
        denied = _refused(request, api_key)
        if denied is not None:
            return denied
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return _answer(415, {"error": f"the body must be application/json, not {kind or 'untyped'}",
                                 "hint": "send the header 'Content-Type: application/json'"})
        try:
            raw = await asyncio.wait_for(_body_of(request, limits), limits.read_timeout)
        except asyncio.TimeoutError:
            return _answer(408, {"error": f"the body did not arrive within {limits.read_timeout:g} s"})
        inputs = raw if isinstance(raw, Response) else _inputs_of(raw, limits)
        if not isinstance(inputs, list):
            return inputs
        if predictor.stopped:
            return _answer(503, WORKER_STOPPED)
        try:
            future = predictor.submit(inputs)
        except queue.Full:
            return _answer(503, {"error": f"the server is busy: {predictor.requests.maxsize} requests are waiting",
                                 "hint": f"retry after {RETRY_AFTER_S} s"}, {"Retry-After": str(RETRY_AFTER_S)})
        status, reply = await asyncio.wrap_future(future)
        return _answer(status, reply)

    return app


def _answer(status: int, body: dict, headers: dict | None = None):
    from starlette.responses import Response

    # ASCII JSON: a text echoed back with a lone surrogate cannot be encoded as UTF-8
    return Response(json.dumps(body, default=float), status, headers, media_type="application/json")


def _refused(request, api_key: str | None):
    """None when the request may go on (no key set, or its bearer key is right); else the 401 answer."""
    import hmac

    if api_key is None:
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_key.encode()):
        return None
    return _answer(401, {"error": "missing or wrong API key: send the header 'Authorization: Bearer KEY'"},
                   {"WWW-Authenticate": "Bearer"})


async def _body_of(request, limits: Limits):
    """The body's bytes, or a 413 answer as soon as it is over --max-body-mb (declared or streamed)."""
    max_body = int(limits.max_body_mb * 1024 * 1024)
    declared = request.headers.get("content-length", "")
    too_big = _answer(413, {"error": f"the body is over {limits.max_body_mb:g} MB",
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


def _inputs_of(raw: bytes, limits: Limits):
    """The request's inputs (a non-empty list of at most --max-inputs), or the 400 answer saying what is wrong."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError) as err:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
        why = "it is nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0][:200]
        return _answer(400, {"error": f"the body is not JSON: {why}"})
    if not isinstance(body, dict) or ("inputs" in body) == ("input" in body):
        return _answer(400, {"error": 'send {"inputs": [...]} or {"input": ...}'})
    inputs = body["inputs"] if "inputs" in body else [body["input"]]
    if not isinstance(inputs, list):
        return _answer(400, {"error": '"inputs" must be a list'})
    if not inputs:
        return _answer(400, {"error": 'no inputs: send {"inputs": [...]}'})
    if len(inputs) > limits.max_inputs:
        return _answer(400, {"error": f"{len(inputs)} inputs in one request, more than {limits.max_inputs}",
                             "hint": "split them over several requests, or start the server with a larger "
                                     "--max-inputs"})
    return inputs


def serve(task: str, model: str | None, recipe: str | None, sets: list[str] | None, smoke: bool, host: str,
          port: int, batch_size: int | None, max_wait_ms: float, log, limits: Limits = Limits(),
          api_key: str | None = None, cors_origins: list[str] | None = None, docs: bool = False) -> None:
    require()
    # SIGTERM while loading: Python's exit, which removes the temp folders made so far (--smoke's model)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    import uvicorn

    from taskcli import audio, images, model_loading

    images.set_max_pixels(limits.max_image_pixels)
    audio.set_max_seconds(limits.max_audio_seconds)
    run, mdl = model_loading.load_for_inference(task, model, recipe, sets, smoke)
    options = {"batch_size": batch_size} if batch_size else {}  # the recipe's infer settings fill in the rest
    predictor = Predictor(run, mdl, options, max_wait_ms / 1000, limits.max_queue)
    if run.recipe.infer.compile:  # compile now, not in the first clients' requests
        try:
            seconds = predictor.warm_up()
        except BaseException:
            run.close()
            raise
        log(f"infer.compile: warmed up in {seconds:.1f} s (a batch of 1 and one of 2), before listening")
    log(f"serving {run.task.name} ({model or run.model_source}) on http://{host}:{port}  —  POST /predict, GET /health"
        + ("" if api_key else "  (no --api-key: anyone who can reach the port can use it)"))
    config = uvicorn.Config(
        app_for(predictor, model or run.model_source, limits, api_key, cors_origins, docs), host=host, port=port,
        log_level="warning", http=_h11_protocol(limits.read_timeout), limit_concurrency=limits.max_concurrency,
        timeout_keep_alive=limits.keep_alive, timeout_graceful_shutdown=limits.graceful_timeout,
        h11_max_incomplete_event_size=HEADER_BYTES, server_header=False)
    # uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler it found. Python's default
    # ended the process there, before `run.close()` removed the run's temp folders; a plain exit would run asyncio's
    # teardown, which logs a traceback for each request cut at --graceful-timeout. So: the folders, then out at once.
    signal.signal(signal.SIGTERM, lambda signum, frame: _end_now(run, 128 + signum))
    try:
        uvicorn.Server(config).run()
    finally:
        run.close()


def _end_now(run, code: int) -> None:
    run.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
