"""GPU checks of tiny_transformer.monitoring that a CPU machine cannot do. Run on a CUDA machine:

    PYTHONPATH=. python checks/monitoring_gpu_check.py

Checks (each prints PASS/FAIL and the evidence; exit status 1 if any fails): the card is in the peak table;
global_grad_norm == clip_grad_norm_ on CUDA (fp32 and bf16 grads); TrainingMonitor.update does not sync on
non-log steps (torch.cuda.set_sync_debug_mode("error")) and syncs once on a log step; CUDA memory meters;
MFU of a bf16 autocast run; the profiler's CUDA table and trace; FlopCounterMode with attention counted.
"""
from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_transformer.model import TinyTransformerLM  # noqa: E402
from tiny_transformer.monitoring import (TrainingMonitor, global_grad_norm, memory_metrics,  # noqa: E402
                                         model_flops_per_token, peak_flops, profile_steps)

failures = []


def check(name, ok, evidence):
    print(f"{'PASS' if ok else 'FAIL'} {name}: {evidence}", flush=True)
    if not ok:
        failures.append(name)


dev = torch.device("cuda")
name = torch.cuda.get_device_name(dev)
bf16, fp32 = peak_flops(dev, torch.bfloat16), peak_flops(dev, torch.float32)
check("peak table knows this card", bf16 is not None and fp32 is not None, f"{name}: bf16 {bf16}, fp32/tf32 {fp32}")

torch.manual_seed(0)
cfg = dict(vocab_size=65, d_model=512, n_heads=8, n_layers=6, d_ff=2048, max_seq_len=256, dropout=0.0)
model = TinyTransformerLM(**cfg).to(dev)
x = torch.randint(0, 65, (16, 256), device=dev)
F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
ours = global_grad_norm(model.parameters())
theirs = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
check("grad norm == clip_grad_norm_ (fp32, cuda)", abs(ours.item() - theirs.item()) <= 1e-5 * max(1, theirs.item()),
      f"{ours.item():.7f} vs {theirs.item():.7f}")
mb = TinyTransformerLM(**cfg).to(dev, torch.bfloat16)
F.cross_entropy(mb(x).flatten(0, 1).float(), x.flatten()).backward()
o, t = global_grad_norm(mb.parameters()), torch.nn.utils.clip_grad_norm_(mb.parameters(), float("inf"))
check("grad norm ~ clip_grad_norm_ (bf16 grads)", abs(o.item() - t.float().item()) <= 1e-2 * t.float().item(),
      f"{o.item():.5f} (fp32 sum of bf16 norms) vs {t.float().item():.5f} (bf16)")

# syncs: none on ordinary steps, one on a log step
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
monitor = TrainingMonitor(model, log_every=10, grad_clip=1.0, compute_dtype=torch.bfloat16, layer_norms=True,
                          update_ratios=True)
metrics_seen = None
log_step_syncs = []
for step in range(1, 31):
    with torch.autocast("cuda", torch.bfloat16):
        loss = F.cross_entropy(model(x).flatten(0, 1).float(), x.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    monitor.before_optimizer_step(step)
    opt.step()
    if monitor.should_log(step):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                metrics_seen = monitor.update(step, loss, lr=3e-4, tokens=x.numel(), samples=x.size(0), grad_norm=norm)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        log_step_syncs.append(sum("synchroniz" in str(w.message) for w in caught))
    else:
        torch.cuda.set_sync_debug_mode("error")
        try:
            monitor.update(step, loss, lr=3e-4, tokens=x.numel(), samples=x.size(0),
                           grad_norm=norm if step % 2 else None)  # also the monitor's own norm
        finally:
            torch.cuda.set_sync_debug_mode("default")
check("no host sync on non-log steps", True, "set_sync_debug_mode('error') raised nothing on 27 steps")
check("one host sync per log step", all(n <= 1 for n in log_step_syncs), f"sync warnings per log step: {log_step_syncs}")
print(json.dumps({k: round(v, 6) for k, v in metrics_seen.items() if not k.startswith(("grad/norm/", "update/ratio/"))}, indent=1))
check("CUDA memory meters", {"mem/allocated_gb", "mem/reserved_gb", "mem/max_allocated_gb"} <= set(metrics_seen)
      and metrics_seen["mem/allocated_gb"] > 0, {k: round(v, 3) for k, v in memory_metrics(dev).items()})
check("MFU plausible (bf16 autocast, d512 L6)", 0.001 < metrics_seen["perf/mfu"] < 1.0, f"mfu {metrics_seen['perf/mfu']:.4f}")

# FLOPs: on CUDA FlopCounterMode counts the attention kernels too
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

with FlopCounterMode(display=False) as counter:
    F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
measured = counter.get_total_flops() / x.numel()
formula = model_flops_per_token(cfg, 256)
check("FLOPs formula vs FlopCounterMode (cuda, with attention)", abs(formula / measured - 1) < 0.1,
      f"formula {formula:,.0f} measured {measured:,.0f} ratio {formula / measured:.4f} "
      f"(6N alone: {model_flops_per_token(cfg, 256, include_attention=False):,.0f})")


def step_fn():
    with torch.autocast("cuda", torch.bfloat16):
        loss = F.cross_entropy(model(x).flatten(0, 1).float(), x.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


run_dir = Path(tempfile.mkdtemp())
report = profile_steps(step_fn, run_dir, profile_memory=True, row_limit=6)
trace = json.loads(report.trace_files[0].read_text()) if report.trace_files else {"traceEvents": []}
kernels = [e for e in trace["traceEvents"] if e.get("cat") == "kernel"]
check("profiler: CUDA table and trace with kernels", "Self CUDA" in report.table and len(kernels) > 0,
      f"{len(report.trace_files)} trace file(s), {len(kernels)} kernel events")

print("FAILED: " + ", ".join(failures) if failures else "ALL PASSED")
sys.exit(1 if failures else 0)
