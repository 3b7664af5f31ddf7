"""`tt-train` as a user runs it: a real process, from --help to a printed sample."""
from helpers import run


def test_tensorboard_hint_only_when_tensorboard_was_written(tmp_path):
    result = run(["tt-train", "--preset", "tiny", "training.max_steps=10", "training.eval_every=10",
                  "training.warmup_steps=2", "training.sample_tokens=0", "tracking.backend=tensorboard",
                  "model.d_model=64", "model.n_layers=1", "model.max_seq_len=32", "training.batch_size=4",
                  f"output_dir={tmp_path}", "name=tb", "--no-progress"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"tensorboard --logdir {tmp_path}" in result.stdout
    assert any((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))


def test_help():
    result = run(["tt-train", "--help"], timeout=60)
    assert result.returncode == 0
    for flag in ("usage: tt-train", "--preset", "--config", "--resume", "--print-config", "KEY=VALUE"):
        assert flag in result.stdout


def test_print_config_writes_nothing(tmp_path):
    result = run(["tt-train", "--preset", "tiny", "training.max_steps=777", f"output_dir={tmp_path}", "--print-config"],
                 timeout=60)
    assert result.returncode == 0, result.stderr
    assert "max_steps: 777" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_short_run_prints_a_sample_and_where_things_are(tmp_path):
    result = run(["tt-train", "--preset", "tiny", "training.max_steps=30", "training.eval_every=15",
                  "training.warmup_steps=5", "training.sample_tokens=40", "tracking.backend=console",
                  f"output_dir={tmp_path}", "name=short", "--no-progress"], timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    sample = out.split("-" * 60)[1].strip()
    assert sample.startswith("ROMEO:") and len(sample) >= 40
    assert f"Run directory: {tmp_path / 'short'}" in out
    assert "tensorboard --logdir" not in out  # the console tracker wrote no TensorBoard events: no such hint
    assert (tmp_path / "short" / "config.yaml").is_file() and (tmp_path / "short" / "short.jsonl").is_file()
