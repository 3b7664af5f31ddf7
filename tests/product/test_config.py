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
    "override with broken yaml": ("tracking.tags", [], ["tracking.tags=[a, b"], ["invalid YAML"]),
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


# Hostile values (issue 17): every numeric field must be finite and within what the machine holds.
# (key the message must name, override, fragment the message must contain)
HOSTILE_VALUES = [
    ("training.learning_rate", "training.learning_rate=.inf", "finite"),
    ("training.learning_rate", "training.learning_rate=.nan", "finite"),
    ("training.learning_rate", "training.learning_rate=1e400", "finite"),
    ("training.learning_rate", "training.learning_rate=100", "learning_rate <= 10"),
    ("training.learning_rate", "training.learning_rate=1e-400", "0 < learning_rate"),  # underflows to 0.0
    ("training.weight_decay", "training.weight_decay=1000", "learning_rate * weight_decay < 1"),
    ("training.weight_decay", "training.weight_decay=.inf", "finite"),
    ("training.grad_clip", "training.grad_clip=.inf", "finite"),
    ("training.min_lr_ratio", "training.min_lr_ratio=.nan", "finite"),
    ("training.beta2", "training.beta2=-.inf", "finite"),
    ("training.rollback_lr_factor", "training.rollback_lr_factor=1e39", "float32"),
    ("model.dropout", "model.dropout=.nan", "finite"),
    ("data.val_fraction", "data.val_fraction=.inf", "finite"),
    ("training.max_steps", "training.max_steps=1e20", "too large"),
    ("training.max_steps", "training.max_steps=.inf", "finite integer"),
    ("training.max_steps", "training.max_steps=100000000000000000000000000", "too large"),
    ("training.batch_size", "training.batch_size=99999999999999", "too large"),
    ("training.eval_batches", "training.eval_batches=999999999", "too large"),
    ("training.grad_accum_steps", "training.grad_accum_steps=10000000", "too large"),
    ("training.sample_tokens", "training.sample_tokens=-1", "too small"),
    ("training.sample_tokens", "training.sample_tokens=10000000000", "too large"),
    ("model.d_model", "model.d_model=1e30", "too large"),
    ("model.d_model", "model.d_model=4096000000", "too large"),
    ("model.vocab_size", "model.vocab_size=100000000000", "too large"),
    ("model.max_seq_len", "model.max_seq_len=9999999999", "too large"),
    ("model.n_layers", "model.n_layers=100000", "too large"),
    ("model.d_ff", "model.d_ff=-5", "too small"),
    ("threads", "threads=100000000000", "too large"),
    ("threads", "threads=0", "too small"),
    ("seed", "seed=99999999999999999999999", "too large"),
    ("seed", "seed=-5", "too small"),
    ("checkpoint.keep_best_n", "checkpoint.keep_best_n=-1", "too small"),
    ("checkpoint.save_every", "checkpoint.save_every=1e300", "too large"),
    ("checkpoint.keep_every_n_steps", "checkpoint.keep_every_n_steps=0", "too small"),
    ("name", "name=" + "a" * 300, "at most 128"),
    ("training.sample_prompt", "training.sample_prompt=", "is empty"),  # generation needs a first token
    ("data.tokenizer", "data.tokenizer=bpee", "did you mean 'bpe'"),
]


@pytest.mark.parametrize("key, override, fragment", HOSTILE_VALUES, ids=[o[:40] for _, o, _ in HOSTILE_VALUES])
def test_hostile_value_is_refused_naming_the_key(key, override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config([], [override])
    assert key in info.value.keys and fragment in str(info.value), str(info.value)


def test_model_too_big_for_any_machine_is_refused():
    "Each size within its bound, the total is not: 16 bytes of training state per parameter."
    with pytest.raises(ConfigError, match=r"model\.d_model: the model would have .* parameters"):
        load_config([], ["model.d_model=65536", "model.d_ff=262144"])


@pytest.mark.parametrize("text, key, fragment", [
    ("training:\n  learning_rate: .nan\n", "training.learning_rate", "finite"),
    ("training:\n  learning_rate: .inf\n", "training.learning_rate", "finite"),
    ("training:\n  learning_rate: 1e400\n", "training.learning_rate", "finite"),  # a YAML 1.1 string, 'inf' as a float
    ("training:\n  max_steps: 1.0e+30\n", "training.max_steps", "too large"),
    ("output_dir: \"runs\\0x\"\n", "output_dir", "NUL"),
    ("data:\n  path: \"a\\0b\"\n", "data.path", "NUL"),
])
def test_hostile_value_in_a_file_names_the_key_and_the_file(tmp_path, text, key, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config([path])
    assert key in info.value.keys and fragment in str(info.value) and str(path) in str(info.value)


def _write(path, data):
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif data == "<dir>":
        path.mkdir()
    elif data is not None:
        path.write_text(data)
    return path


HOSTILE_FILES = {
    "non-UTF-8 (Latin-1)": (b"name: caf\xe9\n", "not UTF-8"),
    "binary": (bytes(range(256)) * 4, "binary file"),
    "a directory": ("<dir>", "folder"),
    "missing": (None, "not found"),
    "a list, not a mapping": ("- a\n- b\n", "must be a mapping"),
    "a scalar, not a mapping": ("just text\n", "must be a mapping"),
    "duplicate key": ("model:\n  d_model: 64\n  d_model: 128\n", "duplicate key 'd_model'"),
    "duplicate section": ("model: {}\ntraining: {}\nmodel: {}\n", "duplicate key 'model'"),
    "unhashable key": ("? [a, b]\n: 1\n", "invalid YAML"),
    "deeply nested": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "config"),
    "too large": ("# " + "x" * (1 << 20) + "\n", "too large"),
    "a python object tag": ("name: !!python/object/apply:os.system [echo hi]\n", "invalid YAML"),
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_file_is_a_clean_config_error(tmp_path, case):
    data, fragment = HOSTILE_FILES[case]
    path = _write(tmp_path / "c.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config([path])
    assert fragment in str(info.value) and str(path) in str(info.value), str(info.value)[:300]


def test_loading_never_mutates_its_inputs(tmp_path):
    base = get_small_config()
    before = base.to_dict()
    data = {"model": {"d_model": 64}, "tags": ["x"]}
    cfg = load_config([], ["model.d_model=96", "tags=[y]"], base=base)
    ExperimentConfig.from_dict(data).tags.append("z")
    assert base.to_dict() == before and data == {"model": {"d_model": 64}, "tags": ["x"]}
    assert cfg.model.d_model == 96 and base.model.d_model == 192


def test_tokenizer_choices_are_read_from_the_data_registry():
    from tiny_transformer import data
    with pytest.raises(ConfigError, match="did you mean 'char'"):
        load_config([], ["data.tokenizer=chr"])
    data.TOKENIZERS["extra"] = data.CharTokenizer
    try:
        assert load_config([], ["data.tokenizer=extra"]).data.tokenizer == "extra"
    finally:
        del data.TOKENIZERS["extra"]


def test_presets_are_a_registry_with_did_you_mean():
    from tiny_transformer.presets import get_preset
    with pytest.raises(ConfigError, match="did you mean 'small'"):
        get_preset("smal")


def test_chapter_names_import_from_config_lazily():
    import subprocess, sys
    code = ("import sys, tiny_transformer.config as c\n"
            "assert 'tiny_transformer.presets' not in sys.modules\n"
            "from tiny_transformer.config import get_tiny_config, get_small_config, get_medium_config\n"
            "import tiny_transformer.presets as p\n"
            "assert get_tiny_config is p.get_tiny_config\n"
            "try:\n    c.no_such_name\nexcept AttributeError as e:\n    print('ok', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_flatten_handles_dataclasses_and_mappings():
    from tiny_transformer.config import flatten_config
    flat = flatten_config(get_tiny_config())
    assert flat["model.d_model"] == 128 and flat["tags"] == ["tiny"] and "model" not in flat
    assert flatten_config({"a": {"b": {"c": 1}}, "d": [1]}) == {"a.b.c": 1, "d": [1]}
    assert flatten_config(get_tiny_config()) == flatten_config(get_tiny_config().to_dict())
