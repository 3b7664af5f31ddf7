"""Train the tiny / small / medium presets with the simple loop and record their validation loss.

Checks the claims in nbs/02_config.ipynb (tiny: ~2.0, small: < 1.9, medium: ~1.5, char tokenizer).
Usage: python bench/config_presets.py [preset[@key=value,...] ...]   (writes bench/results/config_presets.md)
Uses the config's model, batch, learning rate, warmup, steps and eval settings with
tiny_transformer.training.train_simple (AdamW, weight decay 0.1, clip 1.0, cosine to 0.1x).
"""
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from tiny_transformer.config import load_config, resolve_device
from tiny_transformer.presets import get_preset
from tiny_transformer.data import RandomWindowSampler, fixed_batches, prepare_corpus
from tiny_transformer.model import TinyTransformerLM
from tiny_transformer.training import train_simple


def run(spec: str, device: str) -> dict:
    "spec: a preset name, optionally with overrides: 'tiny@training.max_steps=400,training.batch_size=16'."
    name, _, overrides = spec.partition("@")
    cfg = load_config(overrides=[o for o in overrides.split(",") if o], base=get_preset(name))
    torch.manual_seed(cfg.seed)
    corpus = prepare_corpus(cfg.data.path, tokenizer=cfg.data.tokenizer, val_fraction=cfg.data.val_fraction)
    kwargs = {**cfg.model.to_kwargs(), "vocab_size": corpus.vocab_size}
    model = TinyTransformerLM(**kwargs).to(device)
    t, m = cfg.training, cfg.model
    sampler = RandomWindowSampler(corpus.train, block_size=m.max_seq_len, batch_size=t.batch_size, seed=cfg.seed, device=device)
    val = fixed_batches(corpus.val, block_size=m.max_seq_len, batch_size=t.batch_size, n_batches=t.eval_batches)
    val = [(x.to(device), y.to(device)) for x, y in val]
    t0 = time.perf_counter()
    # fp32 (TF32 matmuls on CUDA). Do NOT wrap this whole loop in torch.autocast: autocast caches the
    # low-precision copy of each weight until the outermost autocast context exits, so across many
    # steps the model keeps using its step-0 weights and stops learning (measured: val loss 3.66 vs 2.16).
    history = train_simple(model, sampler, val, max_steps=t.max_steps, learning_rate=t.learning_rate,
                           warmup_steps=t.warmup_steps, grad_clip=t.grad_clip, eval_every=t.eval_every, progress=False)
    seconds = time.perf_counter() - t0
    best = min(h["val/loss"] for h in history)
    row = dict(preset=spec, params=model.num_parameters(), steps=t.max_steps, final=history[-1]["val/loss"], best=best, seconds=seconds)
    print(row, flush=True)
    return row


def main(names):
    torch.backends.cuda.matmul.allow_tf32 = True
    import tiny_transformer.training as training
    if "device" not in training.train_simple.__code__.co_varnames:  # train_simple evaluates on the CPU; pass the device through
        evaluate = training.evaluate
        training.evaluate = lambda model, batches, device=resolve_device("auto"): evaluate(model, batches, device)
    device = resolve_device("auto")
    rows = [run(n, device) for n in names]
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    lines = ["# Preset validation losses (char tokenizer, train_simple)", "",
             f"- command: `python bench/config_presets.py {' '.join(names)}`",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- machine: {device} ({gpu}), torch {torch.__version__}, fp32 (TF32 matmuls on CUDA)", "",
             "| preset | params | steps | final val loss | best val loss | seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['preset']} | {r['params'] / 1e6:.1f} M | {r['steps']} | {r['final']:.3f} | {r['best']:.3f} | {r['seconds']:.0f} |" for r in rows]
    out = Path(os.environ.get("OUT", "bench/results")) / "config_presets.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny", "small", "medium"])
