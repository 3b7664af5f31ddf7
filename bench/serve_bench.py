"""Serving benchmark: one stream over HTTP vs in-process cached `generate`, and aggregate throughput / latency
with continuous batching vs one request at a time (--max-batch 1, the server's behaviour before batching).

The single stream is measured twice over HTTP, interleaved with in-process eager cached `generate`: served by
the eager backend (the same safetensors file) and by the ONNX backend (the cached graph that `tt-export` writes
by default from that file).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python bench/serve_bench.py

Writes bench/results/serve.md (tables + the command) and bench/results/serve.json (read by nbs/09_serve.ipynb
for its plot). Both servers run at once on 127.0.0.1 with one torch thread each, but only one is under load at
a time: the runs alternate (batched, unbatched, batched, ...). Every load is bounded (a fixed number of requests,
each with a timeout), so the script stops by itself in a few minutes. Compare ratios, not absolute times.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: idle OpenMP threads must not spin
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import datetime
import http.client
import json
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serve_helpers import BIN, Server, random_model_file  # noqa: E402

PROMPT = "ROMEO: what light"


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def post(port: int, body: dict, stream: bool = False, timeout: float = 300) -> dict:
    "One request; wall time, time to first byte of the body (first token when streaming), tokens generated."
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps({**body, "stream": stream}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first, tokens = None, 0
    if stream:
        for line in resp:
            if first is None and line.startswith(b"data: {"):
                first = time.perf_counter() - t0
            if b'"usage"' in line:
                tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    else:
        data = json.loads(resp.read())
        assert resp.status == 200, data
        tokens = data["usage"]["completion_tokens"]
    conn.close()
    return {"wall": time.perf_counter() - t0, "ttft": first, "tokens": tokens}


def load(port: int, clients: int, new_tokens: int, stream: bool = False) -> dict:
    "`clients` simultaneous requests of `new_tokens` tokens each: aggregate tokens/s and latency percentiles."
    body = {"prompt": PROMPT, "max_tokens": new_tokens, "temperature": 0.8, "top_p": 0.95}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: post(port, {**body, "seed": i}, stream), range(clients)))
    wall = time.perf_counter() - t0
    lat = [r["wall"] for r in results]
    out = {"clients": clients, "new_tokens": new_tokens, "tokens_per_s": sum(r["tokens"] for r in results) / wall,
           "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95)}
    if stream:
        ttft = [r["ttft"] for r in results]
        out.update(ttft_p50_s=percentile(ttft, 50), ttft_p95_s=percentile(ttft, 95))
    return out


def single_stream(model, tokenizer, ports: dict[str, int], new_tokens: int, rounds: int) -> dict:
    "In-process cached generate vs the same generation through HTTP on each server, interleaved; best of `rounds` each."
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    body = {"prompt": PROMPT, "max_tokens": new_tokens, "temperature": 0.8, "top_p": 0.95}
    eager, http = [], {name: [] for name in ports}
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        model.generate(ids, new_tokens, temperature=0.8, top_p=0.95, generator=torch.Generator().manual_seed(i))
        t_eager = time.perf_counter() - t0
        walls = {name: post(port, {**body, "seed": i})["wall"] for name, port in ports.items()}
        if i:  # the first round warms everything up
            eager.append(t_eager)
            for name, wall in walls.items():
                http[name].append(wall)
    out = {"new_tokens": new_tokens, "eager_tokens_per_s": new_tokens / min(eager),
           "http_tokens_per_s": new_tokens / min(http["eager"]), "ratio": min(eager) / min(http["eager"])}
    if "onnx" in http:
        out.update(onnx_http_tokens_per_s=new_tokens / min(http["onnx"]), onnx_ratio=min(eager) / min(http["onnx"]))
    return out


def export_onnx_file(path: Path) -> Path:
    "The file `tt-export --checkpoint path` writes by default (fp32 ONNX with the KV cache), via the CLI itself."
    subprocess.run([str(BIN / "tt-export"), "--checkpoint", str(path)], check=True, stdout=subprocess.DEVNULL)
    onnx = path.with_suffix(".onnx")
    if not onnx.is_file():
        raise RuntimeError(f"tt-export did not write {onnx}")
    return onnx


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 50])
    p.add_argument("--new-tokens", type=int, nargs="+", default=[32, 256])
    p.add_argument("--rounds", type=int, default=2, help="alternations per load point (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--single-rounds", type=int, default=11, help="interleaved rounds of the single stream (default: %(default)s)")
    p.add_argument("--single-only", action="store_true", help="measure the single stream only, print it, write nothing")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the servers
    torch.set_num_threads(1)
    from tiny_transformer.engine import load_backend

    work = Path(tempfile.mkdtemp())
    path = random_model_file(work / "bench.safetensors", d_model=128, n_layers=4, max_seq_len=512)
    backend = load_backend(path)
    model, tokenizer = backend.model, backend.tokenizer
    cfg = {k: model.config[k] for k in ("d_model", "n_layers", "n_heads", "max_seq_len", "vocab_size")}
    print("model", cfg, flush=True)
    common = ["--max-queue", 256, "--timeout", 600, "--log-level", "WARNING"]
    servers = {"batched": Server(path, "--max-batch", args.max_batch, *common),
               "unbatched": Server(path, "--max-batch", 1, *common)}
    try:
        onnx = Server(export_onnx_file(path), "--max-batch", args.max_batch, *common)
        try:  # the ONNX server only serves the single stream, then goes away
            ports = {"eager": servers["batched"].port, "onnx": onnx.port}
            single = single_stream(model, tokenizer, ports, 256, rounds=args.single_rounds)
            single["loadavg"] = os.getloadavg()[0]
        finally:
            onnx.stop()
        print("single stream", single, flush=True)
        if args.single_only:
            return
        ttft = {name: load(s.port, 1, 32, stream=True) for name, s in servers.items()}
        rows = {name: {} for name in servers}
        for new_tokens in args.new_tokens:
            for clients in args.clients:
                small = clients * new_tokens <= 2048  # cheap points get more rounds: best-of filters the noise
                for _ in range(args.rounds + 2 if small else args.rounds):
                    for name, s in servers.items():
                        r = load(s.port, clients, new_tokens, stream=True)
                        best = rows[name].get((clients, new_tokens))
                        if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
                            rows[name][(clients, new_tokens)] = r
                print(new_tokens, clients, {n: round(rows[n][(clients, new_tokens)]["tokens_per_s"]) for n in rows},
                      flush=True)
    finally:
        for s in servers.values():
            s.stop()
    write_results(args, cfg, single, ttft, rows)


def write_results(args, cfg, single, ttft, rows):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat = {name: list(r.values()) for name, r in rows.items()}
    (out / "serve.json").write_text(json.dumps({"model": cfg, "single_stream": single, "ttft": ttft, "rows": flat}, indent=1))
    lines = ["# Serving benchmark (`bench/serve_bench.py`)", "",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores shared with other users, torch {torch.__version__}, one torch thread per server.", "",
             "    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python bench/serve_bench.py " + " ".join(sys.argv[1:]), "",
             f"Model: untrained TinyTransformerLM {cfg} (char tokenizer), served from safetensors by the eager "
             f"backend. Sampling temperature 0.8, top_p 0.95, a different seed per request. Each load point is "
             f"`clients` simultaneous streaming requests; best of {args.rounds} alternating rounds per mode "
             f"({args.rounds + 2} for points of at most 2048 tokens).", "",
             "## One stream: HTTP vs in-process eager cached `generate` (256 new tokens)", "",
             f"Interleaved: `generate`, then the same request to each server, {args.single_rounds} rounds after a "
             "warm-up round, best of each. `eager backend` serves the safetensors file; `ONNX backend` serves the "
             "file `tt-export --checkpoint` writes from it by default (fp32, KV cache in the graph). Issue #18 asks "
             "for a ratio of at least 0.9.", "",
             "| served by | in-process tokens/s | HTTP tokens/s | ratio |", "|---|---:|---:|---:|",
             f"| eager backend | {single['eager_tokens_per_s']:.0f} | {single['http_tokens_per_s']:.0f} | {single['ratio']:.2f} |",
             f"| ONNX backend | {single['eager_tokens_per_s']:.0f} | {single['onnx_http_tokens_per_s']:.0f} | {single['onnx_ratio']:.2f} |",
             "", f"Load average when the single stream ended: {single['loadavg']:.1f} on {os.cpu_count()} cores.", "",
             "## Aggregate throughput and latency: continuous batching vs one request at a time", "",
             f"`batched` = `tt-serve --max-batch {args.max_batch}`; `one at a time` = `tt-serve --max-batch 1` "
             "(the server's behaviour before batching, with the KV cache).", "",
             "| clients | new tokens | batched tok/s | one-at-a-time tok/s | speed-up | batched p50 / p95 s | one-at-a-time p50 / p95 s | batched TTFT p50 / p95 s | one-at-a-time TTFT p50 / p95 s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, b in rows["batched"].items():
        u = rows["unbatched"][key]
        lines.append(f"| {key[0]} | {key[1]} | {b['tokens_per_s']:.0f} | {u['tokens_per_s']:.0f} | "
                     f"{b['tokens_per_s'] / u['tokens_per_s']:.2f}x | {b['p50_s']:.2f} / {b['p95_s']:.2f} | "
                     f"{u['p50_s']:.2f} / {u['p95_s']:.2f} | {b['ttft_p50_s']:.3f} / {b['ttft_p95_s']:.3f} | "
                     f"{u['ttft_p50_s']:.3f} / {u['ttft_p95_s']:.3f} |")
    lines += ["", "At one client both servers do the same work (a batch of one); the difference between them in those rows "
              f"is this machine's noise (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when the run ended).",
              "", "## Time to first token, one client, streaming (32 new tokens)", "",
              "| mode | TTFT s |", "|---|---:|"] + [f"| {n} | {t['ttft_p50_s']:.4f} |" for n, t in ttft.items()]
    (out / "serve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
