"""`taskcli serve TASK --model DIR`: the task's model over HTTP (FastAPI + uvicorn, the `serve` extra).

    POST /predict   {"inputs": [...]} or {"input": ...}  ->  {"results": [{"input": ..., <infer --json fields>}]}
    GET  /health    {"status": "ok", "task": ..., "model": ...}

Inputs are what `infer --json` takes, as JSON: texts (or objects such as QA's {"question", "context"}) for text
tasks; for image and audio tasks {"name": "photo.jpg", "base64": "..."}, the file's bytes. A text is never read as
a path on the server: each is handed to the task as a JSON object. Requests that arrive together are answered by
one predict call (a worker thread gathers them for up to --max-wait-ms or --batch-size inputs). A bad request gets
a 400 with a one-line reason; the server goes on serving.
"""

import base64
import binascii
import json
import queue
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

from taskcli.errors import TaskcliError
from taskcli.inputs import SKIP_HINT


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


class Predictor:
    """The model, and a worker thread that answers queued requests together."""

    def __init__(self, run, model, options: dict, max_wait_s: float):
        from taskcli import engine

        self.run = run
        self.steps, self.ctx = engine.infer_session(run, model, options)
        self.max_wait_s = max_wait_s
        self.media = run.task.modality in ("image", "audio")
        self.files = tempfile.TemporaryDirectory(prefix="taskcli-serve-")
        self.count = 0
        self.answered = {"requests": 0, "predict_calls": 0}  # shown by /health: how well requests were gathered
        self.lock = threading.Lock()
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, daemon=True).start()

    # --------------------------------------------------------------------- one request's inputs

    def read(self, inputs: list) -> tuple[list, list]:
        """(the inputs encoded, what each row names as its input) for one request; TaskcliError for an input the
        task cannot use (a 400)."""
        from taskcli import inference

        if not inputs:
            raise TaskcliError("no inputs", 'send {"inputs": [...]}')
        names = []
        args = []
        for k, value in enumerate(inputs, 1):
            if self.media:
                args.append(self._saved(value, k))
                names.append(value.get("name") or f"input {k}")
            else:
                if not isinstance(value, (str, dict)):
                    raise TaskcliError(f"input {k} is a {type(value).__name__}", "send a text or a JSON object")
                args.append(json.dumps(value if isinstance(value, dict) else {"text": value}))  # never a file path
                names.append(value)
        todo = inference.entries(self.ctx, self.steps, args)
        return inference.encode(self.ctx, self.steps, todo, skip_bad=False), names

    def _saved(self, value, k: int) -> str:
        if not isinstance(value, dict) or "base64" not in value:
            raise TaskcliError(f"input {k}: {self.run.task.name} takes files", 'send {"name": "x.jpg", "base64": "..."}')
        try:
            data = base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise TaskcliError(f"input {k}: base64 is not valid", "encode the file's bytes as base64") from None
        with self.lock:
            self.count += 1
            n = self.count
        suffix = Path(str(value.get("name") or "")).suffix.lower()[:8]
        path = Path(self.files.name) / f"{n}{suffix}"
        path.write_bytes(data)
        return str(path)

    # --------------------------------------------------------------------- batching

    def submit(self, inputs: list) -> Future:
        """Queue a request's inputs (read by the worker, off the event loop, which only parses HTTP)."""
        future: Future = Future()
        self.requests.put((inputs, future))
        return future

    def _work(self) -> None:
        import time

        while True:
            waiting = self._readable([self.requests.get()])
            deadline = time.monotonic() + self.max_wait_s
            while sum(len(w[0]) for w in waiting) < self.ctx.batch_size:
                try:
                    waiting += self._readable([self.requests.get(timeout=max(deadline - time.monotonic(), 0))])
                except queue.Empty:
                    break
            if waiting:
                self._answer(waiting)

    def _readable(self, requests: list) -> list:
        """(encoded inputs, names, future) of the requests the task can read; the others are answered (400)."""
        out = []
        for inputs, future in requests:
            try:
                out.append((*self.read(inputs), future))
            except TaskcliError as err:
                future.set_exception(err)
        return out

    def _answer(self, waiting: list) -> None:
        from taskcli import inference

        try:
            results = inference.predict(self.ctx, self.steps, [e for w in waiting for e in w[0]])
        except Exception as err:  # noqa: BLE001 - one failed batch answers its requests, the server goes on
            for w in waiting:
                w[2].set_exception(err if isinstance(err, TaskcliError) else
                                   TaskcliError(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            return
        self.answered["requests"] += len(waiting)
        self.answered["predict_calls"] += 1
        start = 0
        for request_items, names, future in waiting:
            mine = results[start:start + len(request_items)]
            start += len(request_items)
            future.set_result([{"input": name, **result} for name, result in zip(names, mine)])


def app_for(predictor: Predictor, model_name: str):
    import asyncio

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title=f"taskcli serve {predictor.run.task.name}")

    def bad(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    def health():
        return {"status": "ok", "task": predictor.run.task.name, "model": model_name, **predictor.answered}

    @app.post("/predict")
    async def predict(request: Request):
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return bad(f"the body is not JSON: {err}")
        if not isinstance(body, dict) or ("inputs" in body) == ("input" in body):
            return bad('send {"inputs": [...]} or {"input": ...}')
        inputs = body["inputs"] if "inputs" in body else [body["input"]]
        if not isinstance(inputs, list):
            return bad('"inputs" must be a list')
        try:
            rows = await asyncio.wrap_future(predictor.submit(inputs))
        except TaskcliError as err:  # (the command line's "--skip-bad" way out is not the server's)
            return bad(str(err).replace(f", {SKIP_HINT}", ""))
        return JSONResponse(json.loads(json.dumps({"results": rows}, default=float)))

    return app


def serve(task: str, model: str | None, recipe: str | None, sets: list[str] | None, smoke: bool, host: str,
          port: int, batch_size: int | None, max_wait_ms: float, log) -> None:
    require()
    import uvicorn

    from taskcli import engine

    run, mdl = engine.load_for_inference(task, model, recipe, sets, smoke)
    options = {"batch_size": batch_size} if batch_size else {}  # the recipe's infer settings fill in the rest
    predictor = Predictor(run, mdl, options, max_wait_ms / 1000)
    log(f"serving {run.task.name} ({model or run.model_source}) on http://{host}:{port}  —  POST /predict, GET /health")
    try:
        uvicorn.run(app_for(predictor, model or run.model_source), host=host, port=port, log_level="warning")
    finally:
        run.close()
