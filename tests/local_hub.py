"""A stand-in for the Hugging Face Hub: a real HTTP server on 127.0.0.1 that speaks the part of the Hub's
file-download protocol ``huggingface_hub.hf_hub_download`` uses (HEAD for the commit/etag/size headers,
then GET of ``/{repo}/resolve/{revision}/{file}``), so the library's download path runs unchanged into a
real ``huggingface_hub`` cache. No network."""
from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalHub:
    """Files served at ``{url}/{repo}/resolve/{revision}/{filename}``; ``gets`` counts downloads."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], Path] = {}
        self.gets: Counter[tuple[str, str]] = Counter()
        self.requests = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _lookup(self):
                hub.requests += 1
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if "resolve" not in parts:
                    return None
                i = parts.index("resolve")
                key = ("/".join(parts[:i]), "/".join(parts[i + 2:]))
                return key if key in hub.files else None

            def _headers(self, key):
                path = hub.files[key]
                data_sha = hashlib.sha256(path.read_bytes()).hexdigest()
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{data_sha}"')
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def do_HEAD(self):
                key = self._lookup()
                if key is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(key)

            def do_GET(self):
                key = self._lookup()
                if key is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                hub.gets[key] += 1
                self._headers(key)
                self.wfile.write(hub.files[key].read_bytes())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo: str, filename: str, path: Path) -> None:
        self.files[(repo, filename)] = Path(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """The stand-in Hub, with ``HF_ENDPOINT`` pointed at it and a fresh ``HF_HUB_CACHE``; online mode."""
    hub = LocalHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("METATRANSFORMER_HOME", str(tmp_path / "manual"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield hub
    hub.close()
