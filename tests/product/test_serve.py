"""`tt-serve` over real HTTP on 127.0.0.1, serving files that `tt-export` wrote."""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import brief_checkpoint, run
from serve_helpers import Server, call



@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    "A briefly trained checkpoint, exported by tt-export to ONNX and safetensors."
    d = tmp_path_factory.mktemp("serve")
    _, ckpt, _ = brief_checkpoint(d, max_seq_len=64, steps=30)
    for fmt, name in (("onnx", "model.onnx"), ("safetensors", "model.safetensors")):
        result = run(["tt-export", "--checkpoint", str(ckpt), "--format", fmt, "--output", str(d / name)], timeout=240)
        assert result.returncode == 0, result.stderr
    return d


@pytest.fixture(scope="module")
def onnx_server(exported):
    server = Server(exported / "model.onnx", "--max-concurrency", 2, "--max-queue", 64, "--max-new-tokens", 200,
                    "--max-prompt-chars", 100, "--timeout", 120, log_file=exported / "serve.jsonl")
    yield server
    server.stop()


def test_health_and_good_requests(onnx_server):
    status, health = call(f"{onnx_server.url}/health")
    assert status == 200 and health["status"] == "ok" and health["backend"] == "onnx"
    status, a = call(f"{onnx_server.url}/generate", {"prompt": "ROMEO:\n", "max_new_tokens": 30, "seed": 5,
                                                     "temperature": 0.8, "top_k": 10})
    assert status == 200, a
    assert a["text"].startswith("ROMEO:\n") and a["new_tokens"] == 30 and a["seed"] == 5
    _, b = call(f"{onnx_server.url}/generate", {"prompt": "ROMEO:\n", "max_new_tokens": 30, "seed": 5,
                                                "temperature": 0.8, "top_k": 10})
    assert b["text"] == a["text"]  # a seed makes a request reproducible
    status, c = call(f"{onnx_server.url}/generate", {"prompt": "A"})
    assert status == 200 and c["new_tokens"] == 100 and isinstance(c["seed"], int)  # defaults


BAD = [
    (b"prompt=hello", 400, "not valid JSON", None),
    (b'{"prompt": "x", "temperature": NaN}', 400, "not valid JSON", None),
    (b'["ROMEO"]', 422, "JSON object", None),
    (b'{"max_new_tokens": 5}', 422, "'prompt' is required", "prompt"),
    (b'{"prompt": ""}', 422, "empty", "prompt"),
    (b'{"prompt": 42}', 422, "must be a string", "prompt"),
    (json.dumps({"prompt": "a" * 101}).encode(), 422, "the limit is 100", "prompt"),
    (json.dumps({"prompt": "a" * 65}).encode(), 422, "context is 64 tokens", "prompt"),
    (json.dumps({"prompt": "ROMEO: ☃ 你好"}).encode(), 422, "cannot be encoded", "prompt"),
    (b'{"prompt": "A", "max_new_tokens": 0}', 422, "between 1 and 200", "max_new_tokens"),
    (b'{"prompt": "A", "max_new_tokens": 201}', 422, "between 1 and 200", "max_new_tokens"),
    (b'{"prompt": "A", "max_new_tokens": "ten"}', 422, "must be an integer", "max_new_tokens"),
    (b'{"prompt": "A", "max_new_tokens": 2.5}', 422, "must be an integer", "max_new_tokens"),
    (b'{"prompt": "A", "temperature": 0}', 422, "must be > 0", "temperature"),
    (b'{"prompt": "A", "temperature": 99}', 422, "<= 5.0", "temperature"),
    (b'{"prompt": "A", "temperature": "hot"}', 422, "must be a number", "temperature"),
    (b'{"prompt": "A", "top_k": 0}', 422, "between 1 and", "top_k"),
    (b'{"prompt": "A", "top_k": true}', 422, "must be an integer", "top_k"),
    (b'{"prompt": "A", "seed": -1}', 422, "between 0 and", "seed"),
    (b'{"prompt": "A", "max_tokens": 5}', 422, "unknown field", "max_tokens"),
    (b"x" * 70000, 413, "the limit is 65536", None),
]


@pytest.mark.parametrize("body,status,message,field", BAD, ids=[f"{i}-{b[:30]!r}" for i, (b, *_) in enumerate(BAD)])
def test_bad_input_gets_4xx_with_a_message(onnx_server, body, status, message, field):
    got, answer = call(f"{onnx_server.url}/generate", body)
    assert got == status, answer
    assert message in answer["error"] and answer["field"] == field


def test_unknown_route_and_method_are_json(onnx_server):
    assert call(f"{onnx_server.url}/nope") == (404, {"error": "Not Found", "field": None})
    status, answer = call(f"{onnx_server.url}/health", b"{}")
    assert status == 405 and answer["error"]


def test_fifty_concurrent_requests_all_answered(onnx_server, exported):
    def one(i):
        return call(f"{onnx_server.url}/generate", {"prompt": "ROMEO:", "max_new_tokens": 20, "seed": i}, timeout=120)

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    assert [s for s, _ in results] == [200] * 50, [a for s, a in results if s != 200][:3]
    assert all(a["new_tokens"] == 20 for _, a in results)
    # Every line of the server's log is one JSON object, and each request was logged.
    lines = [json.loads(line) for line in (exported / "serve.jsonl").read_text().splitlines()]
    generate_lines = [e for e in lines if e.get("path") == "/generate" and e["status"] == 200]
    assert len(generate_lines) >= 50 and all("latency_ms" in e and "request_id" in e for e in generate_lines)


def test_full_queue_gets_503_and_slow_request_gets_504(exported):
    server = Server(exported / "model.onnx", "--max-concurrency", 1, "--max-queue", 0, "--timeout", 1.5,
                    "--max-new-tokens", 100000)
    try:
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=call(f"{server.url}/generate",
                                                               {"prompt": "A", "max_new_tokens": 100000})))
        t.start()
        give_up = time.monotonic() + 30
        while call(f"{server.url}/health")[1]["running"] == 0:
            assert time.monotonic() < give_up and "r" not in slow, slow
            time.sleep(0.02)
        status, answer = call(f"{server.url}/generate", {"prompt": "B", "max_new_tokens": 5})
        assert status == 503 and "server busy" in answer["error"]
        t.join(timeout=30)
        status, answer = slow["r"]
        assert status == 504 and "request timeout" in answer["error"]
        # The timed-out generation stopped: the slot is free again.
        assert call(f"{server.url}/generate", {"prompt": "B", "max_new_tokens": 5})[0] == 200
    finally:
        server.stop()


def test_torch_backend_serves_tt_export_safetensors(exported):
    server = Server(exported / "model.safetensors", "--backend", "torch")
    try:
        status, health = call(f"{server.url}/health")
        assert status == 200 and health["backend"] == "torch"
        status, answer = call(f"{server.url}/generate", {"prompt": "ROMEO:\n", "max_new_tokens": 70, "top_k": 1})
        assert status == 200 and answer["new_tokens"] == 70  # past the 64-token context
        assert call(f"{server.url}/generate", {"prompt": "ROMEO:\n", "temperature": -1})[0] == 422
    finally:
        server.stop()


def test_cli_help_and_bad_arguments(exported):
    result = run(["tt-serve", "--help"], timeout=60)
    assert result.returncode == 0 and "usage: tt-serve" in result.stdout and "--max-concurrency" in result.stdout
    result = run(["tt-serve", "--model", str(exported / "missing.onnx")], timeout=60)
    assert result.returncode == 2 and "no such file" in result.stderr
    result = run(["tt-serve", "--model", str(exported / "model.onnx"), "--max-concurrency", "0"], timeout=60)
    assert result.returncode == 2 and "--max-concurrency must be >= 1" in result.stderr
    result = run(["tt-serve", "--model", str(exported / "model.onnx"), "--backend", "torch", "--port", "1"], timeout=60)
    assert result.returncode == 1 and "not an .onnx file" in result.stderr
