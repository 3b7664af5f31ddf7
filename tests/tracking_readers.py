"""Test plumbing: read back what the tracking backends wrote (TensorBoard event files, offline wandb runs)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def read_tensorboard(log_dir: str | os.PathLike):
    "A loaded `EventAccumulator` for the event files in `log_dir` (every scalar and text kept; the default keeps 10 texts)."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def read_tensorboard_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    "{tag: [(step, value), ...]} for every scalar in the event files of `log_dir`."
    accumulator = read_tensorboard(log_dir)
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_wandb_run(run_dir: str | os.PathLike) -> dict:
    "The newest offline wandb run under `run_dir`: {'history': [rows], 'config': {...}, 'summary': {...}, 'path'}."
    from wandb.proto import wandb_internal_pb2

    from tiny_transformer.utils.experiment import wandb_records

    files = sorted(Path(run_dir).rglob("offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no offline wandb run (offline-run-*/run-*.wandb) under {run_dir}")
    history, config, summary = [], {}, {}
    for data in wandb_records(files[-1]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
        elif kind in ("run", "config"):
            for i in (record.run.config.update if kind == "run" else record.config.update):
                config[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in record.summary.update if i.key})
    config = {k: v.get("value", v) if isinstance(v, dict) else v for k, v in config.items()}
    return {"history": history, "config": config, "summary": summary, "path": files[-1]}


def tensorboard_tags(port: int, deadline_s: float, server) -> dict:
    "Poll a running `tensorboard` on 127.0.0.1:`port` until it serves scalar tags; {run: [tags]} or {} on timeout."
    import time
    import urllib.error
    import urllib.request

    deadline, tags = time.monotonic() + deadline_s, {}
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as r:
                tags = json.loads(r.read())
            if tags:
                return tags
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    return tags
