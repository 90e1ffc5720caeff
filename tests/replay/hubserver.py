"""A local stand-in for the Hugging Face Hub's HTTP API, serving a replay cache on 127.0.0.1.

The replay cache (see ``build.py``) has the ``HF_HUB_CACHE`` layout: ``models--ORG--NAME`` /
``datasets--ORG--NAME`` with ``refs/<revision>`` files naming a commit and ``snapshots/<commit>/<files>``.
Models load from such a cache offline; ``datasets`` does not (in offline mode it only reads its own prepared
arrow cache), so the recipes-as-written tests point ``HF_ENDPOINT`` here instead: huggingface_hub,
transformers and datasets then take the same code paths as for a user online — file HEAD/GET, repo info,
tree listings, the loading-script check — against recorded repos.

Only what those libraries call is served: ``resolve`` (HEAD/GET), ``api/{models,datasets}/ID[/revision/R]``,
``api/.../tree/R[/path]`` and ``api/.../paths-info/R``; and for uploads (``taskcli push``) what
``HfApi.create_repo`` and ``create_commit`` send: ``api/repos/create``, ``api/validate-yaml``,
``api/.../preupload/R`` (every file "regular": its bytes go base64 in the commit) and ``api/.../commit/R`` (NDJSON),
which writes a new snapshot into the cache folder, so what was pushed downloads back like any recorded repo.
Anything else is a 404 with the Hub's error code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class Repo:
    def __init__(self, folder: Path, repo_id: str, kind: str):
        self.folder, self.id, self.kind = folder, repo_id, kind

    def commit(self, revision: str) -> str | None:
        """The commit a branch/ref names, or the revision itself when it is a snapshot's commit."""
        ref = self.folder / "refs" / revision
        if ref.is_file():
            return ref.read_text().strip()
        if (self.folder / "snapshots" / revision).is_dir():
            return revision
        return None

    def files(self, commit: str) -> list[Path]:
        root = self.folder / "snapshots" / commit
        return sorted(p for p in root.rglob("*") if p.is_file())


def blob_id(path: Path) -> str:
    """git's blob hash of the file (what the Hub reports as `oid` for non-LFS files)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class ReplayHub:
    """`with ReplayHub(cache_dir) as url:` serves the cache at `url` until the block ends.

    An empty `cache_dir` is a Hub with no repos, for upload tests. `token`: the one write token the upload
    routes accept (others get 401; None: any Bearer token). `fail`: {"create" | "preupload" | "commit": status}
    answers that upload step with that HTTP error, as a Hub that refuses or breaks would."""

    def __init__(self, cache_dir: Path, token: str | None = None, fail: dict[str, int] | None = None):
        self.cache_dir = Path(cache_dir)
        self.token, self.fail = token, dict(fail or {})
        self.requests: list[str] = []  # "METHOD path -> status", for tests and debugging
        self.created: dict[str, dict] = {}  # repo id -> the create request's JSON body (visibility...)
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "description", "paths", "oid"} per commit
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

            def do_POST(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routing

    def repo(self, kind: str, repo_id: str) -> Repo | None:
        folder = self.cache_dir / f"{kind}s--{repo_id.replace('/', '--')}"
        return Repo(folder, repo_id, kind) if folder.is_dir() else None

    def _handle(self, h: BaseHTTPRequestHandler, head: bool):
        url = urlsplit(h.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        try:
            if parts[:1] == ["api"] and parts[1:] in (["repos", "create"], ["validate-yaml"]):
                status = self._upload_api(h, parts[1])
            elif parts[:1] == ["api"] and len(parts) >= 3 and parts[1] in ("models", "datasets"):
                status = self._api(h, parts[1][:-1], parts[2:], query, head)
            elif "resolve" in parts:
                kind = "dataset" if parts[0] == "datasets" else "model"
                rest = parts[1:] if kind == "dataset" else parts
                i = rest.index("resolve")
                status = self._resolve(h, kind, "/".join(rest[:i]), rest[i + 1:], head)
            else:
                status = self._error(h, 404, "RepoNotFound", "unknown route")
        except BrokenPipeError:
            status = 499
        self.requests.append(f"{h.command} {h.path} -> {status}")

    def _split_revision(self, kind: str, rest: list[str]) -> tuple[Repo | None, str, list[str]]:
        """`ORG/NAME/<verb>/REV/path...` or `NAME/<verb>/...`: the repo id has one or two segments."""
        for n in (2, 1):
            repo = self.repo(kind, "/".join(rest[:n])) if len(rest) >= n else None
            if repo is not None:
                return repo, rest[n] if len(rest) > n else "", rest[n + 1:]
        return None, "", []

    def _api(self, h, kind: str, rest: list[str], query: dict, head: bool) -> int:
        repo, verb, tail = self._split_revision(kind, rest)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"{kind} {'/'.join(rest[:2])} not found")
        if verb == "":
            return self._info(h, repo, "main")
        if verb == "revision" and tail:
            return self._info(h, repo, "/".join(tail))
        if verb == "tree" and tail:
            revision, path = tail[0], "/".join(tail[1:])
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._tree(h, repo, revision, path, recursive)
        if verb == "paths-info" and tail:
            length = int(h.headers.get("Content-Length") or 0)
            form = parse_qs(h.rfile.read(length).decode()) if length else {}
            return self._paths_info(h, repo, tail[0], form.get("paths", []))
        if verb in ("preupload", "commit") and tail and h.command == "POST":
            return self._upload_api(h, verb, repo, "/".join(tail))
        return self._error(h, 404, "EntryNotFound", f"unsupported API call {verb}")

    # ------------------------------------------------------------------ endpoints

    def _info(self, h, repo: Repo, revision: str) -> int:
        commit = repo.commit(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {revision} not found in {repo.id}")
        root = repo.folder / "snapshots" / commit
        body = {"id": repo.id, "_id": repo.id, "sha": commit, "private": False, "disabled": False, "gated": False,
                "siblings": [{"rfilename": p.relative_to(root).as_posix()} for p in repo.files(commit)],
                "tags": [], "downloads": 0, "likes": 0}
        if repo.kind == "model":
            body["modelId"] = repo.id
        return self._json(h, body)

    def _entries(self, repo: Repo, commit: str, paths: list[Path]) -> list[dict]:
        root = repo.folder / "snapshots" / commit
        out = []
        for p in paths:
            rel = p.relative_to(root).as_posix()
            if p.is_dir():
                out.append({"type": "directory", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest()})
            else:
                out.append({"type": "file", "path": rel, "size": p.stat().st_size, "oid": blob_id(p)})
        return out

    def _tree(self, h, repo: Repo, revision: str, path: str, recursive: bool) -> int:
        commit = repo.commit(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {revision} not found in {repo.id}")
        base = repo.folder / "snapshots" / commit / path
        if not base.is_dir():
            return self._error(h, 404, "EntryNotFound", f"{path} not found in {repo.id}@{revision}")
        children = sorted(base.rglob("*") if recursive else base.iterdir())
        return self._json(h, self._entries(repo, commit, children))

    def _paths_info(self, h, repo: Repo, revision: str, paths: list[str]) -> int:
        commit = repo.commit(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {revision} not found in {repo.id}")
        root = repo.folder / "snapshots" / commit
        found = [root / p for p in paths if (root / p).exists()]
        return self._json(h, self._entries(repo, commit, found))

    def _resolve(self, h, kind: str, repo_id: str, rest: list[str], head: bool) -> int:
        repo = self.repo(kind, repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"{kind} {repo_id} not found")
        if not rest:
            return self._error(h, 404, "EntryNotFound", "no file named")
        revision, filename = rest[0], "/".join(rest[1:])
        commit = repo.commit(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {revision} not found in {repo.id}")
        path = repo.folder / "snapshots" / commit / filename
        if not path.is_file():
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("X-Error-Message", f"{filename} does not exist in {repo.id}@{revision}")
            h.send_header("X-Repo-Commit", commit)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return 404
        data = path.read_bytes()
        h.send_response(200)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        if not head:
            h.wfile.write(data)
        return 200

    # ------------------------------------------------------------------ uploads

    def _upload_api(self, h, step: str, repo: Repo | None = None, revision: str = "main") -> int:
        """create / validate-yaml / preupload / commit, after the token check and any injected failure."""
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        auth = h.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or (self.token is not None and auth != f"Bearer {self.token}"):
            return self._error(h, 401, "Unauthorized", "Invalid credentials in Authorization header")
        key = "create" if step == "repos" else step
        if key in self.fail:
            return self._error(h, self.fail[key], "Injected", f"{key} failed (replay hub: injected {self.fail[key]})")
        if step == "validate-yaml":
            return self._json(h, {"errors": [], "warnings": []})
        if step == "repos":
            return self._create(h, json.loads(body))
        assert repo is not None
        if step == "preupload":
            files = json.loads(body)["files"]
            root = self._snapshot(repo, revision)
            return self._json(h, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": blob_id(root / f["path"]) if root and (root / f["path"]).is_file() else None}
                for f in files]})
        return self._commit(h, repo, revision, [json.loads(line) for line in body.splitlines() if line.strip()])

    def _snapshot(self, repo: Repo, revision: str) -> Path | None:
        commit = repo.commit(revision)
        return repo.folder / "snapshots" / commit if commit else None

    def _create(self, h, payload: dict) -> int:
        kind = payload.get("type") or "model"
        repo_id = "/".join(filter(None, [payload.get("organization"), payload["name"]]))
        url = f"{self.url}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
        folder = self.cache_dir / f"{kind}s--{repo_id.replace('/', '--')}"
        if folder.is_dir():  # the Hub's 409 carries the url too (create_repo(exist_ok=True) reads it)
            return self._error(h, 409, "Conflict", f"You already created this {kind} repo: {repo_id}", url=url)
        (folder / "refs").mkdir(parents=True)
        (folder / "snapshots").mkdir()
        self.created[repo_id] = payload
        return self._json(h, {"url": url, "name": repo_id, "id": repo_id})

    def _commit(self, h, repo: Repo, revision: str, lines: list[dict]) -> int:
        """Apply the NDJSON commit to a copy of the revision's snapshot: a new snapshot and ref."""
        header = next(line["value"] for line in lines if line["key"] == "header")
        unsupported = [line["key"] for line in lines if line["key"] not in ("header", "file", "deletedFile")]
        if unsupported:
            return self._error(h, 400, "BadRequest", f"replay hub: {unsupported[0]} is not supported")
        files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                 for line in lines if line["key"] == "file"}
        oid = hashlib.sha1(json.dumps([repo.id, revision, header, len(self.commits)]).encode()
                           + b"".join(files.values())).hexdigest()
        new = repo.folder / "snapshots" / oid
        old = self._snapshot(repo, revision)
        if old is not None:
            shutil.copytree(old, new)
        for line in lines:
            if line["key"] == "deletedFile":
                (new / line["value"]["path"]).unlink(missing_ok=True)
        for path, data in files.items():
            (new / path).parent.mkdir(parents=True, exist_ok=True)
            (new / path).write_bytes(data)
        new.mkdir(parents=True, exist_ok=True)
        (repo.folder / "refs" / revision).write_text(oid)
        self.commits.append({"repo": repo.id, "revision": revision, "summary": header.get("summary"),
                             "description": header.get("description"), "paths": sorted(files), "oid": oid})
        prefix = f"{self.url}/{'datasets/' if repo.kind == 'dataset' else ''}{repo.id}"
        return self._json(h, {"commitUrl": f"{prefix}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})

    # ------------------------------------------------------------------ responses

    @staticmethod
    def _json(h, body) -> int:
        data = json.dumps(body).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        return 200

    @staticmethod
    def _error(h, status: int, code: str, message: str, **extra) -> int:
        data = json.dumps({"error": message, **extra}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        return status
