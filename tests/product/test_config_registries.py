"""Config validation reads its name lists from the registries that own them (issue 14.4): a name added to a
registry is accepted with no other edit, a typo is refused with the registry's names and a suggestion, and the
config module declares none of those names itself."""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Literal, get_args, get_origin

import pytest

from helpers import ROOT, run
import tiny_transformer.config as config_module
from tiny_transformer.config import ConfigError, ExperimentConfig, TrackingConfig, TrainingConfig, load_config
from tiny_transformer.schedules import LR_SCHEDULES, lr_factor
from tiny_transformer.schema import allowed_choices, field_types, is_section, resolve_registry
from tiny_transformer.steps import AMP_DTYPES
from tiny_transformer.utils.experiment import TRACKER_BACKENDS, ExperimentTracker, TrackerBackend


def registry_fields(cls=ExperimentConfig, prefix=""):
    "(dotted key, field) for every field of the schema whose metadata names a registry."
    out = []
    for f in dataclasses.fields(cls):
        tp = field_types(cls)[f.name]
        out += registry_fields(tp, f"{prefix}{f.name}.") if is_section(tp) else \
            [(prefix + f.name, f)] if "choices" in f.metadata else []
    return out


def test_each_registry_field_points_at_its_owner_and_its_default_is_allowed():
    fields = dict(registry_fields())
    assert {key: f.metadata["choices"] for key, f in fields.items()} == {
        "training.lr_schedule": "tiny_transformer.schedules:LR_SCHEDULES",
        "training.precision": "tiny_transformer.steps:AMP_DTYPES",
        "data.tokenizer": "tiny_transformer.data:TOKENIZERS",
        "tracking.backend": "tiny_transformer.utils.experiment:TRACKER_BACKENDS",
    }
    for key, f in fields.items():
        assert f.default in allowed_choices(f.metadata), key
        assert resolve_registry(f.metadata["choices"]), key  # not empty


def test_config_declares_no_copy_of_a_registry_name_list():
    registries = [set(resolve_registry(f.metadata["choices"])) for _, f in registry_fields()]
    lists = [set(v) for v in vars(config_module).values()
             if isinstance(v, (tuple, list, frozenset, set)) and v and all(isinstance(x, str) for x in v)]
    lists += [set(get_args(v)) for v in vars(config_module).values() if get_origin(v) is Literal]

    def literals(cls):
        for name, tp in field_types(cls).items():
            if is_section(tp):
                yield from literals(tp)
            for t in (tp, *get_args(tp)):
                if get_origin(t) is Literal:
                    yield set(get_args(t))
                for inner in get_args(t):
                    if get_origin(inner) is Literal:
                        yield set(get_args(inner))

    lists += list(literals(ExperimentConfig))
    for names in lists:
        for registry in registries:
            assert len(names & registry) < 2, f"config spells out {sorted(names)}, a copy of the registry {sorted(registry)}"


class MemoryBackend(TrackerBackend):
    "A tracker backend that keeps what it is sent."
    name = "memory"
    seen: list = []

    def log_metrics(self, metrics, step):
        MemoryBackend.seen.append((step, dict(metrics)))


def test_a_tracker_backend_added_to_the_registry_is_accepted_and_used(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="'memory' is not allowed"):
        load_config(overrides=["tracking.backend=memory"])
    monkeypatch.setitem(TRACKER_BACKENDS, "memory", MemoryBackend)  # the only edit
    monkeypatch.setattr(MemoryBackend, "seen", [])
    cfg = load_config(overrides=["tracking.backend=memory"])
    with ExperimentTracker.from_config(cfg.tracking, tmp_path, "run") as tracker:
        assert tracker.backend_names == ["memory"]
        tracker.log_metrics({"loss": 1.5}, step=3)
    assert MemoryBackend.seen == [(3, {"loss": 1.5})]
    assert ExperimentConfig.from_dict({"tracking": {"backend": ["memory", "console"]}}).tracking.backend == ["memory", "console"]


def test_a_schedule_added_to_the_registry_is_accepted_and_used(monkeypatch, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  lr_schedule: halving\n  max_steps: 100\n  warmup_steps: 0\n")
    with pytest.raises(ConfigError, match="'halving' is not allowed"):
        load_config([path])
    monkeypatch.setitem(LR_SCHEDULES, "halving", lambda progress, min_lr_ratio: 0.5 ** int(progress * 4))
    t = load_config([path]).training
    assert t.lr_schedule == "halving"
    assert [lr_factor(s, t.lr_schedule, t.warmup_steps, t.max_steps) for s in (0, 30, 60, 99)] == [1.0, 0.5, 0.25, 0.125]


def test_a_precision_added_to_the_registry_is_accepted(monkeypatch):
    with pytest.raises(ConfigError, match="did you mean 'bf16'"):
        TrainingConfig(precision="bf61")
    monkeypatch.setitem(AMP_DTYPES, "fp8", None)
    assert TrainingConfig(precision="fp8").precision == "fp8"


@pytest.mark.parametrize("key, value, registry, suggestion", [
    ("tracking.backend", "tensorbord", TRACKER_BACKENDS, "tensorboard"),
    ("tracking.backend", "[console, wandbb]", TRACKER_BACKENDS, "wandb"),
    ("training.lr_schedule", "cosin", LR_SCHEDULES, "cosine"),
    ("training.precision", "fp61", AMP_DTYPES, "fp16"),
])
def test_a_typo_lists_the_registry_names_and_suggests_one(key, value, registry, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"{key}={value}"])
    message = str(info.value)
    assert key in message and f"did you mean {suggestion!r}" in message
    assert all(repr(name) in message for name in registry)


def test_tt_config_reports_a_registry_typo_with_exit_2(tmp_path):
    main = "import sys; from tiny_transformer.presets import config_main; sys.exit(config_main(sys.argv[1:]))"
    result = run([sys.executable, "-c", main, "tracking.backend=tensorbord", "--print-config"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "did you mean 'tensorboard'" in result.stderr and "Traceback" not in result.stderr


def test_names_outside_the_registry_are_checked_without_importing_it():
    # 'auto' and 'none' are the field's own values: accepting them must not import the tracker (torch, utils).
    code = ("import sys, json; from tiny_transformer.config import TrackingConfig\n"
            "TrackingConfig(backend='none'); TrackingConfig(backend=['auto'])\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tiny_transformer.') or m == 'torch')))")
    result = run([sys.executable, "-c", code], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == \
        ["tiny_transformer.config", "tiny_transformer.core", "tiny_transformer.schema"]


@pytest.mark.parametrize("value, expect", [(0, "0 < start_timeout_s <= 600"), (-1, "0 < start_timeout_s <= 600"),
                                           (601, "0 < start_timeout_s <= 600"), (".inf", "finite"), ("soon", "number")])
def test_tracking_start_timeout_is_bounded(tmp_path, value, expect):
    path = tmp_path / "run.yaml"
    path.write_text(f"tracking:\n  start_timeout_s: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config([path])
    assert "tracking.start_timeout_s" in str(info.value) and expect in str(info.value)


def test_tracker_from_config_reads_the_start_timeout(tmp_path):
    section = load_config(overrides=["tracking.backend=console", "tracking.start_timeout_s=2.5"]).tracking
    with ExperimentTracker.from_config(section, tmp_path, "run") as tracker:
        assert tracker.start_timeout_s == 2.5
    assert TrackingConfig().start_timeout_s == 10.0
