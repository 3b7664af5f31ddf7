"""GPU check of the checkpoint module: CUDA RNG round trip, GPU<->CPU loading, async snapshot consistency, stall.

    PYTHONPATH=. python checks/checkpoint_gpu_check.py [--out FILE.md]

Needs a CUDA device. Prints (and writes) a short markdown report; exits non-zero if a check fails.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from tiny_transformer.model import TinyTransformerLM
from tiny_transformer.utils.checkpoint import (CheckpointManager, capture_rng_state, load_checkpoint,
                                               load_model_safetensors, restore_rng_state, save_model_safetensors)

SIZES = {
    "small": dict(vocab_size=65, d_model=256, n_heads=4, n_layers=4, d_ff=1024, max_seq_len=256, dropout=0.1),
    "medium": dict(vocab_size=65, d_model=384, n_heads=6, n_layers=6, d_ff=1536, max_seq_len=256, dropout=0.1),
}


def step(model, optimizer, device):
    x = torch.randint(0, 65, (8, 128), device=device)
    loss = model(x).float().logsumexp(-1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    dev = "cuda"
    lines = [f"GPU check on {torch.cuda.get_device_name()} (torch {torch.__version__})", ""]

    # 1. CUDA RNG states go into the checkpoint and come back.
    state = capture_rng_state()
    first = torch.rand(4, device=dev)
    restore_rng_state(state)
    assert torch.equal(first, torch.rand(4, device=dev)), "CUDA RNG state was not restored"
    lines.append(f"- CUDA RNG round trip: ok ({len(state['cuda'])} device state(s) captured)")

    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    model = TinyTransformerLM(**SIZES["medium"]).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step(model, optimizer, dev)

    # 2. A checkpoint of a GPU model loads onto the CPU and back onto the GPU, optimizer state included.
    manager = CheckpointManager(folder / "sync")
    path = manager.save(model, optimizer, step=1, val_loss=1.0)
    cpu_model = TinyTransformerLM(**SIZES["medium"])
    ckpt = load_checkpoint(path, cpu_model)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(model.state_dict().values(), cpu_model.state_dict().values()))
    assert ckpt["model"]["tok_emb.weight"].device.type == "cpu"
    gpu_model = TinyTransformerLM(**SIZES["medium"]).to(dev)
    gpu_opt = torch.optim.AdamW(gpu_model.parameters(), lr=1e-3)
    load_checkpoint(path, gpu_model, gpu_opt, map_location=dev)
    assert gpu_opt.state_dict()["state"][0]["exp_avg"].device.type == "cuda"
    assert torch.equal(gpu_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    lines.append("- GPU checkpoint -> CPU model (map_location='cpu') and -> GPU model + AdamW (map_location='cuda'): ok")

    # 3. Async: training continues right after save(); the file holds the state at save time.
    expected = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with CheckpointManager(folder / "async", async_save=True) as amgr:
        apath = amgr.save(model, optimizer, step=2, val_loss=0.9)
        for _ in range(3):
            step(model, optimizer, dev)  # changes the parameters while the writer runs
    saved = load_checkpoint(apath)["model"]
    assert all(torch.equal(saved[k], expected[k]) for k in expected), "async snapshot is not the state at save()"
    lines.append("- async save: file equals the state at save() although 3 optimizer steps ran meanwhile: ok")

    # 4. safetensors from a GPU model.
    st = save_model_safetensors(model, folder / "model.safetensors")
    reloaded, _ = load_model_safetensors(st, device=dev)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    lines.append("- safetensors model-only export from the GPU and reload onto it (tied head re-tied): ok")

    # 5. Stall: how long save() blocks the loop, sync vs async, interleaved.
    lines += ["", "| model | stall sync (ms) | stall async (ms) | total async (ms) | ratio async/sync |",
              "|---|---:|---:|---:|---:|"]
    for name, cfg in SIZES.items():
        torch.manual_seed(0)
        m = TinyTransformerLM(**cfg).to(dev)
        o = torch.optim.AdamW(m.parameters(), lr=1e-3)
        step(m, o, dev)
        times: dict[str, list[float]] = {}
        for i in range(args.repeats):
            for mode in ("sync", "async"):
                with CheckpointManager(folder / f"{name}_{mode}_{i}", keep_best_n=1, async_save=mode == "async") as mg:
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    mg.save(m, o, step=1, val_loss=1.0)
                    times.setdefault(mode, []).append(time.perf_counter() - t0)
                    mg.wait()
                    times.setdefault(mode + " total", []).append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        lines.append(f"| {name} | {med['sync']:.0f} | {med['async']:.0f} | {med['async total']:.0f} | "
                     f"{med['async'] / med['sync']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
