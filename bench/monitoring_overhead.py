"""Overhead of `TrainingMonitor`: training tokens/s with the meters on (log interval 10) vs off.

One model, one optimizer, the same pre-made batches and seed for every mode. The modes are interleaved at
a fine grain: each round runs one block of 10 steps (one log interval, so exactly one log step) per mode,
in rotated order, so that changes in machine load hit every mode alike. The result is the median over
rounds of each block's tokens/s divided by the same round's "off" block (robust to load spikes). The loop clips gradients in every mode (as the training loop does):

  off          no meters at all
  monitor      TrainingMonitor(log_every=10) with the default anomaly detector and memory meters; the loop
               passes the norm `clip_grad_norm_` returned (how the training loop uses it)
  own-norm     the same, but the monitor computes the gradient norm itself (one extra foreach norm per step)
  all-meters   own norm + per-layer gradient norms + update/weight ratios (optional meters, log steps only)

Run:  OMP_NUM_THREADS=1 python bench/monitoring_overhead.py            (CPU, 1 thread; writes the .md)
      python bench/monitoring_overhead.py --device cuda --out -         (GPU; prints the table)
Batches are random tokens made once up front, so data loading is not part of the timing.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_transformer.model import TinyTransformerLM  # noqa: E402
from tiny_transformer.monitoring import TrainingMonitor, peak_flops  # noqa: E402

MODES = ("off", "monitor", "own-norm", "all-meters")


class Mode:
    "One way of running the loop; keeps its own monitor and step counter across blocks."

    def __init__(self, name, model, log_every):
        self.name, self.model, self.step = name, model, 0
        self.monitor = None
        if name != "off":
            extra = dict(layer_norms=True, update_ratios=True) if name == "all-meters" else {}
            self.monitor = TrainingMonitor(model, log_every=log_every, grad_clip=1.0, **extra)

    def run_block(self, opt, batches, n_steps, device):
        "Time `n_steps` training steps (one log interval, so each block holds exactly one log step)."
        model, monitor = self.model, self.monitor
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.thread_time()
        tokens, in_monitor = 0, 0.0
        for _ in range(n_steps):
            self.step += 1
            x, y = batches[self.step % len(batches)]
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            t0 = time.perf_counter()
            if monitor is not None:
                monitor.before_optimizer_step(self.step)
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            if monitor is not None:
                monitor.update(self.step, loss, lr=opt.param_groups[0]["lr"], tokens=x.numel(), samples=x.size(0),
                               grad_norm=None if self.name in ("own-norm", "all-meters") else norm)
            in_monitor += (t1 - t0) + (time.perf_counter() - t2)
            tokens += x.numel()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
        return {"wall": tokens / wall, "cpu": tokens / cpu, "in_monitor": in_monitor / wall}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1)")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--log-every", type=int, default=10, help="log interval = steps per timed block")
    p.add_argument("--warmup-blocks", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30, help="blocks per mode, interleaved")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--out", default="bench/results/monitoring_overhead.md", help="markdown file, or - for stdout only")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    modes = args.modes.split(",")
    torch.manual_seed(0)
    vocab = 65
    model = TinyTransformerLM(vocab, d_model=args.d_model, n_heads=args.n_heads, n_layers=args.n_layers,
                              d_ff=4 * args.d_model, max_seq_len=args.seq_len, dropout=0.0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(8):
        t = torch.randint(0, vocab, (args.batch_size, args.seq_len + 1), generator=g)
        batches.append((t[:, :-1].contiguous().to(device), t[:, 1:].contiguous().to(device)))
    peak_flops(device, torch.float32)  # the CPU peak is measured once per process: do it before timing

    runners = {m: Mode(m, model, args.log_every) for m in modes}
    for _ in range(args.warmup_blocks):
        for m in modes:
            runners[m].run_block(opt, batches, args.log_every, device)
    results = {m: [] for m in modes}
    for r in range(args.rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]  # rotate, so no mode always runs first
        for m in order:
            results[m].append(runners[m].run_block(opt, batches, args.log_every, device))
        if (r + 1) % 10 == 0:
            print(f"round {r + 1}: " + "  ".join(f"{m} {results[m][-1]['wall']:,.0f}" for m in modes), flush=True)

    base = results[modes[0]]
    lines = []
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    lines += [
        "# Monitoring overhead",
        "",
        f"Command: `{'OMP_NUM_THREADS=' + str(args.threads) + ' ' if device.type == 'cpu' else ''}{cmd}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  ",
        f"Machine: {device.type} ({device_name}), torch {torch.__version__}, "
        f"{torch.get_num_threads() if device.type == 'cpu' else ''}{' thread(s)' if device.type == 'cpu' else ''}, "
        f"python {platform.python_version()}  ",
        f"Model: d_model={args.d_model}, n_layers={args.n_layers}, n_heads={args.n_heads}, batch {args.batch_size} x "
        f"{args.seq_len} tokens, AdamW, clip 1.0. {args.rounds} rounds; in each, every mode runs one block of "
        f"{args.log_every} steps (= one log interval, so one log step per block), in rotated order.",
        "",
        "Three views of the same blocks. *wall*: tokens per wall-clock second, the number a user sees, but on a",
        "shared machine other processes' load dominates it. *cpu*: tokens per second of this thread's CPU time",
        "(`time.thread_time`), which other processes do not inflate (with 1 torch thread all compute runs on it).",
        "*in monitor*: wall time spent inside `monitor.update` and `before_optimizer_step`, as a fraction of the",
        "block: the overhead measured directly, so 1 - that fraction is the tokens/s ratio it implies.",
        "Ratios are medians over rounds of (mode block / same round's off block), with the interquartile range.",
        "",
        "| mode | wall tokens/s | wall ratio (IQR) | cpu tokens/s | cpu ratio (IQR) | time in monitor | implied ratio |",
        "|---|---|---|---|---|---|---|",
    ]

    def ratio_cell(m, key):
        ratios = [a[key] / b[key] for a, b in zip(results[m], base)]
        q1, med, q3 = statistics.quantiles(ratios, n=4)
        return f"{statistics.median(ratios):.4f} ({q1:.3f}–{q3:.3f})"

    for m in modes:
        frac = statistics.median(r["in_monitor"] for r in results[m])
        lines.append(f"| {m} | {statistics.median(r['wall'] for r in results[m]):,.0f} | {ratio_cell(m, 'wall')} | "
                     f"{statistics.median(r['cpu'] for r in results[m]):,.0f} | {ratio_cell(m, 'cpu')} | "
                     f"{100 * frac:.3f}% | {1 - frac:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
