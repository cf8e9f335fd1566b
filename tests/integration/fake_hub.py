"""A Hugging Face Hub stand-in on 127.0.0.1 that the real `huggingface_hub` client (2.4.0) talks to.

It serves exactly the requests the client makes, as read from its source:
- snapshot_download with a commit sha: GET /api/models/{repo}/tree/{sha}?recursive=True (Link-header paging),
  then per file HEAD /{repo}/resolve/{sha}/{path} (X-Repo-Commit, ETag, Content-Length; large files answer
  302 to a "CDN" host with X-Linked-Etag/X-Linked-Size, like the real Hub's LFS files) and a GET of the content;
- repo_info: GET /api/models/{repo}/revision/{rev};
- push (create_repo + upload_folder): POST /api/repos/create (409 when it exists), POST .../preupload/{rev}
  (every file "regular") and POST .../commit/{rev} (NDJSON with inline base64 files).
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) as the client expects.
`fail()` makes a repo misbehave (404, 500, hang, truncated body); `requests` records every request.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_THRESHOLD = 100_000  # bytes; bigger files are served like the Hub's LFS files (redirect to a CDN)
FAILURE_MODES = ("404", "500", "timeout", "truncated")
_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?"), "repo_info"),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
    ("HEAD", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("GET", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("GET", re.compile(r"/cdn/(?P<repo>[\w.-]+/[\w.-]+)/(?P<rev>[0-9a-f]{40})/(?P<path>.+)"), "cdn"),
]


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]


@dataclass
class Failure:
    mode: str
    filename: str | None  # None: every request for the repo; else only downloads of that file's content


@dataclass
class FakeHub:
    page_size: int = 1000  # tree entries per page, as the Hub caps them
    hang_seconds: float = 30.0  # how long "timeout" holds a request (ended early by stop())
    repos: dict[str, list[Commit]] = field(default_factory=dict)  # history of main, newest last
    failures: dict[str, Failure] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)  # Authorization headers seen

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._counter = itertools.count()
        self._server = None

    # -- control -----------------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_repo(self, repo_id: str) -> bool:
        """True when created, False when it already existed."""
        with self._lock:
            if repo_id in self.repos:
                return False
            self.repos[repo_id] = []
            return True

    def add_commit(self, repo_id: str, changes: dict[str, bytes | None]) -> str:
        """Commit on main (None deletes a file); returns the new commit sha."""
        self.create_repo(repo_id)
        with self._lock:
            history = self.repos[repo_id]
            files = dict(history[-1].files) if history else {}
            for path, content in changes.items():
                if content is None:
                    files.pop(path, None)
                else:
                    files[path] = content
            blobs = ",".join(f"{path}={git_blob_sha1(content)}" for path, content in sorted(files.items()))
            commit = Commit(hashlib.sha1(f"{repo_id}:{next(self._counter)}:{blobs}".encode()).hexdigest(), files)
            history.append(commit)
            return commit.sha

    def fail(self, repo_id: str, mode: str, filename: str | None = None) -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}")
        if mode == "truncated" and filename is None:
            raise ValueError("a truncated body needs the filename to cut")
        self.failures[repo_id] = Failure(mode, filename)

    def find_commit(self, repo_id: str, revision: str) -> Commit | None:
        history = self.repos.get(repo_id, [])
        if revision == "main":
            return history[-1] if history else None
        return next((c for c in history if c.sha == revision), None)

    def _record(self, method: str, path: str, authorization: str | None) -> None:
        with self._lock:
            self.requests.append((method, path))
            if authorization:
                self.authorizations.add(authorization)


def _handler_for(hub: FakeHub):
    class Handler(_Handler):
        pass

    Handler.hub = hub
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    # -- plumbing --------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self.hub._record(method, self.path, self.headers.get("Authorization"))
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        for route_method, pattern, name in ROUTES:
            match = pattern.fullmatch(split.path)
            if route_method == method and match:
                args = {k: unquote(v) if v else v for k, v in match.groupdict().items()}
                if self._misbehave(args.get("repo"), name, args.get("path"), method):
                    return
                getattr(self, f"_{name}")(body=body, **args)
                return
        self._error(404, "NotFound", f"no route for {method} {split.path}")

    def _misbehave(self, repo_id, route, path, method) -> bool:
        failure = self.hub.failures.get(repo_id)
        if failure is None:
            return False
        if failure.filename is not None and not (path == failure.filename and method == "GET"):
            return False
        if failure.mode == "404":
            self._error(404, "RepoNotFound" if failure.filename is None else "EntryNotFound", "told to fail")
        elif failure.mode == "500":
            self._error(500, None, "Internal Error (told to fail)", {"Retry-After": "0"})
        elif failure.mode == "timeout":
            self.hub._stopping.wait(self.hub.hang_seconds)
            # A final answer the client does not retry, so its abandoned download thread ends here.
            self._error(404, "RepoNotFound", "gave up hanging")
        elif failure.mode == "truncated":
            return False  # the content handlers cut the body
        return True

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, headers: dict | None = None):
        headers = dict(headers or {})
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(),
                   {"Content-Type": "application/json", **headers}, head_only=self.command == "HEAD")

    def _commit_or_error(self, repo_id: str, revision: str) -> Commit | None:
        if repo_id not in self.hub.repos:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        commit = self.hub.find_commit(repo_id, revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    # -- routes --------------------------------------------------------------------------------------------
    def _create_repo(self, body: bytes):
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.hub.url}/{repo_id}"
        if self.hub.create_repo(repo_id):
            self._json({"url": url, "name": repo_id})
        else:
            self._json({"error": "You already created this model repo", "url": url}, status=409)

    def _validate_yaml(self, body: bytes):
        self._json({"errors": [], "warnings": []})

    def _preupload(self, repo, rev, body: bytes):
        if repo not in self.hub.repos:
            return self._error(404, "RepoNotFound", f"Repository {repo} not found")
        commit = self.hub.find_commit(repo, rev)  # None for a repo without commits yet
        files = commit.files if commit else {}
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                   "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None}
                  for f in json.loads(body)["files"]]
        self._json({"files": answer})

    def _commit(self, repo, rev, body: bytes):
        if repo not in self.hub.repos:
            return self._error(404, "RepoNotFound", f"Repository {repo} not found")
        if rev != "main":
            return self._error(400, None, "the fake Hub only commits to main")
        changes = {}
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                changes[value["path"]] = None
            elif item["key"] != "header":
                return self._error(400, None, f"the fake Hub does not support {item['key']} operations")
        sha = self.hub.add_commit(repo, changes)
        self._json({"commitUrl": f"{self.hub.url}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    def _repo_info(self, repo, rev=None, body=b""):
        commit = self._commit_or_error(repo, rev or "main")
        if commit:
            self._json({"id": repo, "modelId": repo, "sha": commit.sha, "private": False,
                        "siblings": [{"rfilename": path} for path in sorted(commit.files)]})

    def _tree(self, repo, rev, path=None, body=b""):
        commit = self._commit_or_error(repo, rev)
        if commit is None:
            return
        recursive = self.query.get("recursive", "False").lower() == "true"
        prefix = f"{path.strip('/')}/" if path else ""
        entries, folders = [], set()
        for file_path, content in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entry = {"type": "file", "path": file_path, "size": len(content), "oid": git_blob_sha1(content)}
            if len(content) > LFS_THRESHOLD:
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "path": folder, "oid": "0" * 40, "size": 0} for folder in sorted(folders)]
        start = int(self.query.get("cursor", 0))
        page = entries[start:start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            query = f"recursive={self.query.get('recursive', 'False')}&cursor={start + self.hub.page_size}"
            headers["Link"] = f'<{self.hub.url}{urlsplit(self.path).path}?{query}>; rel="next"'
        self._json(page, headers=headers)

    def _resolve(self, repo, rev, path, body=b""):
        commit = self._commit_or_error(repo, rev)
        if commit is None:
            return
        content = commit.files.get(path)
        if content is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {commit.sha}",
                               {"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{git_blob_sha1(content)}"'}
        if len(content) > LFS_THRESHOLD:
            # Like the Hub: LFS files redirect to a CDN on another host, and the redirect carries the metadata.
            cdn = f"http://localhost:{self.hub.port}/cdn/{repo}/{commit.sha}/{quote(path)}"
            headers.update({"Location": cdn, "X-Linked-Etag": f'"{hashlib.sha256(content).hexdigest()}"',
                            "X-Linked-Size": str(len(content))})
            return self._send(302, b"", headers)
        self._content(repo, path, content, headers)

    def _cdn(self, repo, rev, path, body=b""):
        commit = self.hub.find_commit(repo, rev)
        if commit is None or path not in commit.files:
            return self._send(404, b"NoSuchKey", head_only=self.command == "HEAD")
        content = commit.files[path]
        self._content(repo, path, content, {"ETag": f'"{hashlib.sha256(content).hexdigest()}"'})

    def _content(self, repo, path, content: bytes, headers: dict):
        failure = self.hub.failures.get(repo)
        if failure and failure.mode == "truncated" and failure.filename == path and self.command == "GET":
            content = content[: len(content) // 2]  # a cut file, served as if it were whole
        self._send(200, content, {"Content-Type": "application/octet-stream", **headers},
                   head_only=self.command == "HEAD")
