#!/usr/bin/env python
"""How much does logging cost next to a training step?

Times, interleaved in one process (step, JSONL, TensorBoard, both, step, ...), with one torch thread:

- one training step of a tiny TinyTransformerLM (forward, backward, clip, AdamW step);
- one `TrainingLogger.log_metrics` call with 8 metrics, console off, to a JSON-lines file;
- one `ExperimentTracker.log_metrics` call with the same metrics, TensorBoard backend;
- both, as the training loop does on a log step.

Writes bench/results/logging_overhead.md. Run from the repository root:

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/logging_overhead.py [--rounds 300]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tiny_transformer.model import TinyTransformerLM
from tiny_transformer.utils.experiment import ExperimentTracker
from tiny_transformer.utils.logging import TrainingLogger

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="interleaved rounds (after 20 warm-up rounds)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "logging_overhead.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    # The tiny preset's shape, as in the training notebook's demo.
    vocab, seq, batch = 65, 64, 16
    model = TinyTransformerLM(vocab, d_model=64, n_heads=4, n_layers=2, d_ff=256, max_seq_len=seq, dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (64, batch, seq + 1), generator=gen)

    def train_step(i: int) -> dict:
        chunk = data[i % len(data)]
        x, y = chunk[:, :-1], chunk[:, 1:]
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.detach(), "grad_norm": norm}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        logger = TrainingLogger("bench", log_dir=tmp / "run", log_to_console=False)
        tracker = ExperimentTracker("bench", "bench", {"lr": 1e-3}, backend="tensorboard", log_dir=tmp / "run")
        both_logger = TrainingLogger("bench_both", log_dir=tmp / "run2", log_to_console=False)
        both_tracker = ExperimentTracker("bench", "bench2", {"lr": 1e-3}, backend="tensorboard", log_dir=tmp / "run2")

        def metrics(out: dict, step: int) -> dict:
            # what a log step records; .item() is the host sync a real loop pays once per log step
            loss = out["loss"].item()
            return {"train/loss": loss, "train/perplexity": min(1e9, 2.718281828 ** loss), "train/lr": 1e-3,
                    "grad/norm": out["grad_norm"].item(), "perf/tokens_per_sec": 123456.7, "perf/mfu": 0.0123,
                    "mem/rss_gb": 1.25, "train/tokens_seen": step * batch * seq}

        timings = {"train step": [], "JSONL": [], "TensorBoard": [], "JSONL + TensorBoard": []}
        for i in range(args.rounds + 20):
            t0 = time.perf_counter_ns()
            out = train_step(i)
            t1 = time.perf_counter_ns()
            m = metrics(out, i)
            t2 = time.perf_counter_ns()
            logger.log_metrics(m, step=i)
            t3 = time.perf_counter_ns()
            tracker.log_metrics(m, step=i)
            t4 = time.perf_counter_ns()
            both_logger.log_metrics(m, step=i)
            both_tracker.log_metrics(m, step=i)
            t5 = time.perf_counter_ns()
            if i >= 20:
                timings["train step"].append(t1 - t0)
                timings["JSONL"].append(t3 - t2)
                timings["TensorBoard"].append(t4 - t3)
                timings["JSONL + TensorBoard"].append(t5 - t4)
        for closable in (logger, both_logger):
            closable.close()
        for closable in (tracker, both_tracker):
            closable.finish()
        lines = sum(1 for _ in open(tmp / "run" / "bench.jsonl"))

    step_us = statistics.median(timings["train step"]) / 1e3
    rows = []
    for name, values in timings.items():
        med = statistics.median(values) / 1e3
        p90 = sorted(values)[int(0.9 * len(values))] / 1e3
        frac = "" if name == "train step" else f"{100 * med / step_us:.2f} %"
        frac10 = "" if name == "train step" else f"{100 * med / step_us / 10:.3f} %"
        rows.append(f"| {name} | {med:,.1f} | {p90:,.1f} | {frac} | {frac10} |")

    report = f"""# Logging overhead

Per-call cost of logging 8 metrics next to one training step of a tiny model
(TinyTransformerLM d_model 64, 2 layers, 4 heads, d_ff 256, batch 16 x 64 tokens, AdamW, clipping).
Timed interleaved in one process (step, JSONL, TensorBoard, both, step, ...), {args.rounds} rounds after
20 warm-up rounds, 1 torch thread. JSONL is `TrainingLogger.log_metrics` (console off, file flushed
per line); TensorBoard is `ExperimentTracker.log_metrics` with the TensorBoard backend
(`SummaryWriter` queues events and writes them from a background thread, so part of its disk cost is
not on the training thread). The values are Python floats: the `.item()` host sync is not counted
here; a real loop pays it once per log step.

| what | median (µs) | p90 (µs) | median as % of a step | % of a step when logging every 10 steps |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

JSONL lines written: {lines}.

- Command: `OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/logging_overhead.py --rounds {args.rounds}`
- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
- Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs), Python {platform.python_version()},
  torch {torch.__version__}, no GPU
- Absolute times on a shared 2-core machine vary run to run; the ratios in one interleaved run are
  what this measures.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
