#!/usr/bin/env python
"""Throughput and MFU of a GPT-2-small-sized TinyTransformerLM on one GPU: fp32 (TF32) eager, bf16 eager,
bf16 + torch.compile; fused AdamW, SDPA attention, pinned non-blocking batches.

    PYTHONPATH=. python bench/gpu_throughput.py [--steps 10] [--batch 16] [--vocab 65] [--compile-mode MODE] [--json OUT]

--vocab 50304 gives GPT-2 small's own shape (its 50257 BPE tokens padded to a multiple of 64, as nanoGPT does):
124M parameters instead of 85M, with a large, efficient head matmul in the FLOP mix. Tokens are random either way.

FLOPs per token and the device's peak come from tiny_transformer.flops (6 x matmul weights incl. the
tied head, plus 12 x layers x context x width for attention; dense bf16 peak by device name).
"""
from __future__ import annotations

import argparse, json, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
import torch.nn.functional as F
from tiny_transformer.model import TinyTransformerLM
from tiny_transformer.flops import model_flops_per_token, peak_flops

def run(steps: int, batch: int, seq: int, vocab: int = 65, compile_mode: str | None = None) -> dict:
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = dict(vocab_size=vocab, d_model=768, n_heads=12, n_layers=12, d_ff=3072, max_seq_len=seq, dropout=0.0)
    fpt = model_flops_per_token(cfg, seq)
    name = torch.cuda.get_device_name()
    peak = peak_flops(device, torch.bfloat16)  # the device's dense bf16 peak, from the monitoring notebook's table
    data = torch.randint(0, vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(0))
    x = data[:, :-1].pin_memory().to(device, non_blocking=True)
    y = data[:, 1:].pin_memory().to(device, non_blocking=True)
    out = {"device": name, "torch": torch.__version__, "batch": batch, "seq": seq, "model": cfg, "compile_mode": compile_mode,
           "flops_per_token": fpt, "peak_bf16": peak}
    for label, dtype, compiled in [("fp32_eager", None, False), ("bf16_eager", torch.bfloat16, False),
                                   ("bf16_compile", torch.bfloat16, True)]:
        torch.manual_seed(0)
        model = TinyTransformerLM(**cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
        fwd = torch.compile(model, mode=compile_mode) if compiled else model

        def step():
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                logits = fwd(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        t0 = time.perf_counter()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        tps = steps * batch * seq / dt
        out[label] = {"tokens_per_s": round(tps), "step_ms": round(1000 * dt / steps, 1),
                      "mfu": round(tps * fpt / peak, 4) if peak else None, "warmup_s": round(warm, 1),
                      "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2), "loss": round(loss.item(), 3)}
        print(label, out[label], flush=True)
        torch.cuda.empty_cache()
    out["bf16_vs_fp32"] = round(out["bf16_eager"]["tokens_per_s"] / out["fp32_eager"]["tokens_per_s"], 2)
    out["compile_vs_eager"] = round(out["bf16_compile"]["tokens_per_s"] / out["bf16_eager"]["tokens_per_s"], 2)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=65, help="65: the character vocabulary; 50304: GPT-2's, padded")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_throughput: CUDA is not available here; this benchmark needs an NVIDIA GPU.")
    result = run(a.steps, a.batch, a.seq, a.vocab, a.compile_mode)
    print(json.dumps(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
