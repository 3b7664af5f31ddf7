"""`tt-serve` over real HTTP on 127.0.0.1: the OpenAI API (official client, curl), batching, streaming, cancellation,
limits, and a table of hostile inputs. Models are files that `tt-export` wrote."""
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import run
from helpers import brief_checkpoint
from serve_helpers import (Server, call, free_port, http_post, random_model_file, raw_request, reset_peak_rss,
                           rss_kb)

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    "A briefly trained checkpoint (context 128), and tt-export's safetensors and ONNX files of it."
    d = tmp_path_factory.mktemp("serve")
    _, ckpt, _ = brief_checkpoint(d, max_seq_len=128, steps=30)
    for fmt, name in (("safetensors", "model.safetensors"), ("onnx", "model.onnx")):
        result = run(["tt-export", "--checkpoint", str(ckpt), "--format", fmt, "--output", str(d / name)], timeout=240)
        assert result.returncode == 0, result.stderr
    return d


@pytest.fixture(scope="module")
def server(exported):
    s = Server(exported / "model.safetensors", "--max-batch", 8, "--max-queue", 64, "--max-tokens", 120,
               "--max-prompt-chars", 100, "--timeout", 120, log_file=exported / "serve.jsonl")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    "A bigger untrained model (context 512): a few ms per token, so cancellation and queues are observable."
    return random_model_file(tmp_path_factory.mktemp("slow") / "slow.safetensors")


def client_for(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_official_openai_client_completes_and_streams(server):
    client = client_for(server)
    model = client.models.list().data[0].id
    assert model == "model.safetensors"
    done = client.completions.create(model=model, prompt="ROMEO:", max_tokens=20, temperature=0.8, top_p=0.9, seed=7)
    assert done.object == "text_completion" and done.choices[0].finish_reason == "length"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (6, 20, 26)
    chunks = list(client.completions.create(model=model, prompt="ROMEO:", max_tokens=20, temperature=0.8, top_p=0.9,
                                            seed=7, stream=True))
    assert len(chunks) >= 10  # one event per token (a few may be held back by nothing here)
    assert "".join(c.choices[0].text for c in chunks) == done.choices[0].text  # same seed, same text
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage.completion_tokens == 20
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_stop_strings_and_greedy(server):
    client = client_for(server)
    greedy = client.completions.create(model=server.model_id, prompt="KING:", max_tokens=40, temperature=0)
    text = greedy.choices[0].text
    stop = text[10:12]
    cut = client.completions.create(model=server.model_id, prompt="KING:", max_tokens=40, temperature=1e-40, stop=[stop])
    assert cut.choices[0].text == text[:text.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=server.model_id, prompt="KING:", max_tokens=40, temperature=0,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text


def test_openai_client_sees_openai_errors(server):
    client = client_for(server)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=server.model_id, prompt="A", n=2)
    assert e.value.body["param"] == "n" and "not supported" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt="A")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=server.model_id, prompt="A" * 100, max_tokens=100)
    assert e.value.body["code"] == "context_length_exceeded" and "maximum context length is 128" in e.value.body["message"]


def test_curl_streams_server_sent_events(server):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = json.dumps({"model": server.model_id, "prompt": "ROMEO:", "max_tokens": 8, "seed": 1, "stream": True})
    out = subprocess.run([curl, "-sN", f"{server.url}/v1/completions", "-H", "Content-Type: application/json",
                          "-d", body], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    events = [block for block in out.stdout.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    last = json.loads(events[-2][6:])
    assert last["choices"][0]["finish_reason"] == "length" and last["usage"]["completion_tokens"] == 8


def test_a_request_in_a_busy_batch_equals_it_alone(server):
    reqs = [{"model": server.model_id, "prompt": p, "max_tokens": 15 + 5 * i, "temperature": 0.9, "top_p": 0.95,
             "seed": 100 + i} for i, p in enumerate(["ROMEO:", "JULIET:\n", "A", "KING RICHARD", "To be"] * 2)]
    with ThreadPoolExecutor(10) as pool:
        busy = list(pool.map(lambda r: call(f"{server.url}/v1/completions", r), reqs))
    alone = [call(f"{server.url}/v1/completions", r) for r in reqs]
    assert [s for s, _ in busy + alone] == [200] * 20
    assert [a["choices"][0]["text"] for _, a in busy] == [a["choices"][0]["text"] for _, a in alone]


def test_a_lone_request_decodes_as_generate_does_and_as_in_a_batch(server, exported):
    "Alone, the engine decodes in the model's own KVCache (its fast path); in a batch, via forward_with_past."
    import torch

    from tiny_transformer.engine import load_backend

    backend = load_backend(exported / "model.safetensors")
    prompt = "KING RICHARD:\n"
    ids = torch.tensor([backend.tokenizer.encode(prompt)])
    ref = backend.tokenizer.decode(backend.model.generate(ids, 60, top_k=1)[0, ids.size(1):].tolist())
    req = {"model": server.model_id, "prompt": prompt, "max_tokens": 60, "temperature": 0}
    alone = call(f"{server.url}/v1/completions", req)[1]["choices"][0]["text"]
    others = [{**req, "prompt": p, "max_tokens": 80, "temperature": 0.9, "seed": i} for i, p in enumerate(["A", "To be"])]
    with ThreadPoolExecutor(3) as pool:  # sent together with two longer requests: it decodes in a batch
        busy = list(pool.map(lambda r: call(f"{server.url}/v1/completions", r), [others[0], req, others[1]]))[1]
    assert alone == ref == busy[1]["choices"][0]["text"]


def test_fifty_concurrent_requests_all_answered_and_logged(server, exported):
    def one(i):
        return call(f"{server.url}/v1/completions", {"prompt": "ROMEO:", "max_tokens": 20, "seed": i}, timeout=120)

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    assert [s for s, _ in results] == [200] * 50, [a for s, a in results if s != 200][:3]
    assert all(a["usage"]["completion_tokens"] == 20 for _, a in results)
    lines = [json.loads(line) for line in (exported / "serve.jsonl").read_text().splitlines()]
    logged = [e for e in lines if e.get("path") == "/v1/completions" and e["status"] == 200]
    assert len(logged) >= 50 and all("latency_ms" in e and "request_id" in e for e in logged)


def test_generate_alias_keeps_its_old_shape(server):
    status, a = call(f"{server.url}/generate", {"prompt": "ROMEO:\n", "max_new_tokens": 30, "seed": 5, "top_k": 10})
    assert status == 200 and a["text"].startswith("ROMEO:\n") and a["new_tokens"] == 30 and a["seed"] == 5
    assert call(f"{server.url}/generate", {"prompt": "ROMEO:\n", "max_new_tokens": 30, "seed": 5, "top_k": 10})[1] == a


def _stream_then_close(port: int, body: dict, read_events: int = 1) -> bytes:
    "Open a stream over a raw socket, read `read_events` events, then close the socket (a client going away)."
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(http_post("/v1/completions", json.dumps(body).encode()))
    got = b""
    while got.count(b"data: ") < read_events:
        got += s.recv(4096)
    s.close()
    return got


def test_a_client_that_disconnects_cancels_its_sequence(slow_model):
    server = Server(slow_model, "--max-batch", 4, "--timeout", 120)
    try:
        model, port = server.model_id, server.port
        got = _stream_then_close(port, {"model": model, "prompt": "Hello", "max_tokens": 500, "stream": True})
        assert b"200 OK" in got and b"text/event-stream" in got
        h = server.wait_until(lambda h: h["cancelled"] == 1 and h["running"] == 0, what="stream cancelled")
        assert h["tokens_generated"] < 400, h  # the sequence left long before its 500 tokens
        # The same for a non-streaming request: the client sends it, waits a moment, and hangs up.
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(http_post("/v1/completions", json.dumps({"model": model, "prompt": "Hi", "max_tokens": 500}).encode()))
        server.wait_until(lambda h: h["running"] == 1, what="request running")
        s.close()
        h2 = server.wait_until(lambda h: h["cancelled"] == 2 and h["running"] == 0, what="request cancelled")
        assert h2["tokens_generated"] - h["tokens_generated"] < 400, h2
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slower_model(tmp_path_factory):
    "About 9 ms per token at this width and context (measured), so 500 tokens outlast the 3 s timeout even alone."
    return random_model_file(tmp_path_factory.mktemp("slower") / "slower.safetensors", d_model=512, n_layers=8,
                             max_seq_len=1024)


def test_full_queue_gets_503_with_retry_after_and_timeout_gets_504(slower_model):
    server = Server(slower_model, "--max-batch", 1, "--max-queue", 1, "--timeout", 3)
    try:
        model, url = server.model_id, server.url
        long = {"model": model, "prompt": "Hello", "max_tokens": 500}
        results = {}
        first = threading.Thread(target=lambda: results.update(first=call(f"{url}/v1/completions", long)))
        first.start()
        server.wait_until(lambda h: h["running"] == 1, what="first request running")
        second = threading.Thread(target=lambda: results.update(second=call(f"{url}/v1/completions", long)))
        second.start()
        server.wait_until(lambda h: h["queued"] == 1, what="second request queued")
        req = http_post("/v1/completions", json.dumps({"model": model, "prompt": "B", "max_tokens": 5}).encode())
        answer = raw_request(server.port, req)
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in answer.lower(), answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "server_busy"
        first.join(60), second.join(60)
        status, body = results["first"]
        assert status == 504 and "request timeout (3s)" in body["error"]["message"]
        server.wait_until(lambda h: h["running"] == 0 and h["queued"] == 0, what="batch empty after timeouts")
        assert call(f"{url}/v1/completions", {"prompt": "B", "max_tokens": 5})[0] == 200
    finally:
        server.stop()


# ---- hostile HTTP input: every answer is a 4xx in the OpenAI error shape, never a 500 ----
J = {"Content-Type": "application/json"}
HOSTILE_HTTP = [
    # (name, path, body bytes, headers, status, message part, param)
    ("form body", "/v1/completions", b"prompt=hello", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "Content-Type must be application/json", None),
    ("text/plain", "/v1/completions", b'{"prompt": "A"}', {"Content-Type": "text/plain"}, 415, "got text/plain", None),
    ("no content type", "/v1/completions", b'{"prompt": "A"}', {"Content-Type": None}, 415, "got none", None),
    ("not JSON", "/v1/completions", b"prompt=hello", J, 400, "not valid JSON", None),
    ("NaN", "/v1/completions", b'{"prompt": "A", "temperature": NaN}', J, 400, "NaN is not valid JSON", None),
    ("40 KB of [", "/v1/completions", b"[" * 40_000, J, 400, "nested too deeply", None),
    ("bad UTF-8", "/v1/completions", b'{"prompt": "\xff\xfe"}', J, 400, "not valid JSON", None),
    ("array body", "/v1/completions", b'["ROMEO"]', J, 400, "must be a JSON object", None),
    ("no prompt", "/v1/completions", b'{"max_tokens": 5}', J, 400, "'prompt' is required", "prompt"),
    ("empty prompt", "/v1/completions", b'{"prompt": ""}', J, 400, "empty", "prompt"),
    ("prompt number", "/v1/completions", b'{"prompt": 42}', J, 400, "must be a string", "prompt"),
    ("prompt too long", "/v1/completions", json.dumps({"prompt": "a" * 101}).encode(), J, 400, "the limit is 100", "prompt"),
    ("unknown char", "/v1/completions", json.dumps({"prompt": "ROMEO: \u2603"}).encode(), J, 400, "cannot be encoded", "prompt"),
    ("context", "/v1/completions", json.dumps({"prompt": "a" * 90, "max_tokens": 60}).encode(), J, 400,
     "maximum context length is 128", "max_tokens"),
    ("max_tokens 0", "/v1/completions", b'{"prompt": "A", "max_tokens": 0}', J, 400, ">= 1 and <= 120", "max_tokens"),
    ("max_tokens huge", "/v1/completions", b'{"prompt": "A", "max_tokens": 1e400}', J, 400, "must be an integer", "max_tokens"),
    ("max_tokens str", "/v1/completions", b'{"prompt": "A", "max_tokens": "ten"}', J, 400, "must be an integer", "max_tokens"),
    ("max_tokens bool", "/v1/completions", b'{"prompt": "A", "max_tokens": true}', J, 400, "must be an integer", "max_tokens"),
    ("temperature -1", "/v1/completions", b'{"prompt": "A", "temperature": -1}', J, 400, ">= 0 and <= 2", "temperature"),
    ("temperature inf", "/v1/completions", b'{"prompt": "A", "temperature": 1e999}', J, 400, "<= 2", "temperature"),
    ("top_p 0", "/v1/completions", b'{"prompt": "A", "top_p": 0}', J, 400, "> 0 and <= 1", "top_p"),
    ("top_k 0", "/v1/completions", b'{"prompt": "A", "top_k": 0}', J, 400, ">= 1", "top_k"),
    ("seed float", "/v1/completions", b'{"prompt": "A", "seed": 1.5}', J, 400, "must be an integer", "seed"),
    ("seed 2**70", "/v1/completions", b'{"prompt": "A", "seed": 1180591620717411303424}', J, 400, "<= ", "seed"),
    ("stop list of 5", "/v1/completions", b'{"prompt": "A", "stop": ["a","b","c","d","e"]}', J, 400, "1 to 4", "stop"),
    ("stop empty", "/v1/completions", b'{"prompt": "A", "stop": ""}', J, 400, "non-empty", "stop"),
    ("stream str", "/v1/completions", b'{"prompt": "A", "stream": "yes"}', J, 400, "true or false", "stream"),
    ("n 2", "/v1/completions", b'{"prompt": "A", "n": 2}', J, 400, "not supported", "n"),
    ("logprobs", "/v1/completions", b'{"prompt": "A", "logprobs": 5}', J, 400, "not supported", "logprobs"),
    ("unknown field", "/v1/completions", b'{"prompt": "A", "temprature": 1}', J, 400, "Unrecognized request argument", "temprature"),
    ("wrong model", "/v1/completions", b'{"model": "gpt-4", "prompt": "A"}', J, 404, "does not exist", "model"),
    ("body > limit", "/v1/completions", b" " * 70_000, J, 413, "the limit is 65536", None),
    ("bad Content-Length", "/v1/completions", b"{}", {**J, "Content-Length": "abc"}, 400, None, None),  # h11: plain text
    ("unknown route", "/v1/chat/completions", b"{}", J, 404, "Not Found", None),
    ("POST on GET route", "/health", b"{}", J, 405, "Method Not Allowed", None),
]


@pytest.mark.parametrize("name,path,body,headers,status,message,param", HOSTILE_HTTP, ids=[h[0] for h in HOSTILE_HTTP])
def test_hostile_http_input_gets_an_openai_shaped_4xx(server, name, path, body, headers, status, message, param):
    answer = raw_request(server.port, http_post(path, body, headers))
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), answer[:400]
    if message is None:  # refused by the HTTP parser before the app sees it
        return
    error = json.loads(payload)["error"]
    assert set(error) == {"message", "type", "param", "code"} and message in error["message"], error
    assert error["param"] == param


def test_temperature_1e_40_is_greedy_not_500(server):
    greedy = call(f"{server.url}/v1/completions", {"prompt": "ROMEO:", "max_tokens": 12, "temperature": 0})
    tiny = call(f"{server.url}/v1/completions", {"prompt": "ROMEO:", "max_tokens": 12, "temperature": 1e-40})
    assert greedy[0] == tiny[0] == 200 and greedy[1]["choices"][0]["text"] == tiny[1]["choices"][0]["text"]


def test_head_docs_off_and_on(server, exported):
    assert call(f"{server.url}/health", method="HEAD")[0] == 200
    assert call(f"{server.url}/v1/models", method="HEAD")[0] == 200
    assert call(f"{server.url}/docs")[0] == 404 and call(f"{server.url}/openapi.json")[0] == 404
    with_docs = Server(exported / "model.safetensors", "--api-docs")
    try:
        assert call(f"{with_docs.url}/openapi.json")[0] == 200
    finally:
        with_docs.stop()


def test_idle_half_open_and_stalled_connections_are_closed(exported):
    server = Server(exported / "model.safetensors", "--io-timeout", 1)
    try:
        t0 = time.monotonic()
        partial = raw_request(server.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n", timeout=20)
        assert partial == b"" and time.monotonic() - t0 < 5  # closed without an answer, after about 1 s
        t0 = time.monotonic()
        stalled = raw_request(server.port, http_post("/v1/completions", b'{"prompt"', {"Content-Length": "100"}), timeout=20)
        assert stalled.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 5, stalled[:200]
        t0 = time.monotonic()  # keep-alive: after a complete exchange, an idle connection is closed too
        idle = raw_request(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=20)
        assert idle.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 5
    finally:
        server.stop()


def _post_big(port: int, size: int, chunked: bool) -> bytes:
    "POST `size` bytes (announced by Content-Length, or chunked without one); whatever the server answers."
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = {"Transfer-Encoding": "chunked", "Content-Length": None} if chunked else {"Content-Length": str(size)}
    s.sendall(http_post("/v1/completions", b"", head))
    block = b"[" * (1 << 20)
    try:
        for _ in range(size >> 20):
            s.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: it stopped reading
    try:
        return s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        return b""
    finally:
        s.close()


def test_memory_stays_bounded_under_huge_bodies(exported, capsys):
    server = Server(exported / "model.safetensors")
    try:
        pid = server.proc.pid
        call(f"{server.url}/v1/completions", {"prompt": "A", "max_tokens": 5})  # warm
        idle = rss_kb(pid)
        reset_peak_rss(pid)
        answers = [_post_big(server.port, 300 << 20, chunked=False), _post_big(server.port, 300 << 20, chunked=True)]
        with ThreadPoolExecutor(8) as pool:
            answers += list(pool.map(lambda i: _post_big(server.port, 50 << 20, chunked=i % 2 == 1), range(8)))
        peak = rss_kb(pid, "VmHWM")
        assert all(a == b"" or a.startswith(b"HTTP/1.1 413") for a in answers), [a[:60] for a in answers]
        assert sum(a.startswith(b"HTTP/1.1 413") for a in answers) >= 5
        with capsys.disabled():
            print(f"\n[serve memory] idle RSS {idle / 1024:.1f} MB, peak during 300 MB (CL + chunked) and 8x50 MB bodies "
                  f"{peak / 1024:.1f} MB (+{(peak - idle) / 1024:.1f} MB)")
        assert peak - idle < 50 * 1024
        assert call(f"{server.url}/health")[0] == 200
    finally:
        server.stop()


HOSTILE_CLI = [
    # (name, files to write {name: bytes}, args (MODEL = the file), message part)
    ("missing file", {}, ["--model", "{d}/missing.onnx"], "no such file"),
    ("directory", {}, ["--model", "{d}"], "no such file"),
    ("garbage .onnx", {"g.onnx": b"\x00garbage" * 100}, ["--model", "{d}/g.onnx"], "cannot load it"),
    ("garbage .safetensors", {"g.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json" * 10},
     ["--model", "{d}/g.safetensors"], "cannot load it"),
    ("garbage .pt", {"g.pt": b"PK\x03\x04 random"}, ["--model", "{d}/g.pt"], "cannot load it"),
    ("empty .safetensors", {"e.safetensors": b""}, ["--model", "{d}/e.safetensors"], "cannot load it"),
    ("unservable suffix", {"m.pt2": b"x"}, ["--model", "{d}/m.pt2"], "tt-serve serves .pt, .onnx, .safetensors"),
    ("wrong --backend", {}, ["--model", "{st}", "--backend", "onnx"], "--backend onnx cannot open"),
    ("port 0", {}, ["--model", "{st}", "--port", "0"], "--port must be between 1 and 65535"),
    ("port 70000", {}, ["--model", "{st}", "--port", "70000"], "--port must be between 1 and 65535"),
    ("port abc", {}, ["--model", "{st}", "--port", "abc"], "invalid int value"),
    ("port in use", {}, ["--model", "{st}", "--port", "{busy}"], "cannot listen on 127.0.0.1"),
    ("max-batch 0", {}, ["--model", "{st}", "--max-batch", "0"], "--max-batch must be >= 1"),
    ("timeout nan", {}, ["--model", "{st}", "--timeout", "nan"], "--timeout must be a number of seconds"),
    ("max-queue -1", {}, ["--model", "{st}", "--max-queue", "-1"], "--max-queue must be >= 0"),
]


@pytest.mark.parametrize("name,files,args,message", HOSTILE_CLI, ids=[h[0] for h in HOSTILE_CLI])
def test_hostile_cli_input_exits_2_with_a_message(exported, tmp_path, name, files, args, message):
    for fname, data in files.items():
        (tmp_path / fname).write_bytes(data)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fill = {"d": tmp_path, "st": exported / "model.safetensors", "busy": busy.getsockname()[1]}
        argv = [a.format(**fill) for a in args]
        if "--port" not in argv:
            argv += ["--port", str(free_port())]
        result = run(["tt-serve", *argv], timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]


def test_help_says_which_formats_are_servable():
    result = run(["tt-serve", "--help"], timeout=60)
    assert result.returncode == 0 and "usage: tt-serve" in result.stdout
    for text in ("--max-batch", "--api-docs", ".onnx", ".safetensors", ".pt2"):
        assert text in result.stdout


def test_checkpoint_and_onnx_backends(exported):
    "The checkpoint .pt serves with the eager model; the ONNX export serves when it carries the KV cache."
    from tiny_transformer.onnx_export import OnnxRuntimeLM

    ckpt = Server(exported / "ckpt.pt")
    try:
        assert ckpt.health()["backend"] == "torch"
        ref = call(f"{ckpt.url}/v1/completions", {"prompt": "ROMEO:", "max_tokens": 30, "temperature": 0})[1]
    finally:
        ckpt.stop()
    if not hasattr(OnnxRuntimeLM, "forward_with_past"):  # an export without the cache: refused, clearly
        result = run(["tt-serve", "--model", str(exported / "model.onnx"), "--port", str(free_port())], timeout=120)
        assert result.returncode == 2 and "without KV-cache inputs" in result.stderr, result.stderr[-1500:]
        return
    onnx = Server(exported / "model.onnx")
    try:
        assert onnx.health()["backend"] == "onnx"
        got = call(f"{onnx.url}/v1/completions", {"prompt": "ROMEO:", "max_tokens": 30, "temperature": 0})[1]
        assert got["choices"][0]["text"] == ref["choices"][0]["text"]  # greedy: same text as the eager model
    finally:
        onnx.stop()


def test_serve_never_imports_training():
    code = ("import sys, tiny_transformer.serve; bad = sorted(m for m in sys.modules if m.startswith('tiny_transformer.training'));"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
