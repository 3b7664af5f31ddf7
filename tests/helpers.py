"""Small shared fixtures for the process-level tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def corpus_path() -> Path:
    "The corpus the tests use: $TT_DATA (CI points it at ../shared/data)."
    path = os.environ.get("TT_DATA")
    if not path or not Path(path).is_file():
        raise RuntimeError("Set TT_DATA to a local copy of tinyshakespeare.txt to run the tests")
    return Path(path)


def run(cmd: list[str], timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    "Run a command (first item looked up in the venv's bin/), capturing text output."
    exe = BIN / cmd[0]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(exe) if exe.exists() else cmd[0], *cmd[1:]], capture_output=True, text=True,
                          timeout=timeout, env=full_env, **kwargs)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    "Ask a server process to stop (SIGTERM); kill it if it has not exited after `timeout` seconds."
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def brief_checkpoint(folder: Path, max_seq_len: int, steps: int):
    """Train a small model for `steps` steps on the corpus and save it as a checkpoint dict (model, model_config,
    tokenizer, step) in `folder/ckpt.pt`. Returns (model in eval mode, checkpoint path, corpus)."""
    import torch

    from tiny_transformer.data import RandomWindowSampler, fixed_batches, prepare_corpus
    from tiny_transformer.model import TinyTransformerLM
    from tiny_transformer.training import train_simple

    torch.manual_seed(0)
    torch.set_num_threads(1)
    corpus = prepare_corpus(corpus_path())
    model = TinyTransformerLM(corpus.vocab_size, d_model=48, n_heads=4, n_layers=2, d_ff=192, max_seq_len=max_seq_len,
                              dropout=0.0)
    train_simple(model, RandomWindowSampler(corpus.train, max_seq_len, 16, seed=0),
                 fixed_batches(corpus.val, max_seq_len, 16, 2), max_steps=steps, learning_rate=3e-3,
                 warmup_steps=max(1, steps // 10), eval_every=steps, progress=False)
    path = Path(folder) / "ckpt.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config, "tokenizer": corpus.tokenizer.state_dict(),
                "step": steps}, path)
    return model.eval(), path, corpus
