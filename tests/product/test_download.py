"""The corpus download path, against a real HTTP server on 127.0.0.1."""
import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import corpus_path
from tiny_transformer.data import SHAKESPEARE_SHA256, CorpusNotFoundError, resolve_corpus


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    "Serve a folder holding the corpus; yields (base_url, request_log)."
    served = tmp_path / "served"
    served.mkdir()
    (served / "tinyshakespeare.txt").write_bytes(corpus_path().read_bytes())
    (served / "tampered.txt").write_bytes(corpus_path().read_bytes() + b"one extra line\n")
    requests = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_caches(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TT_DATA", raising=False)
    base, requests = server
    cache = tmp_path / "cache"
    path = resolve_corpus(cache_dir=cache, url=f"{base}/tinyshakespeare.txt")
    assert path == cache / "tinyshakespeare.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
    assert requests == ["/tinyshakespeare.txt"]
    # The second call is served from the cache: no new request.
    assert resolve_corpus(cache_dir=cache, url=f"{base}/tinyshakespeare.txt") == path
    assert requests == ["/tinyshakespeare.txt"]
    assert sorted(p.name for p in cache.iterdir()) == ["tinyshakespeare.txt"]


def test_wrong_checksum_is_refused_and_nothing_cached(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TT_DATA", raising=False)
    base, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="Checksum mismatch") as info:
        resolve_corpus(cache_dir=cache, url=f"{base}/tampered.txt")
    assert SHAKESPEARE_SHA256 in str(info.value)
    assert list(cache.iterdir()) == []  # no cached file, no leftover partial download


def test_corrupt_cache_is_replaced(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TT_DATA", raising=False)
    base, requests = server
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tinyshakespeare.txt").write_text("not shakespeare")
    path = resolve_corpus(cache_dir=cache, url=f"{base}/tinyshakespeare.txt")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
    assert requests == ["/tinyshakespeare.txt"]


def test_missing_file_on_server_says_how_to_provide_it(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TT_DATA", raising=False)
    base, _ = server
    with pytest.raises(CorpusNotFoundError, match="TT_DATA") as info:
        resolve_corpus(cache_dir=tmp_path / "cache", url=f"{base}/nope.txt")
    assert "404" in str(info.value)


def test_tt_data_takes_precedence_over_cache_and_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA", str(corpus_path()))
    assert resolve_corpus(cache_dir=tmp_path, url="http://127.0.0.1:9/unreachable") == corpus_path()
    monkeypatch.setenv("TT_DATA", str(tmp_path / "missing.txt"))
    with pytest.raises(CorpusNotFoundError, match="TT_DATA points to"):
        resolve_corpus(cache_dir=tmp_path)
