"""`tt-train` as a user runs it: a real process."""
from helpers import run


def test_help():
    result = run(["tt-train", "--help"], timeout=60)
    assert result.returncode == 0
    assert "usage: tt-train" in result.stdout and "--max-steps" in result.stdout


def test_bad_argument_exits_2():
    result = run(["tt-train", "--max-steps", "0"], timeout=60)
    assert result.returncode == 2
    assert "--max-steps must be >= 1" in result.stderr


def test_short_run_prints_a_sample():
    result = run(["tt-train", "--max-steps", "30", "--sample-tokens", "40"], timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "trained 30 steps" in out
    sample = out.split("-" * 60)[-1].strip()
    assert sample.startswith("ROMEO:") and len(sample) >= 40
