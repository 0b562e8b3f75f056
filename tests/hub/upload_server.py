"""A test double of the Hugging Face Hub's *upload* endpoints. For tests only; not part of polyhead.

No self-hostable Hub with an upload API exists, so the hub tests run the real
``huggingface_hub`` client against this small stdlib server. It implements only
what the client calls to push, as huggingface_hub 2.x sends it:

* ``POST /api/repos/create``                         create a repo (409 when it exists)
* ``POST /api/models/{org}/{name}/branch/{branch}``   create a branch from ``main``
* ``POST /api/validate-yaml``                         check a card's YAML header
* ``POST /api/models/{org}/{name}/preupload/{rev}``   answers ``uploadMode: "regular"`` for every file, so
  the client sends the bytes base64-encoded inside the commit: no LFS, no Xet
* ``POST /api/models/{org}/{name}/commit/{rev}``      the NDJSON commit
* ``HEAD|GET /{org}/{name}/resolve/{rev}/{path}``     read a file back (transformers' ``push_to_hub``
  loads the existing README.md)

Every commit is a real git commit, made with the git CLI in a bare repo at
``<root>/models/<org>/<name>`` (with the Hub's initial ``.gitattributes`` commit),
which is the layout olah serves as local mirrors: what is pushed here is pulled
back through olah.

Failure knobs: ``require_token`` (401 without ``Authorization: Bearer <token>``)
and ``fail_commit`` (``"close"`` drops the connection after reading the commit,
an int answers that HTTP status). The server never stores request headers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

__all__ = ["UploadServer", "init_repo", "commit_files", "branch_head"]

_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.onnx filter=lfs diff=lfs merge=lfs -text\n"
_IDENTITY = {"GIT_AUTHOR_NAME": "hub-test-double", "GIT_AUTHOR_EMAIL": "hub@127.0.0.1",
             "GIT_COMMITTER_NAME": "hub-test-double", "GIT_COMMITTER_EMAIL": "hub@127.0.0.1"}


def _git(repo: Path, *args: str, data: bytes | None = None, env: dict | None = None) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], input=data, capture_output=True, check=True,
                          env={**os.environ, **_IDENTITY, **(env or {})})
    return done.stdout.decode().strip()


def branch_head(repo: Path, branch: str) -> str | None:
    """The commit a branch points at, or ``None``."""
    try:
        return _git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}")
    except subprocess.CalledProcessError:
        return None


def commit_files(repo: Path, branch: str, files: dict[str, bytes], message: str) -> str:
    """Commit ``{path: bytes}`` on top of ``branch`` (created when missing) with plumbing; returns the commit."""
    parent = branch_head(repo, branch)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if parent:
            _git(repo, "read-tree", parent, env=env)
        for path, content in files.items():
            blob = _git(repo, "hash-object", "-w", "--stdin", data=content, env=env)
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = _git(repo, "write-tree", env=env)
        commit = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=env)
        _git(repo, "update-ref", f"refs/heads/{branch}", commit, parent or "0" * 40)
    return commit


def init_repo(path: Path) -> Path:
    """A bare repo with the Hub's initial commit (``.gitattributes``), like a freshly created Hub repo."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True, capture_output=True)
    commit_files(path, "main", {".gitattributes": _GITATTRIBUTES}, "initial commit")
    return path


class UploadServer:
    """The server, on ``127.0.0.1`` and a free port, writing into ``<root>/models``.

    Attributes:
        url: the endpoint to give huggingface_hub (``HF_ENDPOINT``).
        require_token: when set, every request needs ``Authorization: Bearer <require_token>``.
        fail_commit: ``None``, ``"close"`` or an HTTP status for the next commits.
        private: ``{repo_id: bool}`` as asked at creation.
        log: ``(method, path, status)`` of every request.
    """

    def __init__(self, root: Path, *, require_token: str | None = None) -> None:
        self.root = Path(root)
        self.require_token = require_token
        self.fail_commit: str | int | None = None
        self.private: dict[str, bool] = {}
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def repo(self, repo_id: str) -> Path:
        return self.root / "models" / repo_id

    def __enter__(self) -> UploadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


_REPO = r"/api/models/(?P<repo>[^/]+/[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def hub(self) -> UploadServer:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:  # quiet; the test reads UploadServer.log
        pass

    # -- responses

    def _send(self, status: int, body: dict | bytes | None = None, headers: dict | None = None, head: bool = False) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        self.hub.log.append((self.command, self.path, status))

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
        self._send(status, {"error": message}, headers, head=head)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self, head: bool = False) -> bool:
        expected = self.hub.require_token
        if expected is None:
            return True
        given = self.headers.get("Authorization")
        if given is None:
            self._error(401, None, "Invalid username or password.", head)
        elif given != f"Bearer {expected}":
            self._error(401, None, "Invalid credentials in Authorization header", head)
        else:
            return True
        return False

    def _repo_or_404(self, repo_id: str, head: bool = False) -> Path | None:
        path = self.hub.repo(repo_id)
        if not path.is_dir():
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            return None
        return path

    # -- routes

    def do_POST(self) -> None:
        body = self._body()
        if not self._authorized():
            return
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            return self._create(json.loads(body))
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body))
        for pattern, route in ((_REPO + r"/preupload/(?P<rev>[^/]+)$", self._preupload),
                               (_REPO + r"/commit/(?P<rev>[^/]+)$", self._commit),
                               (_REPO + r"/branch/(?P<rev>[^/]+)$", self._branch)):
            if match := re.match(pattern, path):
                return route(match["repo"], match["rev"], body)
        self._error(404, None, f"{path} is not implemented by the upload test double")

    def do_HEAD(self) -> None:
        self._resolve(head=True)

    def do_GET(self) -> None:
        self._resolve(head=False)

    def _create(self, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else f"user/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if self.hub.repo(repo_id).exists():
                return self._send(409, {"error": "You already created this model repo", "url": url})
            init_repo(self.hub.repo(repo_id))
            self.hub.private[repo_id] = payload.get("visibility") == "private"
        self._send(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict) -> None:
        match = re.match(r"\s*---\n(.*?)\n---", payload.get("content", ""), flags=re.S)
        try:
            header = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            return self._send(400, {"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []})
        if not isinstance(header, dict):
            return self._send(400, {"errors": [{"message": "The metadata must be a mapping"}], "warnings": []})
        self._send(200, {"errors": [], "warnings": []})

    def _preupload(self, repo_id: str, rev: str, body: bytes) -> None:
        if self._repo_or_404(repo_id):
            files = json.loads(body)["files"]
            self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                       for f in files], "commitOid": None})

    def _branch(self, repo_id: str, branch: str, body: bytes) -> None:
        if (repo := self._repo_or_404(repo_id)) is None:
            return
        with self.hub.lock:
            if branch_head(repo, branch):
                return self._error(409, None, f"Branch {branch} already exists")
            start = (json.loads(body) if body else {}).get("startingPoint") or branch_head(repo, "main")
            _git(repo, "update-ref", f"refs/heads/{branch}", start)
        self._send(200, {})

    def _commit(self, repo_id: str, rev: str, body: bytes) -> None:
        if (repo := self._repo_or_404(repo_id)) is None:
            return
        if self.hub.fail_commit == "close":  # the network drops mid-push: no response at all
            self.close_connection = True
            self.hub.log.append((self.command, self.path, 0))
            return
        if isinstance(self.hub.fail_commit, int):
            return self._error(self.hub.fail_commit, None, "Internal Error - We're working hard to fix this as soon as possible!")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        files: dict[str, bytes] = {}
        for item in lines:
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return self._error(400, None, f"{item['key']} operations are not implemented by the upload test double")
        with self.hub.lock:
            if branch_head(repo, rev) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
            commit = commit_files(repo, rev, files, message)
        self._send(200, {"success": True, "commitOid": commit, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{commit}",
                         "hookOutput": ""})

    def _resolve(self, head: bool) -> None:
        if not self._authorized(head):
            return
        match = re.match(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self.path.split("?")[0])
        if match is None:
            return self._error(404, None, f"{self.path} is not implemented by the upload test double", head)
        if (repo := self._repo_or_404(match["repo"], head)) is None:
            return
        try:
            commit = _git(repo, "rev-parse", "--verify", "-q", f"{match['rev']}^{{commit}}")
        except subprocess.CalledProcessError:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}", head)
        try:
            blob = _git(repo, "rev-parse", "--verify", "-q", f"{commit}:{match['file']}")
        except subprocess.CalledProcessError:
            return self._error(404, "EntryNotFound", f"{match['file']} does not exist on \"{match['rev']}\"", head)
        data = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", blob], capture_output=True, check=True).stdout
        self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{blob}"', "Content-Type": "application/octet-stream"}, head=head)
