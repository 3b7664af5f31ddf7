"""The configuration layer from outside the notebook: every file in configs/, preset round trips,
plain-data export, layering order, and the error message of each kind of bad input."""
from __future__ import annotations

import io

import pytest
import torch
import yaml

from helpers import ROOT
from tiny_transformer.config import (
    MISSING, PRESETS, ConfigError, ExperimentConfig, ModelConfig, TrainingConfig, config_diff, format_config_diff,
    get_gpu_config, get_medium_config, get_small_config, get_tiny_config, load_config,
)

CONFIGS = ROOT / "configs"
REQUIRED = {"tiny", "small", "medium", "gpu", "dev", "prod", "shakespeare_baseline"}


def test_required_config_files_exist():
    assert REQUIRED <= {p.stem for p in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_loads_and_validates(path):
    cfg = load_config([path])
    assert isinstance(cfg, ExperimentConfig)
    # validated again from its own plain data: nothing in a file may bypass the checks
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trips_through_yaml_unchanged(name, tmp_path):
    cfg = PRESETS[name]()
    path = cfg.save(tmp_path / "sub" / "config.yaml")
    again = ExperimentConfig.load(path)
    assert again == cfg
    assert again.to_yaml() == path.read_text() == cfg.to_yaml()
    assert ExperimentConfig.load(CONFIGS / f"{name}.yaml") == cfg  # the file in configs/ is the preset


def test_preset_functions_are_the_contract_names():
    assert [f().name for f in (get_tiny_config, get_small_config, get_medium_config, get_gpu_config)] == \
        ["tiny", "small", "medium", "gpu"]
    assert get_gpu_config().model.d_model == 768 and get_gpu_config().training.precision == "bf16"
    assert get_tiny_config().device == "auto" and get_tiny_config().training.precision == "auto"


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_to_dict_is_plain_data_that_loads_with_weights_only():
    cfg = load_config([CONFIGS / "shakespeare_baseline.yaml", CONFIGS / "prod.yaml"])
    data = cfg.to_dict()
    assert _plain(data)
    buf = io.BytesIO()
    torch.save({"config": data}, buf)
    buf.seek(0)
    assert ExperimentConfig.from_dict(torch.load(buf, weights_only=True)["config"]) == cfg


def test_yaml_1_1_exponent_without_dot_is_a_float(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("training:\n  learning_rate: 1e-4\n  max_steps: 5e3\n")
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "1e-4"  # the trap
    cfg = load_config([path])
    assert cfg.training.learning_rate == 1e-4 and isinstance(cfg.training.learning_rate, float)
    assert cfg.training.max_steps == 5000 and isinstance(cfg.training.max_steps, int)


def test_layering_order_preset_then_files_then_overrides(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("seed: 1\nmodel:\n  n_layers: 5\n  dropout: 0.2\n")
    b.write_text("seed: 2\nmodel:\n  n_layers: 6\n")
    cfg = load_config([a, b], ["model.n_layers=7"], base=get_small_config())
    assert cfg.name == "small" and cfg.model.d_model == get_small_config().model.d_model  # from the preset
    assert cfg.model.dropout == 0.2  # only a.yaml sets it
    assert cfg.seed == 2  # b.yaml wins over a.yaml
    assert cfg.model.n_layers == 7  # the override wins over both


def test_ranges_are_checked_on_the_merged_result(tmp_path):
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text("training:\n  warmup_steps: 2000\n")  # invalid alone (default max_steps is 1000)
    overlay.write_text("training:\n  max_steps: 5000\n")
    assert load_config([base, overlay]).training.warmup_steps == 2000


def test_config_diff_and_its_rendering():
    diff = config_diff(get_tiny_config(), load_config(overrides=["training.learning_rate=5e-4"], base=get_tiny_config()))
    assert diff == {"training.learning_rate": (2e-3, 5e-4)}
    table = format_config_diff(diff, labels=("base", "lr5e-4"))
    assert "training.learning_rate" in table and "0.002" in table and "0.0005" in table and "lr5e-4" in table
    old = get_tiny_config().to_dict()
    old["training"].pop("on_oom")
    assert config_diff(old, get_tiny_config()) == {"training.on_oom": (MISSING, "split")}
    assert config_diff(get_tiny_config(), get_tiny_config()) == {}


def test_direct_construction_validates_and_names_the_field():
    with pytest.raises(ConfigError, match=r"model\.d_model: 130 is not divisible"):
        ModelConfig(d_model=130, n_heads=4)
    with pytest.raises(ConfigError, match=r"training\.optimizer"):
        TrainingConfig(optimizer="sgd")
    assert ModelConfig(d_model=256, n_heads=8).d_k == 32


# (key the message must name, YAML texts layered in order, overrides, fragments the message must contain)
BAD = {
    "typo in a section": ("model.d_modl", ["model:\n  d_modl: 512\n"], [], ["did you mean model.d_model"]),
    "typo at top level": ("sed", ["sed: 3\n"], [], ["did you mean seed"]),
    "typo in a section name": ("trainig", ["trainig:\n  max_steps: 3\n"], [], ["did you mean training"]),
    "key in the wrong section": ("training.dropout", ["training:\n  dropout: 0.1\n"], [], ["model.dropout"]),
    "chapter's name for a key": ("training.eval_interval", ["training:\n  eval_interval: 5\n"], [], ["training.eval_every"]),
    "string for an int": ("model.n_heads", ["model:\n  n_heads: four\n"], [], ["'four'", "an integer"]),
    "fraction for an int": ("training.batch_size", ["training:\n  batch_size: 12.5\n"], [], ["12.5", "whole number"]),
    "bool for a number": ("training.learning_rate", ["training:\n  learning_rate: true\n"], [], ["a number"]),
    "list for a string": ("name", ["name: [a, b]\n"], [], ["a string"]),
    "section given a scalar": ("model", ["model: 3\n"], [], ["mapping"]),
    "dropout out of range": ("model.dropout", ["model:\n  dropout: 1.0\n"], [], ["1.0", "dropout < 1"]),
    "negative weight decay": ("training.weight_decay", ["training:\n  weight_decay: -0.1\n"], [], [">= 0"]),
    "choice not allowed": ("training.precision", ["training:\n  precision: fp8\n"], [], ["'fp32'", "'bf16'"]),
    "tracker not allowed": ("tracking.backend", ["tracking:\n  backend: [tensorbord]\n"], [], ["tensorboard"]),
    "heads do not divide width": ("model.d_model", ["model:\n  d_model: 100\n  n_heads: 8\n"], [], ["n_heads=8"]),
    "warmup not below max_steps": ("training.warmup_steps", [], ["training.max_steps=10"], ["max_steps=10"]),
    "bpe vocabulary too small": ("model.vocab_size", ["data:\n  tokenizer: bpe\n"], [], ["257"]),
    "yaml syntax error": ("config", ["model: {d_model: 128\n"], [], ["invalid YAML", "line"]),
    "top level not a mapping": ("config", ["- 1\n- 2\n"], [], ["mapping"]),
    "override of an unknown key": ("model.d_modle", [], ["model.d_modle=64"], ["did you mean model.d_model"]),
    "override of a bare field name": ("n_layers", [], ["n_layers=4"], ["model.n_layers"]),
    "override with a bad value": ("training.max_steps", [], ["training.max_steps=lots"], ["'lots'", "an integer"]),
    "override without '='": ("training.max_steps", [], ["training.max_steps"], ["section.key=value"]),
    "override with broken yaml": ("tracking.tags", [], ["tracking.tags=[a, b"], ["cannot parse"]),
    "run name with a slash": ("name", [], ["name=a/b"], ["valid run name"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_message_names_the_key(case, tmp_path):
    key, texts, overrides, fragments = BAD[case]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"{i}.yaml")
        paths[-1].write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(paths, overrides)
    message = str(info.value)
    assert key in info.value.keys, (key, info.value.keys)
    assert f"{key}:" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config([missing])
    assert str(missing) in str(info.value) and "not found" in str(info.value)


def test_all_problems_are_reported_together(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("model:\n  d_modl: 1\ntraining:\n  optimizer: sgd\n")
    with pytest.raises(ConfigError) as info:
        load_config([a], ["data.tokenzer=bpe"])
    assert info.value.keys == ["model.d_modl", "training.optimizer", "data.tokenzer"]
    assert str(a) in str(info.value) and "command line" in str(info.value)
