#!/usr/bin/env python
"""One prepared check of the GPU path, run from the working tree without installing:

    PYTHONPATH=. python checks/gpu_check.py            # or: bash checks/gpu_check.sh

On CUDA it (0) runs every code cell of nbs/07b_gpu.ipynb as plain Python (no Jupyter needed): fp32, AMP and
AMP + torch.compile of a GPT-2-small-sized model, tokens/s and MFU, the bar plot; then the same three variants
in fp16 + GradScaler (the T4 path) on this GPU; (1) runs the training notebook's cells tagged `gpu`;
(2) measures a GPT-2-small-sized model (bf16, fused AdamW, SDPA flash attention, torch.compile):
tokens/s, MFU against the device's own peak, peak memory, and the bf16-vs-fp32 and compile-vs-eager
speedups; (3) trains nanoGPT's published character-level Shakespeare configuration with the Trainer
and reports validation loss and wall time; (4) saves, reloads and resumes a checkpoint on the GPU;
(5) exports ONNX and runs it with ONNX Runtime (CUDA provider when available). Results go to
bench/results/gpu-<device>.md (the 07b plot next to it). Without CUDA it says so and exits with status 3;
--cpu-dry-run runs the same code on the CPU with a toy model (TT_GPU_DRY_RUN=1 makes the notebook take its GPU path).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def section(results: dict, name: str):
    "Decorator-free helper: run fn, store its dict or the error, never stop the whole check."
    def run(fn, *args, **kwargs):
        t0 = time.perf_counter()
        log(f"--- {name}")
        try:
            out = fn(*args, **kwargs)
            results[name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1), **out}
        except Exception as e:  # keep going: one broken part must not hide the others
            traceback.print_exc()
            results[name] = {"ok": False, "seconds": round(time.perf_counter() - t0, 1), "error": f"{type(e).__name__}: {e}"}
        log(f"{name}: {json.dumps(results[name])[:600]}")
        return results[name]
    return run


# 0. The GPU notebook (nbs/07b_gpu.ipynb), run as plain Python ------------------------------------------
def run_notebook_cells(path: Path, out_dir: Path, dry_run: bool) -> dict:
    """Execute every code cell of `path` in one namespace, in order, from nbs/ (as Jupyter would), without
    Jupyter: cells with IPython magics (the guarded Colab install) and `nbval-skip` cells are left out."""
    import os

    nb = json.loads(path.read_text())
    os.environ["TT_GPU_OUT"] = str(out_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    if dry_run:
        os.environ["TT_GPU_DRY_RUN"] = "1"
    ns: dict = {"__name__": "__main__"}
    ran, skipped, cwd = 0, [], os.getcwd()
    os.chdir(path.parent)
    try:
        for i, cell in enumerate(nb["cells"]):
            src = "".join(cell["source"])
            if cell["cell_type"] != "code":
                continue
            magic = any(l.lstrip().startswith(("%", "!")) for l in src.splitlines())
            if magic or "nbval-skip" in cell.get("metadata", {}).get("tags", []):
                skipped.append(i)
                continue
            try:
                exec(compile(src, f"<{path.name} cell {i}>", "exec"), ns)
            except ModuleNotFoundError as e:
                if (e.name or "").split(".")[0] != "matplotlib":
                    raise
                skipped.append(i)  # the device machine may lack matplotlib: the table still prints
                continue
            ran += 1
    finally:
        os.chdir(cwd)
    plot = out_dir / "gpu_throughput.png"
    return {"cells_run": ran, "cells_skipped": skipped, "device": str(ns.get("device")), "rows": ns.get("rows"),
            "plot": str(plot) if plot.is_file() else None}


def amp_fp16_path(device: str) -> dict:
    "The T4 path on this device: fp16 autocast + GradScaler, eager and compiled."
    from tiny_transformer.amp import compare_precisions

    return {"rows": compare_precisions(device, amp_dtype=torch.float16)}


# 1. The training notebook's GPU cells ---------------------------------------------------------------
def notebook_gpu_cells() -> dict:
    nb = json.loads((ROOT / "nbs" / "07_training.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "gpu" in c.get("metadata", {}).get("tags", [])]
    if not cells:  # the mixed-precision cells moved to nbs/07b_gpu.ipynb (section amp_notebook)
        return {"cells": 0}
    from tiny_transformer.data import prepare_corpus
    ns = {"__name__": "gpu_cells"}
    exec("import math, os, time, json, torch\nfrom pathlib import Path\n"
         "import tempfile\nfrom tiny_transformer.training import *\n"
         "from tiny_transformer.config import ExperimentConfig, get_tiny_config\n", ns)
    ns["corpus"] = prepare_corpus()
    ns["workdir"] = Path(tempfile.mkdtemp(prefix="gpu-cells-"))
    for cell in cells:
        exec(compile("".join(cell["source"]), "<07_training gpu cell>", "exec"), ns)
    return {"cells": len(cells), "amp_results": ns.get("amp_results")}


# 2. GPT-2-small-sized throughput and MFU (bench/gpu_throughput.py) ---------------------------------
def gpt2_small_throughput(steps: int = 10, batch: int = 32) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_throughput import run

    return run(steps, batch, 1024)


# 3. nanoGPT's character-level Shakespeare configuration ---------------------------------------------
def nanogpt_shakespeare_char(workdir: Path, max_steps: int = 5000, device: str = "cuda") -> dict:
    from tiny_transformer.config import get_medium_config
    from tiny_transformer.training import Trainer

    # The medium preset is nanoGPT's shakespeare-char model (6 x 384, 6 heads, context 256, batch 64,
    # dropout 0.2, lr 1e-3 to 1e-4, weight decay 0.1, clip 1.0); set the rest of nanoGPT's recipe.
    cfg = get_medium_config()
    cfg.name, cfg.output_dir, cfg.device, cfg.seed = "nanogpt-shakespeare-char", str(workdir), device, 1337
    m, t = cfg.model, cfg.training
    t.max_steps, t.warmup_steps, t.beta2 = max_steps, min(100, max_steps // 10), 0.99
    t.precision, t.compile = ("bf16", True) if device == "cuda" else ("fp32", False)
    t.eval_every, t.eval_batches, t.sample_every, t.sample_tokens = min(500, max_steps), 40, 0, 200
    if device != "cuda":  # a dry run of the script's logic on a CPU
        m.d_model, m.n_heads, m.n_layers, m.d_ff, m.max_seq_len, t.batch_size, t.eval_batches = 64, 4, 2, 256, 64, 8, 2
    cfg.tracking.backend, cfg.logging.console = "none", False
    trainer = Trainer(cfg, progress=False)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    evals = [h for h in trainer.history if "val/loss" in h]
    return {"val_loss": round(result["val/loss"], 4), "best_val_loss": round(result["best_metric"], 4),
            "wall_time_s": round(wall, 1), "steps": result["step"], "tokens_per_s": round(result["tokens_seen"] / wall),
            "val_curve": [(h["step"], round(h["val/loss"], 3)) for h in evals],
            "sample": getattr(trainer, "last_sample", "")[:300], "run_dir": str(trainer.run_dir)}


# 4. Checkpoint save / reload / resume on the GPU -----------------------------------------------------
def checkpoint_resume(run_dir: Path, device: str = "cuda") -> dict:
    from tiny_transformer.config import ExperimentConfig
    from tiny_transformer.training import Trainer, evaluate
    from tiny_transformer.utils.checkpoint import load_model_from_checkpoint
    from tiny_transformer.utils.checkpoint import CheckpointManager

    manager = CheckpointManager(run_dir / "checkpoints")
    best = manager.get_best_checkpoint_path()
    model, tokenizer, state = load_model_from_checkpoint(best, device)
    cfg = ExperimentConfig.from_dict(state["config"])
    trainer = Trainer(cfg, resume="auto", progress=False, run_dir=run_dir)
    reloaded = evaluate(model, trainer.val_batches, device, trainer.amp_dtype)
    # Resume the finished run for 50 more steps from its last checkpoint.
    cfg.training.max_steps = state["step"] + 50 if state["step"] >= cfg.training.max_steps else cfg.training.max_steps
    trainer = Trainer(cfg, resume="auto", progress=False, run_dir=run_dir)
    out = trainer.fit()
    return {"best_checkpoint": best.name, "best_step": state["step"], "reloaded_val_loss": round(reloaded["val/loss"], 4),
            "recorded_val_loss": round(state["metrics"].get("val/loss", float("nan")), 4),
            "resumed_to_step": out["step"], "resumed_status": out["status"]}


# 5. ONNX export and ONNX Runtime ------------------------------------------------------------------
def onnx_runtime(run_dir: Path) -> dict:
    import onnxruntime as ort
    from tiny_transformer.export import ONNX_OPSET, export_metadata
    from tiny_transformer.onnx_export import export_onnx
    from tiny_transformer.utils.checkpoint import load_model_from_checkpoint
    from tiny_transformer.utils.checkpoint import CheckpointManager

    model, tokenizer, _ = load_model_from_checkpoint(CheckpointManager(run_dir / "checkpoints").get_best_checkpoint_path(), "cpu")
    path = run_dir / "model.onnx"
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    # opset 23's Attention needs ONNX Runtime >= 1.23 and is not on every GPU provider: the CUDA run uses
    # opset 20, whose decomposed attention runs entirely on the GPU.
    ort_version = tuple(int(x) for x in ort.__version__.split(".")[:2])
    opset = 20 if providers[0] == "CUDAExecutionProvider" or ort_version < (1, 23) else ONNX_OPSET
    # the plain graph (input_ids -> logits); the default export is the KV-cached one (more inputs)
    export_onnx(model, path, export_metadata(model, tokenizer.state_dict(), "onnx"), opset=opset, with_past=False)
    sess = ort.InferenceSession(str(path), providers=providers)
    ids = torch.randint(0, model.config["vocab_size"], (4, min(128, model.max_seq_len)))
    with torch.no_grad():
        ref = model(ids).numpy()
    inp = sess.get_inputs()[0].name
    got = sess.run(None, {inp: ids.numpy()})[0]
    t0 = time.perf_counter()
    for _ in range(20):
        sess.run(None, {inp: ids.numpy()})
    return {"onnxruntime": ort.__version__, "opset": opset,
            "providers_available": ort.get_available_providers(), "provider_used": sess.get_providers()[0],
            "max_abs_diff": float(abs(ref - got).max()), "ms_per_batch": round(1000 * (time.perf_counter() - t0) / 20, 2),
            "file_mb": round(path.stat().st_size / 1e6, 2)}


def write_report(results: dict, out_dir: Path, command: str) -> Path:
    name = results["device"].replace(" ", "-").replace("/", "-").replace("(", "").replace(")", "")
    path = out_dir / f"gpu-{name}.md"
    lines = [f"# GPU check on {results['device']}", "",
             f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
             f"- command: `{command}`",
             f"- torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}", ""]
    for key, heading in (("amp_notebook", "nbs/07b_gpu.ipynb cells: fp32, AMP, AMP + torch.compile"),
                         ("amp_fp16", "fp16 + GradScaler (the T4 path) on this device")):
        a = results.get(key, {})
        if a.get("ok") and a.get("rows"):
            from tiny_transformer.amp import format_table

            lines += [f"## {heading}", "", format_table(a["rows"]), ""]
    g = results.get("gpt2_small", {})
    if g.get("ok"):
        lines += ["## GPT-2-small-sized model (768 wide, 12 layers, 12 heads, context 1024, char vocabulary)", "",
                  f"batch {g['batch']} x {g['seq']} tokens; {g['flops_per_token'] / 1e9:.3f} GFLOP/token; "
                  f"bf16 dense peak {g['peak_bf16'] / 1e12:.0f} TFLOP/s", "",
                  "| variant | tokens/s | step ms | MFU (vs bf16 peak) | peak memory GB |", "|---|---|---|---|---|"]
        for v in ("fp32_eager", "bf16_eager", "bf16_compile"):
            r = g[v]
            lines.append(f"| {v} | {r['tokens_per_s']:,} | {r['step_ms']} | {r['mfu']:.1%} | {r['peak_mem_gb']} |")
        lines += ["", f"speedup bf16 vs fp32 (TF32 matmuls): {g['bf16_vs_fp32']}x; "
                      f"compile vs eager (bf16): {g['compile_vs_eager']}x", ""]
    n = results.get("nanogpt_char", {})
    if n.get("ok"):
        lines += ["## nanoGPT shakespeare-char configuration (6 layers, 6 heads, 384 wide, context 256, batch 64, dropout 0.2)", "",
                  f"- {n['steps']} steps in {n['wall_time_s']} s ({n['tokens_per_s']:,} tokens/s, bf16 + compile)",
                  f"- final val loss {n['val_loss']}, best {n['best_val_loss']}",
                  f"- val curve: {n['val_curve']}", ""]
    lines += ["## All results (JSON)", "", "```json", json.dumps(results, indent=1, default=str), "```", ""]
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for gpu-<device>.md")
    parser.add_argument("--nanogpt-steps", type=int, default=5000)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: amp,fp16,cells,gpt2,nanogpt")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="without CUDA: run the Trainer, resume and ONNX sections on a tiny CPU model (tests the script)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.cpu_dry_run:
        print("gpu_check: CUDA is not available on this machine; this check needs an NVIDIA GPU. Nothing was run.",
              file=sys.stderr)
        return 3
    try:  # the package and its pure-Python dependencies (the device machine has no nbdev, so maybe no fastcore)
        import tiny_transformer.amp  # noqa: F401
    except ModuleNotFoundError as e:
        print(f"gpu_check: Python module {e.name!r} is missing on this machine. Run `bash checks/gpu_check.sh --prepare` "
              "where it is installed and bring .gpudata/ along (it is put on the path), or install it.", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
                     "torch": torch.__version__}
    if device == "cpu":
        skip |= {"gpt2"}  # the notebook cells run on a CPU too (fp32)
    workdir = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    t0 = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "amp" not in skip:
        section(results, "amp_notebook")(run_notebook_cells, ROOT / "nbs" / "07b_gpu.ipynb", out_dir, device == "cpu")
    if "fp16" not in skip:
        section(results, "amp_fp16")(amp_fp16_path, device)
    if "cells" not in skip:
        section(results, "notebook_gpu_cells")(notebook_gpu_cells)
    if "gpt2" not in skip:
        section(results, "gpt2_small")(gpt2_small_throughput)
    if "nanogpt" not in skip:
        n = section(results, "nanogpt_char")(nanogpt_shakespeare_char, workdir, args.nanogpt_steps, device)
        if n.get("ok"):
            section(results, "checkpoint_resume")(checkpoint_resume, Path(n["run_dir"]), device)
            section(results, "onnx")(onnx_runtime, Path(n["run_dir"]))
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    report = write_report(results, out_dir, "bash checks/gpu_check.sh")
    log(f"wrote {report}")
    return 0 if all(v.get("ok", True) for v in results.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
