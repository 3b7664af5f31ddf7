"""The shared CLI contract of the config layer, in real processes: --print-config prints the resolved
YAML and exits 0 without writing anything; a bad config exits 2 with the error (naming the key) and
writes nothing. Also: validation still runs under `python -O`."""
from __future__ import annotations

import yaml

from helpers import ROOT, run
from tiny_transformer.config import ExperimentConfig, get_small_config, get_tiny_config

CONFIGS = ROOT / "configs"
MAIN = "import sys; from tiny_transformer.presets import config_main; sys.exit(config_main(sys.argv[1:]))"


def config_cli(*args, cwd):
    return run(["python", "-c", MAIN, *map(str, args)], timeout=120, cwd=cwd)


def test_print_config_prints_resolved_yaml_and_writes_nothing(tmp_path):
    result = config_cli("--config", CONFIGS / "tiny.yaml", "--config", CONFIGS / "dev.yaml",
                        "model.n_layers=2", "--set", "training.learning_rate=5e-4", "--print-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = ExperimentConfig.from_dict(yaml.safe_load(result.stdout))
    assert cfg.name == "tiny" and cfg.device == "cpu" and cfg.training.max_steps == 200  # tiny < dev overlay
    assert cfg.model.n_layers == 2 and cfg.training.learning_rate == 5e-4  # < overrides
    assert list(tmp_path.iterdir()) == []


def test_preset_flag(tmp_path):
    result = config_cli("--preset", "small", "--print-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ExperimentConfig.from_dict(yaml.safe_load(result.stdout)) == get_small_config()


def test_bad_config_file_exits_2_names_the_key_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_modl: 256\n")
    result = config_cli("--config", bad, "--print-config", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.d_modl" in result.stderr and "did you mean model.d_model" in result.stderr
    assert str(bad) in result.stderr and result.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


def test_bad_override_and_missing_file_exit_2(tmp_path):
    result = config_cli("--preset", "tiny", "training.batch_size=-4", "--print-config", cwd=tmp_path)
    assert result.returncode == 2 and "training.batch_size" in result.stderr and "-4" in result.stderr
    result = config_cli("--config", tmp_path / "absent.yaml", "--print-config", cwd=tmp_path)
    assert result.returncode == 2 and "absent.yaml" in result.stderr and "not found" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_diff_against_another_file(tmp_path):
    result = config_cli("--preset", "tiny", "--diff", CONFIGS / "small.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model.d_model" in result.stdout and "128" in result.stdout and "192" in result.stdout
    assert "training.optimizer" not in result.stdout  # equal keys are not listed


def test_validation_survives_python_O(tmp_path):
    code = ("from tiny_transformer.config import ModelConfig, ConfigError\n"
            "try:\n    ModelConfig(d_model=130, n_heads=4)\nexcept ConfigError as e:\n    print('caught', e)\n")
    result = run(["python", "-O", "-c", code], timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "caught model.d_model" in result.stdout


def test_to_dict_loads_in_a_fresh_process_with_weights_only(tmp_path):
    import torch
    torch.save({"config": get_tiny_config().to_dict()}, tmp_path / "ckpt.pt")
    code = ("import torch; from tiny_transformer.config import ExperimentConfig, get_tiny_config\n"
            "c = ExperimentConfig.from_dict(torch.load('ckpt.pt', weights_only=True)['config'])\n"
            "assert c == get_tiny_config(); print('ok')\n")
    result = run(["python", "-c", code], timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_tt_config_console_script(tmp_path):
    result = run(["tt-config", "--preset", "tiny", "seed=7", "--print-config"], timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ExperimentConfig.from_dict(yaml.safe_load(result.stdout)).seed == 7
    result = run(["tt-config", "--preset", "tiny", "sed=7"], timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "did you mean seed" in result.stderr
    assert list(tmp_path.iterdir()) == []


# Hostile input, in real processes (issue 17): exit 2, the key or file named, no traceback, nothing written.
HOSTILE = {
    "learning rate .inf in a file": (["--config", "{inf}"], "training.learning_rate"),
    "learning rate .nan in a file": (["--config", "{nan}"], "training.learning_rate"),
    "learning rate .inf override": (["training.learning_rate=.inf"], "training.learning_rate"),
    "max_steps 1e20": (["training.max_steps=1e20"], "training.max_steps"),
    "huge d_model": (["model.d_model=4096000000"], "model.d_model"),
    "non-UTF-8 file": (["--config", "{latin1}"], "not UTF-8"),
    "binary file": (["--config", "{binary}"], "binary file"),
    "directory": (["--config", "{folder}"], "folder"),
    "missing file": (["--config", "{missing}"], "not found"),
    "list, not a mapping": (["--config", "{listing}"], "must be a mapping"),
    "duplicate key": (["--config", "{dup}"], "duplicate key"),
    "non-UTF-8 --diff file": (["--diff", "{latin1}"], "not UTF-8"),
    "unknown preset": (["--preset", "tny"], "invalid choice"),
}


def _hostile_files(folder):
    files = {"inf": "training:\n  learning_rate: .inf\n", "nan": "training:\n  learning_rate: .nan\n",
             "latin1": b"name: caf\xe9\n", "binary": bytes(range(256)), "listing": "- a\n- b\n",
             "dup": "model:\n  d_model: 64\n  d_model: 128\n"}
    paths = {"folder": folder / "folder", "missing": folder / "missing.yaml"}
    paths["folder"].mkdir()
    for name, data in files.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_bytes(data if isinstance(data, bytes) else data.encode())
    return paths


def test_tt_config_hostile_inputs_exit_2_without_traceback(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    paths = _hostile_files(inputs)
    work = tmp_path / "work"
    work.mkdir()
    failures = []
    for case, (args, fragment) in HOSTILE.items():
        argv = [a.format(**paths) for a in args]
        result = run(["tt-config", *argv, "--print-config"], timeout=120, cwd=work)
        if result.returncode != 2 or fragment not in result.stderr or "Traceback" in result.stderr or result.stdout:
            failures.append(f"{case}: exit {result.returncode}: {result.stderr[-300:]}")
    assert not failures, "\n".join(failures)
    assert list(work.iterdir()) == []


def test_tt_train_print_config_refuses_hostile_config_with_exit_2(tmp_path):
    "tt-train reads its config through config_or_exit: the same refusals, before anything is written."
    paths = _hostile_files(tmp_path)
    for args, fragment in [(["--config", str(paths["latin1"])], "not UTF-8"),
                           (["--config", str(paths["inf"])], "training.learning_rate"),
                           (["training.max_steps=1e20"], "training.max_steps")]:
        result = run(["tt-train", *args, f"output_dir={tmp_path / 'runs'}", "--print-config"], timeout=180, cwd=tmp_path)
        assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
