"""Hostile-input suite for the log readers (tiny_transformer.utils.log_analysis): a valid run log plus one line a
file can hold, written to a real file; every reader must keep every whole record, leave out what is not a step or
a number, and never raise. Each row: (id, bytes appended to a valid log, extra steps load_metrics must keep)."""
from __future__ import annotations

import json
import math
import warnings

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

START = {"timestamp": "2026-01-01T00:00:00+00:00", "event": "start", "experiment": "run",
         "config": {"training": {"learning_rate": 0.001}}}
END = {"timestamp": "2026-01-01T00:01:00+00:00", "event": "end", "status": "completed", "wall_time_s": 60.0}


def _metrics(step: int, loss: float) -> dict:
    return {"timestamp": f"2026-01-01T00:00:{10 + step:02d}+00:00", "event": "metrics", "step": step,
            "metrics": {"train/loss": loss, "val/loss": loss + 0.1}}


BASE = b"".join(json.dumps(r).encode() + b"\n" for r in (START, _metrics(0, 3.0), _metrics(1, 2.5)))


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


HOSTILE = [
    ("string-step", line({"step": "10", "metrics": {"train/loss": 2.0}}), [10]),
    ("string-step-word", line({"step": "ten", "metrics": {"train/loss": 2.0}}), []),
    ("float-step", line({"step": 11.0, "metrics": {"train/loss": 2.0}}), [11]),
    ("fractional-step", line({"step": 11.5, "metrics": {"train/loss": 2.0}}), []),
    ("negative-step", line({"step": -3, "metrics": {"train/loss": 2.0}}), [-3]),
    ("bool-step", line({"step": True, "metrics": {"train/loss": 2.0}}), []),
    ("null-step", line({"step": None, "metrics": {"train/loss": 2.0}}), []),
    ("huge-step", line({"step": 10 ** 30, "metrics": {"train/loss": 2.0}}), []),
    ("step-5000-digits", b'{"step": ' + b"9" * 5000 + b', "metrics": {"train/loss": 2.0}}\n', []),
    ("string-metric", line({"step": 12, "metrics": {"train/loss": "2.25"}}), [12]),
    ("word-metric", line({"step": 13, "metrics": {"train/loss": "high"}}), []),
    ("nested-metric", line({"step": 14, "metrics": {"train/loss": {"mean": 2.0}}}), []),
    ("list-metric", line({"step": 15, "metrics": {"train/loss": [1, 2]}}), []),
    ("null-metric", line({"step": 16, "metrics": {"train/loss": None}}), []),
    ("bool-metric", line({"step": 17, "metrics": {"train/loss": False}}), []),
    ("huge-int-metric", b'{"step": 18, "metrics": {"train/loss": ' + b"9" * 400 + b"}}\n", []),
    ("overflow-float-metric", b'{"step": 19, "metrics": {"train/loss": 1e999}}\n', [19]),
    ("nan-strings", line({"step": 20, "metrics": {"train/loss": "NaN", "val/loss": "-Infinity"}}), [20]),
    ("bare-nan-token", b'{"step": 21, "metrics": {"train/loss": NaN}}\n', [21]),
    ("metrics-is-list", line({"step": 22, "metrics": [1, 2]}), []),
    ("metrics-is-string", line({"step": 23, "metrics": "2.0"}), []),
    ("metric-named-step", line({"step": 24, "metrics": {"step": 99, "time_s": 5, "train/loss": 2.0}}), [24]),
    ("bad-timestamp", line({"step": 25, "timestamp": "yesterday", "metrics": {"train/loss": 2.0}}), [25]),
    ("number-timestamp", line({"step": 26, "timestamp": 5, "metrics": {"train/loss": 2.0}}), [26]),
    ("naive-timestamp", line({"step": 27, "timestamp": "2026-01-01T00:00:30", "metrics": {"train/loss": 2.0}}), [27]),
    ("non-dict-array", b"[1, 2, 3]\n", []),
    ("non-dict-string", b'"hello"\n', []),
    ("non-dict-number", b"42\n", []),
    ("non-dict-null", b"null\n", []),
    ("deep-nesting", b"[" * 100_000 + b"\n", []),
    ("deep-nesting-in-object", b'{"step": 28, "x": ' + b"[" * 100_000 + b"\n", []),
    ("binary-garbage", bytes(b for b in range(256) if b != 10) + b"\n", []),
    ("invalid-utf8-in-string", b'{"step": 29, "message": "\xff\xfe", "metrics": {"train/loss": 2.0}}\n', [29]),
    ("nul-bytes", b"\x00" * 64 + b"\n", []),
    ("crlf", b'{"step": 30, "metrics": {"train/loss": 2.0}}\r\n', [30]),
    ("blank-lines", b"\n   \n\t\n", []),
    ("duplicate-keys", b'{"step": 31, "step": 32, "metrics": {"train/loss": 2.0}}\n', [32]),
    ("start-with-odd-fields", line({"event": "start", "experiment": {"a": 1}, "config": "not a dict"}), []),
    ("end-with-odd-fields", line({"event": "end", "status": ["x"], "wall_time_s": "long"}), []),
    ("unicode-line-separator", line({"step": 33, "message": "a\u2028b\u0085c", "metrics": {"train/loss": 2.0}}), [33]),
    ("truncated-last-line", b'{"step": 34, "metrics": {"train/lo', []),
]


@pytest.mark.parametrize("extra,kept", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_readers_survive_any_line(tmp_path, extra, kept):
    from tiny_transformer.utils.log_analysis import (compare_experiments, load_metrics, parse_json_logs,
                                                     plot_loss_curve, summarize_experiments)

    log = tmp_path / "run" / "run.jsonl"
    log.parent.mkdir()
    log.write_bytes(BASE + extra + line(_metrics(2, 2.0)) + line(END) if not extra.endswith(b"lo") else BASE + extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = parse_json_logs(log)
        frame = load_metrics(log)
        summary = summarize_experiments(tmp_path, metric="train/loss")
        fig = compare_experiments(tmp_path, metric="train/loss", smoothing=0.5)
        png = plot_loss_curve(log, tmp_path / "loss.png")
    whole = [0, 1] if extra.endswith(b"lo") else [0, 1, 2]
    assert sorted(frame.index) == sorted(whole + kept)
    assert frame.loc[0, "train/loss"] == 3.0 and frame.loc[1, "val/loss"] == pytest.approx(2.6)
    assert all(dtype.kind == "f" for dtype in frame.dtypes)  # every column numeric
    assert records[0]["event"] == "start" and len(records) >= len(whole) + 1
    assert len(summary) == 1 and summary.iloc[0]["best train/loss"] <= 3.0
    assert len(fig.axes[0].lines) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_byte_order_mark_and_windows_line_endings_lose_nothing(tmp_path):
    from tiny_transformer.utils.log_analysis import load_metrics, parse_json_logs

    log = tmp_path / "bom.jsonl"
    log.write_bytes(b"\xef\xbb\xbf" + BASE.replace(b"\n", b"\r\n"))
    records = parse_json_logs(log)
    assert records.skipped == 0 and records[0]["event"] == "start"
    assert list(load_metrics(records).index) == [0, 1]


def test_skipped_lines_are_counted_and_warned_once(tmp_path):
    from tiny_transformer.utils.log_analysis import parse_json_logs

    log = tmp_path / "bad.jsonl"
    log.write_bytes(BASE + b"[1]\n" + b"\xff\xfe\n" + b'{"step": 9')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = parse_json_logs(log)
    assert records.skipped_lines == [4, 5, 6]
    assert len(caught) == 1 and "skipped 3 line(s)" in str(caught[0].message)
    assert math.isclose(records[2]["metrics"]["train/loss"], 2.5)
