"""The whole path as a user walks it: `tt-train` a tiny model, `tt-export` it to ONNX (fp32 and int8, with the KV
cache), `tt-serve` the int8 file, and talk to it with the official `openai` client."""
from pathlib import Path

import pytest

from helpers import run
from serve_helpers import Server, call

from tiny_transformer.utils.log_analysis import parse_json_logs

openai = pytest.importorskip("openai")

TRAIN_ARGS = ["--preset", "tiny", "model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.d_ff=128",
              "model.max_seq_len=64", "training.batch_size=8", "training.max_steps=30", "training.eval_every=15",
              "training.warmup_steps=5", "training.sample_tokens=0", "tracking.backend=none", "logging.console=false"]


def _checkpoint_to_export(folder: Path) -> Path:
    "The best checkpoint if the run kept one, else the newest."
    files = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    assert files, f"tt-train wrote no checkpoint in {folder}: {sorted(p.name for p in folder.iterdir())}"
    best = [p for p in files if p.name.startswith("best")]
    return (best or files)[-1]


def test_train_export_serve(tmp_path):
    result = run(["tt-train", *TRAIN_ARGS, f"output_dir={tmp_path}", "name=e2e", "--no-progress"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = _checkpoint_to_export(tmp_path / "e2e" / "checkpoints")

    int8 = tmp_path / "model.int8.onnx"
    result = run(["tt-export", "--checkpoint", str(checkpoint), "--format", "onnx", "--quantize", "int8",
                  "--output", str(int8)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fp32 = tmp_path / "model.onnx"  # the fp32 export that int8 was quantized from
    assert int8.is_file() and fp32.is_file() and int8.stat().st_size < fp32.stat().st_size
    assert f"wrote {int8}" in result.stdout and "validation loss" in result.stdout

    log_file = tmp_path / "serve.jsonl"
    server = Server(int8, "--max-tokens", 64, "--timeout", 60, log_file=log_file)
    try:
        status, health = call(f"{server.url}/health", timeout=30)
        assert status == 200 and health["status"] == "ok" and health["backend"] == "onnx"
        assert health["model"] == int8.name and health["model_config"]["d_model"] == 64
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        done = client.completions.create(model=int8.name, prompt="ROMEO:", max_tokens=20, seed=0)
        assert len(done.choices[0].text) > 0 and done.usage.completion_tokens == 20
        streamed = client.completions.create(model=int8.name, prompt="ROMEO:", max_tokens=20, seed=0, stream=True)
        assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text
    finally:
        server.stop()
    assert server.proc.returncode is not None  # the server process is gone
    # The server's log is in the training logs' format: parse_json_logs reads every line.
    records = parse_json_logs(log_file)
    assert len(records) >= 3 and not records.skipped
    assert all({"timestamp", "level", "message"} <= set(r) for r in records)
    assert any(r.get("path") == "/v1/completions" and r.get("status") == 200 and "request_id" in r for r in records)
