"""`tt-export` as a user runs it (real processes and files), and parity of every format at three shapes."""
import json

import pytest
import torch

from helpers import brief_checkpoint, corpus_path, run

from tiny_transformer.data import fixed_batches
from tiny_transformer.export import (check_parity, export_metadata, export_torchscript, load_artifact,
                                     load_model_for_export, validation_loss)

SHAPES = [(1, 1), (3, 17), (8, 48)]  # batch and sequence length both vary; 48 is the full context
META_KEYS = {"model_config", "tokenizer", "git_commit", "export_date", "format"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A briefly trained model (40 steps) saved as a checkpoint dict, plus fixed validation batches."
    model, path, corpus = brief_checkpoint(tmp_path_factory.mktemp("export"), max_seq_len=48, steps=40)
    return model, path, fixed_batches(corpus.val, block_size=48, batch_size=16, n_batches=4)


def _tt_export(*args):
    return run(["tt-export", *map(str, args)], timeout=240)


@pytest.mark.parametrize("fmt,name", [("onnx", "m.onnx"), ("torch-export", "m.pt2"),
                                      ("torchscript", "m.torchscript.pt"), ("safetensors", "m.safetensors")])
def test_cli_export_and_parity_at_three_shapes(trained, tmp_path, fmt, name):
    model, ckpt, _ = trained
    out = tmp_path / name
    result = _tt_export("--checkpoint", ckpt, "--format", fmt, "--output", out)
    assert result.returncode == 0, result.stderr
    assert "parity OK" in result.stdout and f"wrote {out}" in result.stdout
    fn, meta = load_artifact(out)
    assert META_KEYS <= set(meta) and meta["format"] == fmt
    assert meta["model_config"] == model.config and meta["tokenizer"]["kind"] == "char"
    assert meta["export_date"].startswith("20") and meta["checkpoint_step"] == 40
    report = check_parity(model, fn, SHAPES)
    assert [s for s, _ in report["results"]] == SHAPES
    assert report["max_abs_diff"] <= 1e-4, report


def _onnx_graph(path):
    import onnx
    proto = onnx.load(str(path))
    return {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"], list(proto.graph.node)


def test_onnx_default_opset_has_one_3d_attention_per_layer_and_20_still_works(trained, tmp_path):
    model, ckpt, _ = trained
    default, old = tmp_path / "m.onnx", tmp_path / "m20.onnx"
    assert _tt_export("--checkpoint", ckpt, "--format", "onnx", "--output", default).returncode == 0
    opset, nodes = _onnx_graph(default)
    attention = [n for n in nodes if n.op_type == "Attention"]
    assert opset == 23 and len(attention) == model.config["n_layers"]
    producers = {out: n.op_type for n in nodes for out in n.output}
    for node in attention:  # folded: q, k, v come straight from the qkv projection's Split, heads given as attributes
        assert {producers[name] for name in node.input} == {"Split"}
        heads = {a.name: a.i for a in node.attribute if a.name.endswith("num_heads")}
        assert heads == {"q_num_heads": model.config["n_heads"], "kv_num_heads": model.config["n_heads"]}
    assert not [n for n in nodes if n.op_type == "Transpose"]

    result = _tt_export("--checkpoint", ckpt, "--format", "onnx", "--opset", "20", "--output", old)
    assert result.returncode == 0 and "parity OK" in result.stdout, result.stderr
    opset, nodes = _onnx_graph(old)
    assert opset == 20 and not [n for n in nodes if n.op_type == "Attention"]
    assert {"Softmax", "Transpose"} <= {n.op_type for n in nodes}  # attention spelled out in primitives
    fn, _ = load_artifact(old)
    assert check_parity(model, fn, SHAPES)["max_abs_diff"] <= 1e-4
    for bad in ("17", "24"):
        result = _tt_export("--checkpoint", ckpt, "--format", "onnx", "--opset", bad, "--output", tmp_path / "x.onnx")
        assert result.returncode == 2 and "--opset must be between 18 and 23" in result.stderr
        assert not (tmp_path / "x.onnx").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_trace_and_script(trained, tmp_path):
    model, _, _ = trained
    meta = export_metadata(model, {"kind": "char", "chars": "ab"}, "torchscript")
    for method in ("trace", "script"):
        path = export_torchscript(model, tmp_path / f"{method}.pt", meta, method=method)
        fn, loaded_meta = load_artifact(path)
        assert loaded_meta["torchscript_method"] == method
        assert check_parity(model, fn, SHAPES)["max_abs_diff"] <= 1e-4
    with pytest.raises(Exception, match="longer than the model's context"):
        with torch.no_grad():
            fn(torch.zeros(1, 49, dtype=torch.long))  # the scripted guard survives save/load


def test_int8_onnx_validation_loss_within_delta(trained, tmp_path):
    model, ckpt, val = trained
    out = tmp_path / "m.int8.onnx"
    result = _tt_export("--checkpoint", ckpt, "--format", "onnx", "--quantize", "int8", "--output", out,
                        "--data", corpus_path())
    assert result.returncode == 0, result.stderr
    assert "validation loss: fp32" in result.stdout
    fp32_file = tmp_path / "m.onnx"
    assert fp32_file.is_file() and out.stat().st_size < 0.6 * fp32_file.stat().st_size
    int8, meta = load_artifact(out)
    assert meta["quantization"] == "onnxruntime dynamic int8"
    delta = validation_loss(int8, val) - validation_loss(model, val)
    assert abs(delta) <= 0.05, delta


def test_safetensors_is_model_only_and_tied(trained, tmp_path):
    model, ckpt, _ = trained
    out = tmp_path / "m.safetensors"
    assert _tt_export("--checkpoint", ckpt, "--format", "safetensors", "--output", out).returncode == 0
    rebuilt, info = load_model_for_export(out)
    assert rebuilt.lm_head.weight is rebuilt.tok_emb.weight
    assert info["model_config"] == model.config and info["git_commit"] is not None
    from safetensors import safe_open
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["tiny_transformer"])["format"] == "safetensors"
        assert not any(k.startswith(("optimizer", "scheduler")) for k in f.keys())


def test_help_and_bad_arguments(trained, tmp_path):
    _, ckpt, _ = trained
    result = _tt_export("--help")
    assert result.returncode == 0 and "usage: tt-export" in result.stdout and "--quantize" in result.stdout
    result = _tt_export("--checkpoint", ckpt, "--format", "torchscript", "--quantize", "int8")
    assert result.returncode == 2 and "only available with --format onnx" in result.stderr
    result = _tt_export("--checkpoint", tmp_path / "missing.pt")
    assert result.returncode == 2 and "no such file" in result.stderr
    result = _tt_export("--checkpoint", ckpt, "--format", "tflite")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    result = _tt_export("--checkpoint", bad, "--format", "onnx")
    assert result.returncode == 1 and "not a tiny_transformer checkpoint" in result.stderr


class _Hostile:
    "Unpickling this would run a command; tt-export must refuse it without running it."

    def __reduce__(self):
        import os
        return (os.system, ("echo hostile checkpoint ran",))


def test_hostile_or_damaged_checkpoint_gets_a_clear_error(trained, tmp_path):
    _, ckpt, _ = trained
    hostile = tmp_path / "hostile.pt"
    torch.save({"model": {}, "model_config": {}, "tokenizer": {}, "x": _Hostile()}, hostile)
    result = _tt_export("--checkpoint", hostile, "--format", "onnx", "--output", tmp_path / "h.onnx")
    assert result.returncode == 1 and "Refused to load" in result.stderr and "hostile checkpoint ran" not in result.stdout
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(ckpt.read_bytes()[:4000])
    result = _tt_export("--checkpoint", damaged, "--format", "onnx", "--output", tmp_path / "d.onnx")
    assert result.returncode == 1 and "damaged or truncated" in result.stderr
