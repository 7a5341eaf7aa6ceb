"""Zoo downloads are capped by the index's declared sizes, and a stalled server is a one-line
network error (issue 16): nothing is left in the cache either way."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import xas_models.zoo as zoo_module
from xas_models import ModelError, load_pretrained
from xas_models.zoo import cache_dir


def _nothing_cached() -> bool:
    root = cache_dir()
    return not root.exists() or not any(root.rglob("model.safetensors"))


def test_a_body_larger_than_the_declared_size_is_cut_off(tiny_zoo, monkeypatch):
    index = json.loads((tiny_zoo / "index.json").read_text())
    for entry in index["models"]:
        entry["sizes"] = {name: 100 for name in entry["files"]}  # far below the real sizes
    (tiny_zoo / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("XAS_MODEL_ZOO_URL", tiny_zoo.as_uri())
    with pytest.raises(ModelError, match="more than the 100 bytes the zoo index declares"):
        load_pretrained("tiny-cuni", "0.10.0")
    assert _nothing_cached()


def test_entries_without_sizes_are_capped_too(tiny_zoo, monkeypatch):
    monkeypatch.setattr(zoo_module, "MAX_DOWNLOAD_BYTES", 100)
    monkeypatch.setenv("XAS_MODEL_ZOO_URL", tiny_zoo.as_uri())
    with pytest.raises(ModelError, match="more than the 100 bytes"):
        load_pretrained("tiny-cuni", "0.10.0")
    assert _nothing_cached()


@pytest.fixture
def stalling_server(tiny_zoo):
    """An HTTP zoo that serves the index but stalls forever inside every weights file."""
    release = threading.Event()

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            if not self.path.endswith(".safetensors"):
                return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            release.wait(600)  # until the test ends: the client must give up first

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tiny_zoo))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


def test_a_stalled_download_is_a_network_error(stalling_server, monkeypatch):
    monkeypatch.setattr(zoo_module, "DOWNLOAD_TIMEOUT_S", 1.0)
    monkeypatch.setenv("XAS_MODEL_ZOO_URL", stalling_server)
    with pytest.raises(ModelError, match="network") as info:
        load_pretrained("tiny-cuni", "0.10.0")
    assert "\n" not in str(info.value)
    assert _nothing_cached()
