"""Train the small Shakespeare model that nbs/07_training.ipynb loads from nbs/assets/, once.

    OMP_NUM_THREADS=1 TT_DATA=/path/to/tinyshakespeare.txt python tools/train_showcase.py [--steps N]

What it does, with the package's own CLIs (nothing here the learner cannot type):
1. `tt-train --preset tiny` plus the overrides in OVERRIDES (a longer run than the preset's smoke test),
   into a scratch run folder (default .cache/showcase, outside the package);
2. `tt-export --format safetensors` of the best checkpoint by val/loss (model-only: weights, config, tokenizer);
3. the weights stored as float16 (halves the file; `load_model_safetensors` loads them into the float32 model),
   with the training command and the best val loss in the file's header, to nbs/assets/shakespeare_tiny.safetensors.
Takes about 12 minutes on one busy CPU core (695 s here, best val/loss 1.685 at step 1400).
"""
import argparse, json, shlex, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "nbs" / "assets" / "shakespeare_tiny.safetensors"
OVERRIDES = ["name=showcase", "tracking.backend=none", "training.eval_every=200", "training.eval_batches=16",
             "checkpoint.save_every=200", "checkpoint.keep_best_n=1"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1400, help="training.max_steps (default: 1400)")
    p.add_argument("--runs", default=str(ROOT / ".cache" / "showcase"), help="output_dir of the run")
    p.add_argument("--output", default=str(ASSET), help="the asset to write")
    p.add_argument("--skip-train", action="store_true", help="only export the finished run")
    args = p.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    train = [str(bin_dir / "tt-train"), "--preset", "tiny", "--no-progress", *OVERRIDES,
             f"training.max_steps={args.steps}", f"output_dir={args.runs}"]
    print("$", shlex.join(train), flush=True)
    if not args.skip_train:
        subprocess.run(train, check=True)

    from tiny_transformer.utils.checkpoint import (CheckpointManager, load_model_safetensors, read_checkpoint,
                                                   save_model_safetensors)
    best = CheckpointManager(Path(args.runs) / "showcase" / "checkpoints").get_best_checkpoint_path()
    val_loss = float(read_checkpoint(best)["metrics"]["val/loss"])
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "model.safetensors"
        subprocess.run([str(bin_dir / "tt-export"), "--checkpoint", str(best), "--format", "safetensors",
                        "--output", str(fp32)], check=True)
        model, meta = load_model_safetensors(fp32)
    header = {k: v for k, v in meta.items() if k not in ("model_config", "tokenizer")}
    export = json.loads(header["tiny_transformer"])  # tt-export's metadata: keep no machine path in the asset
    export["source_checkpoint"] = str(best.relative_to(Path(args.runs)))
    header["tiny_transformer"] = json.dumps(export)
    public = ["tt-train", "--preset", "tiny", *OVERRIDES, f"training.max_steps={args.steps}"]
    header["showcase"] = json.dumps({"command": shlex.join(public), "val_loss": round(val_loss, 4),
                                     "step": read_checkpoint(best)["step"], "dtype": "float16"})
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_model_safetensors(model.half(), args.output, metadata=header, tokenizer=meta["tokenizer"])
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({size / 1e6:.2f} MB), best val/loss {val_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
