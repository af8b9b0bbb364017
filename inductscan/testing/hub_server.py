"""A small Hugging Face Hub on 127.0.0.1, for tests and benchmarks: real HTTP, injectable faults.

It serves files in the Hub's URL layout and with the headers huggingface_hub reads:

- ``HEAD/GET /{repo}/resolve/{revision}/{file}``: a small (git) file answers 200 with ``ETag``,
  ``Content-Length`` and ``X-Repo-Commit``; a large (LFS) file answers 302 to the CDN with
  ``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, as the Hub does. A
  missing revision is 404 with ``X-Error-Code: RevisionNotFound``, a missing file 404 with
  ``X-Error-Code: EntryNotFound``.
- ``GET /api/models/{repo}/refs``: the repo's branches, in the JSON huggingface_hub's
  ``list_repo_refs`` reads (``branches``, ``converts``, ``tags``; each ref's ``name``, ``ref``,
  ``targetCommit``): every revision served with :meth:`HubServer.add`, and none for a repo
  declared with :meth:`HubServer.add_repo`; an unknown repo is 404 ``RepoNotFound``.
- ``GET /cdn/{sha256}`` on a second port (another origin, so huggingface_hub reads the metadata
  off the 302 and does not follow it on HEAD), with ``Range`` support, so downloads can resume.

Point huggingface_hub at it with ``HF_ENDPOINT=server.endpoint``. Faults are set per file
(``server.fault(repo, revision, file, kind, times)``) and consumed one request at a time:

- ``"drop"``: the CDN closes the connection half way through the body (the client resumes).
- ``"error"``: 500 on the resolve request (HEAD or GET) ``times`` times, then success.
- ``"missing"``: 404 EntryNotFound, always.
- ``"truncate"``: the CDN sends a body shorter than announced, with a matching Content-Length.
- ``"wrong-size"``: the resolve answers announce a size one byte larger than the file, always.
- ``"corrupt"``: the CDN flips bytes (same size, wrong sha256), always.
- ``"stall"``: the CDN waits ``STALL`` seconds before answering (longer than a client timeout
  of ``HF_HUB_DOWNLOAD_TIMEOUT=1``).

``throttle`` (bytes per second, per connection) slows the CDN like a real link.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_SUFFIXES = (".bin", ".safetensors")
REFS_PREFIX, REFS_SUFFIX = "/api/models/", "/refs"
CHUNK = 64 * 1024
ALWAYS = 10**9
STALL = 3.0


@dataclass
class HostedFile:
    path: Path
    sha256: str
    git_sha1: str
    size: int

    @classmethod
    def of(cls, path: Path) -> HostedFile:
        data = Path(path).read_bytes()
        git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return cls(Path(path), hashlib.sha256(data).hexdigest(), git, len(data))


@dataclass
class HubState:
    repos: dict[tuple[str, str], dict[str, HostedFile]] = field(default_factory=dict)  # (repo, revision) -> files
    known: set[str] = field(default_factory=set)  # repos that exist, with or without branches
    faults: dict[tuple[str, str, str], list] = field(default_factory=dict)  # -> [kind, remaining]
    throttle: float | None = None  # bytes per second
    requests: Counter = field(default_factory=Counter)  # (method, path) -> count
    lock: threading.Lock = field(default_factory=threading.Lock)
    cdn: str = ""

    def take_fault(self, key: tuple[str, str, str], kinds: tuple[str, ...]) -> str | None:
        with self.lock:
            fault = self.faults.get(key)
            if fault is None or fault[0] not in kinds or fault[1] <= 0:
                return None
            fault[1] -= 1
            return fault[0]

    def blob(self, sha256: str) -> tuple[HostedFile, tuple[str, str, str]] | None:
        for (repo, revision), files in self.repos.items():
            for name, hosted in files.items():
                if hosted.sha256 == sha256:
                    return hosted, (repo, revision, name)
        return None


def commit_of(repo: str, revision: str) -> str:
    return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


class HubHandler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def _dispatch(self, *, body: bool) -> None:
        with self.state.lock:
            self.state.requests[(self.command, self.path.split("?")[0])] += 1
        path = self.path.split("?")[0]
        if path.startswith("/cdn/"):
            return self._cdn(path.removeprefix("/cdn/"), body=body)
        if path.startswith(REFS_PREFIX) and path.endswith(REFS_SUFFIX):
            return self._refs(path[len(REFS_PREFIX) : -len(REFS_SUFFIX)], body=body)
        repo, marker, rest = path.lstrip("/").partition("/resolve/")
        revision, _, name = rest.partition("/")
        if not marker or not name:
            return self._reply(404, {"X-Error-Code": "RepoNotFound"})
        files = self.state.repos.get((repo, revision))
        if files is None:
            return self._reply(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
        key = (repo, revision, name)
        commit = {"X-Repo-Commit": commit_of(repo, revision)}
        if name not in files or self.state.take_fault(key, ("missing",)):
            return self._reply(404, {"X-Error-Code": "EntryNotFound", **commit})
        if self.state.take_fault(key, ("error",)):
            return self._reply(500, {})
        hosted = files[name]
        announced = hosted.size + 1 if self.state.take_fault(key, ("wrong-size",)) else hosted.size
        if name.endswith(LFS_SUFFIXES):
            return self._reply(
                302,
                {
                    **commit,
                    "Location": f"{self.state.cdn}/cdn/{hosted.sha256}",
                    "X-Linked-Etag": f'"{hosted.sha256}"',
                    "X-Linked-Size": str(announced),
                    "ETag": f'"{hosted.git_sha1}"',
                },
            )
        headers = {**commit, "ETag": f'"{hosted.git_sha1}"', "Content-Length": str(hosted.size)}
        self._send_headers(200, headers)
        if body:
            self.wfile.write(hosted.path.read_bytes())

    def _refs(self, repo: str, *, body: bool) -> None:
        if repo not in self.state.known:
            return self._reply(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        branches = [
            {"name": revision, "ref": f"refs/heads/{revision}", "targetCommit": commit_of(repo, revision)}
            for owner, revision in self.state.repos
            if owner == repo
        ]
        data = json.dumps({"branches": branches, "converts": [], "tags": []}).encode()
        self._send_headers(200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        if body:
            self.wfile.write(data)

    def _cdn(self, sha256: str, *, body: bool) -> None:
        found = self.state.blob(sha256)
        if found is None:
            return self._reply(404, {})
        hosted, key = found
        if body and self.state.take_fault(key, ("stall",)):
            time.sleep(STALL)
        data = hosted.path.read_bytes()
        if body and self.state.take_fault(key, ("corrupt",)):
            data = bytes(byte ^ 0xFF for byte in data[:64]) + data[64:]
        start = _range_start(self.headers.get("Range"))
        if start is not None and start >= len(data):
            return self._reply(416, {"Content-Range": f"bytes */{len(data)}"})
        part = data[start or 0 :]
        status, headers = (206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}) if start else (200, {})
        fault = self.state.take_fault(key, ("drop", "truncate")) if body else None
        if fault == "truncate":
            part = part[: len(part) // 2]
        self._send_headers(status, {**headers, "Content-Length": str(len(part)), "ETag": f'"{sha256}"'})
        if not body:
            return
        if fault == "drop":
            self._stream(part[: len(part) // 2])
            self.close_connection = True
            return
        self._stream(part)

    def _stream(self, data: bytes) -> None:
        for offset in range(0, len(data), CHUNK):
            chunk = data[offset : offset + CHUNK]
            self.wfile.write(chunk)
            if self.state.throttle:
                time.sleep(len(chunk) / self.state.throttle)

    def _reply(self, status: int, headers: dict) -> None:
        self._send_headers(status, {**headers, "Content-Length": "0"})

    def _send_headers(self, status: int, headers: dict) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


def _range_start(header: str | None) -> int | None:
    if not header or not header.startswith("bytes="):
        return None
    first = header.removeprefix("bytes=").split(",")[0].split("-")[0]
    return int(first) if first else None


class HubServer:
    """The Hub (resolve) and its CDN, each on its own 127.0.0.1 port, in background threads."""

    def __init__(self, *, throttle: float | None = None) -> None:
        self.state = HubState(throttle=throttle)
        handler = type("Handler", (HubHandler,), {"state": self.state})
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
        for server in self._servers:
            server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.state.cdn = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        self._threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in self._servers]

    def add(self, repo: str, revision: str, files: dict[str, Path]) -> None:
        """Serve ``files`` (name in the repo -> file on disk) at ``repo@revision``."""
        self.state.repos[(repo, revision)] = {name: HostedFile.of(path) for name, path in files.items()}
        self.state.known.add(repo)

    def add_repo(self, repo: str) -> None:
        """A repo that exists on this Hub, with no branch until :meth:`add` serves one."""
        self.state.known.add(repo)

    def refs_requests(self, repo: str) -> int:
        """How many times the repo's branches were listed."""
        return self.state.requests[("GET", f"{REFS_PREFIX}{repo}{REFS_SUFFIX}")]

    def fault(self, repo: str, revision: str, name: str, kind: str, times: int = ALWAYS) -> None:
        self.state.faults[(repo, revision, name)] = [kind, times]

    def downloads(self, repo: str, revision: str, name: str) -> int:
        """How many CDN GETs the file's bytes took (resumes and retries included)."""
        sha256 = self.state.repos[(repo, revision)][name].sha256
        return self.state.requests[("GET", f"/cdn/{sha256}")]

    def __enter__(self) -> HubServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
