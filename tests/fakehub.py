"""An in-process fake Hugging Face Hub on 127.0.0.1 for tests that run the real huggingface_hub client
over HTTP (huggingface_hub 2.x speaks httpx2, so respx/responses cannot intercept it).

Routes (what huggingface_hub 2.4 uses for create_repo, upload_folder, snapshot_download, whoami):
  POST /api/repos/create                          409 when it exists (the client's exist_ok handles it)
  GET  /api/whoami-v2
  POST /api/validate-yaml                         model-card metadata check before upload
  POST /api/models/{repo}/branch/{branch}         create_branch
  POST /api/models/{repo}/preupload/{rev}         every file "regular" (inline base64), never LFS/xet
  POST /api/models/{repo}/commit/{rev}            NDJSON: header + file lines
  GET  /api/models/{repo}/revision/{rev}          repo_info: sha + siblings
  GET  /api/models/{repo}/tree/{rev}              list_repo_tree
  HEAD/GET /{repo}/resolve/{rev}/{path}           X-Repo-Commit, ETag, Content-Length
Auth: writes need the one valid token (401 otherwise); private repos need it for reads too.
Faults: `plain_errors = True` drops X-Error-Code/X-Error-Message (a proxy or mirror answering a bare 404);
`force_status = 500` (or any code) answers every request with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest

TOKEN = "hf_fakeValidToken1234567890abcdef"


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    shas: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.plain_errors = False
        self.force_status: int | None = None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean (and free of headers)
                pass

            def _send(self, code: int, body: bytes | dict | list = b"", headers: dict | None = None, head: bool = False):
                data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if isinstance(body, (dict, list)):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _error(self, code: int, kind: str, msg: str, head: bool = False):
                headers = {} if hub.plain_errors else {"X-Error-Code": kind, "X-Error-Message": msg}
                self._send(code, {"error": msg}, headers, head=head)

            def _authed(self) -> bool:
                return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _repo(self, repo_id: str, write: bool, head: bool = False) -> Repo | None:
                repo = hub.repos.get(repo_id)
                if write and not self._authed():
                    self._error(401, "Unauthorized", "Invalid credentials in Authorization header", head)
                    return None
                if repo is None or (repo.private and not self._authed()):
                    self._error(404, "RepoNotFound", "Repository not found", head)
                    return None
                return repo

            def do_GET(self):
                self._route("GET")

            def do_HEAD(self):
                self._route("HEAD")

            def do_POST(self):
                self._route("POST")

            def _route(self, method: str):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{method} {path}")
                with hub.lock:
                    if hub.force_status is not None:
                        self._body()
                        return self._error(hub.force_status, "Forced", "forced failure", method == "HEAD")
                    self._dispatch(method, path)

            def _dispatch(self, method: str, path: str):
                head = method == "HEAD"
                if path == "/api/whoami-v2":
                    if not self._authed():
                        return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                    return self._send(200, {"type": "user", "name": "tester", "auth": {"accessToken": {"role": "write"}}})
                if path == "/api/validate-yaml" and method == "POST":  # the client checks model-card metadata
                    self._body()
                    return self._send(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create" and method == "POST":
                    body = json.loads(self._body() or b"{}")
                    if not self._authed():
                        return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                    repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
                    if repo_id in hub.repos:
                        return self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
                    hub.repos[repo_id] = Repo(private=bool(body.get("private")) or body.get("visibility") == "private")
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(branch|preupload|commit|revision|tree)/(.+?)(/.*)?", path)
                if m:
                    repo_id, action, rev = m.group(1), m.group(2), m.group(3)
                    repo = self._repo(repo_id, write=method == "POST")
                    if repo is None:
                        return None
                    if action == "branch":
                        self._body()
                        repo.branches.setdefault(rev, dict(repo.branches["main"]))
                        repo.shas.setdefault(rev, repo.shas["main"])
                        return self._send(200, {})
                    if action == "preupload":
                        files = json.loads(self._body())["files"]
                        return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                    if action == "commit":
                        files = repo.branches.setdefault(rev, {})
                        for line in self._body().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                            elif item["key"] == "deletedFile":
                                files.pop(item["value"]["path"], None)
                        sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
                        repo.shas[rev] = sha
                        return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})
                    files = self._files(repo, rev)
                    if files is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                    if action == "revision":
                        return self._send(200, {"id": repo_id, "modelId": repo_id, "sha": self._sha(repo, rev), "private": repo.private,
                                                "siblings": [{"rfilename": p} for p in sorted(files)]})
                    return self._send(200, [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                            for p, d in sorted(files.items())])
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m and method in ("GET", "HEAD"):
                    repo_id, rev, name = m.groups()
                    repo = self._repo(repo_id, write=False, head=head)
                    if repo is None:
                        return None
                    files = self._files(repo, rev)
                    if files is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                    if name not in files:
                        return self._error(404, "EntryNotFound", f"{name} does not exist", head)
                    data = files[name]
                    etag = f'"{hashlib.sha1(data).hexdigest()}"'
                    return self._send(200, data, {"X-Repo-Commit": self._sha(repo, rev), "ETag": etag,
                                                  "Content-Type": "application/octet-stream"}, head=head)
                return self._error(404, "NotFound", f"no route for {method} {path}", head)

            def _sha(self, repo: Repo, rev: str) -> str:
                return repo.shas.get(rev) or rev

            def _files(self, repo: Repo, rev: str) -> dict[str, bytes] | None:
                if rev in repo.branches:
                    return repo.branches[rev]
                for branch, sha in repo.shas.items():
                    if sha == rev:
                        return repo.branches[branch]
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.token = TOKEN
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def point_client_at(monkeypatch, endpoint: str) -> None:
    """huggingface_hub reads HF_ENDPOINT once at import into module constants: patch those too."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    hub = FakeHub()
    point_client_at(monkeypatch, hub.url)
    cache = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setattr(constants, "HF_HOME", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield hub
    hub.close()
