"""`tt-export` as a user runs it (real processes and files), parity of every format at three shapes, the cached
ONNX graph against the eager model's cached generation, and the inputs tt-export must refuse."""
import json
import os
import sys

import pytest
import torch

from helpers import ROOT, brief_checkpoint, corpus_path, run

from tiny_transformer.data import fixed_batches
from tiny_transformer.export import (EXPORT_FORMATS, check_parity, export_metadata, export_torchscript, load_artifact,
                                     load_model_for_export, validation_loss)
from tiny_transformer.model import left_pad, next_step_inputs, sample_next_token

SHAPES = [(1, 1), (3, 17), (8, 48)]  # batch and sequence length both vary; 48 is the full context
META_KEYS = {"model_config", "tokenizer", "git_commit", "export_date", "format"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A briefly trained model (40 steps) saved as a checkpoint dict, plus fixed validation batches."
    model, path, corpus = brief_checkpoint(tmp_path_factory.mktemp("export"), max_seq_len=48, steps=40)
    return model, path, fixed_batches(corpus.val, block_size=48, batch_size=16, n_batches=4)


def _tt_export(*args):
    return run(["tt-export", *map(str, args)], timeout=240)


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_cli_export_and_parity_at_three_shapes(trained, tmp_path, fmt):
    model, ckpt, _ = trained
    out = tmp_path / f"m{EXPORT_FORMATS[fmt].suffix}"
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


def _axes(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_default_onnx_carries_the_kv_cache_and_opset_20_still_works(trained, tmp_path):
    model, ckpt, _ = trained
    default, old = tmp_path / "m.onnx", tmp_path / "m20.onnx"
    assert _tt_export("--checkpoint", ckpt, "--output", default).returncode == 0  # no --format: what tt-serve uses
    import onnx
    graph = onnx.load(str(default)).graph
    inputs, outputs = {v.name: _axes(v) for v in graph.input}, {v.name: _axes(v) for v in graph.output}
    h, d = model.config["n_heads"], model.config["d_model"] // model.config["n_heads"]
    assert inputs["input_ids"] == inputs["position_ids"] == ["batch", "seq"]
    assert inputs["attention_mask"] == ["batch", "total_seq"]
    for i in range(model.config["n_layers"]):
        for kv in ("key", "value"):
            assert inputs[f"past_key_values.{i}.{kv}"] == ["batch", h, "past_seq", d]
            assert outputs[f"present.{i}.{kv}"] == ["batch", h, "total_seq", d]
    assert outputs["logits"] == ["batch", "seq", model.config["vocab_size"]]

    result = _tt_export("--checkpoint", ckpt, "--format", "onnx", "--opset", "20", "--output", old)
    assert result.returncode == 0 and "parity OK" in result.stdout, result.stderr
    opset, nodes = _onnx_graph(old)
    assert opset == 20 and not [n for n in nodes if n.op_type == "Attention"]
    fn, _ = load_artifact(old)
    assert fn.has_cache and check_parity(model, fn, SHAPES)["max_abs_diff"] <= 1e-4
    for bad in ("17", "24"):
        result = _tt_export("--checkpoint", ckpt, "--format", "onnx", "--opset", bad, "--output", tmp_path / "x.onnx")
        assert result.returncode == 2 and "--opset must be between 18 and 23" in result.stderr
        assert not (tmp_path / "x.onnx").exists()


def test_plain_onnx_graph_has_one_3d_attention_per_layer(trained, tmp_path):
    from tiny_transformer.onnx_export import export_onnx
    model, _, _ = trained
    path = export_onnx(model, tmp_path / "plain.onnx", {}, with_past=False)
    opset, nodes = _onnx_graph(path)
    attention = [n for n in nodes if n.op_type == "Attention"]
    assert opset == 23 and len(attention) == model.config["n_layers"]
    producers = {out: n.op_type for n in nodes for out in n.output}
    for node in attention:  # folded: q, k, v come straight from the qkv projection's Split, heads given as attributes
        assert {producers[name] for name in node.input} == {"Split"}
        heads = {a.name: a.i for a in node.attribute if a.name.endswith("num_heads")}
        assert heads == {"q_num_heads": model.config["n_heads"], "kv_num_heads": model.config["n_heads"]}
    assert not [n for n in nodes if n.op_type == "Transpose"]


@pytest.fixture(scope="module")
def cached_onnx(trained, tmp_path_factory):
    _, ckpt, _ = trained
    out = tmp_path_factory.mktemp("cached") / "m.onnx"
    assert _tt_export("--checkpoint", ckpt, "--output", out).returncode == 0
    return load_artifact(out)[0]


@pytest.mark.parametrize("prompt_len", [1, 17, 40])
def test_cached_onnx_generation_matches_eager_cached_generate(trained, cached_onnx, prompt_len):
    "Greedy tokens identical to the eager KVCache `generate`; 40 + 30 > 48 runs past the context (re-priming)."
    model, _, val = trained
    tokens = val[0][0].flatten()  # validation text as one stream of ids
    prompt = tokens[:prompt_len].unsqueeze(0)
    assert torch.equal(cached_onnx.generate(prompt, 30, top_k=1), model.generate(prompt, 30, top_k=1))
    seeded = [cached_onnx.generate(prompt, 30, temperature=0.9, generator=torch.Generator().manual_seed(3))
              for _ in range(2)]
    assert torch.equal(*seeded)


def test_cached_onnx_steps_match_eager_forward_with_past_on_a_padded_batch(trained, cached_onnx):
    model, _, val = trained
    tokens = val[0][0].flatten()  # validation text as one stream of ids
    ids, pos, am = left_pad([tokens[:3].tolist(), tokens[100:120].tolist(), tokens[7:8].tolist()])
    eager_past = onnx_past = None
    for _ in range(12):
        with torch.no_grad():
            eager, eager_past = model.forward_with_past(ids, pos, am, eager_past)
        got, onnx_past = cached_onnx.forward_with_past(ids, pos, am, onnx_past)
        assert got.shape == eager.shape and (got - eager).abs().max() <= 1e-4
        assert all((o - e).abs().max() <= 1e-4 for ol, el in zip(onnx_past, eager_past) for o, e in zip(ol, el))
        ids, pos, am = next_step_inputs(eager[:, -1].argmax(-1), pos, am)
    assert onnx_past[0][0].shape[2] == 20 + 11


def test_forward_with_past_parity_in_eager(trained):
    "Prefill == forward; token by token == forward; left-padded rows == each row alone."
    model, _, val = trained
    tokens = val[0][0].flatten()  # validation text as one stream of ids
    seq = tokens[:2 * 48].view(2, 48)
    with torch.no_grad():
        full = model(seq)
        logits, _ = model.forward_with_past(*left_pad(seq.tolist()))
        assert (logits - full).abs().max() <= 1e-5
        ids, pos, am = left_pad(seq[:, :1].tolist())
        past, steps = None, []
        for t in range(48):
            logits, past = model.forward_with_past(ids, pos, am, past)
            steps.append(logits)
            if t < 47:
                ids, pos, am = next_step_inputs(seq[:, t + 1], pos, am)
        assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-5
        rows = [seq[0, :9].tolist(), seq[1, :30].tolist()]
        logits, _ = model.forward_with_past(*left_pad(rows))
        for i, row in enumerate(rows):
            alone = model(torch.tensor([row]))[0]
            assert (logits[i, -len(row):] - alone).abs().max() <= 1e-5


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
    assert meta["quantization"] == "onnxruntime dynamic int8" and int8.has_cache and meta["kv_cache"]
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
    served = [name for name, fmt in EXPORT_FORMATS.items() if fmt.servable]
    assert f"tt-serve serves: {', '.join(served)}" in result.stdout
    for name, fmt in EXPORT_FORMATS.items():
        assert name in result.stdout and (fmt.servable or f"{name}" in result.stdout)
    assert "(tt-serve cannot serve it)" in result.stdout
    result = _tt_export("--checkpoint", ckpt, "--format", "torchscript", "--quantize", "int8")
    assert result.returncode == 2 and "only available with --format onnx" in result.stderr
    result = _tt_export("--checkpoint", tmp_path / "missing.pt")
    assert result.returncode == 2 and "no such file" in result.stderr
    result = _tt_export("--checkpoint", ckpt, "--format", "tflite")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    result = _tt_export("--checkpoint", bad, "--format", "onnx")
    assert result.returncode == 2 and "not a tiny_transformer checkpoint" in result.stderr


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
    assert result.returncode == 2 and "Refused to load" in result.stderr and "hostile checkpoint ran" not in result.stdout
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(ckpt.read_bytes()[:4000])
    result = _tt_export("--checkpoint", damaged, "--format", "onnx", "--output", tmp_path / "d.onnx")
    assert result.returncode == 2 and "damaged" in result.stderr


def _hostile_inputs(ckpt, tmp_path):
    "(name, argv, text the error must contain): each a user's mistake, each must exit 2 without a traceback."
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    mismatch = tmp_path / "mismatch.pt"  # the stored config says d_model 64, the weights are 48 wide
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "model_config": {**state["model_config"], "d_model": 64}}, mismatch)
    unknown = tmp_path / "unknown_key.pt"
    torch.save({**state, "model_config": {**state["model_config"], "n_experts": 8}}, unknown)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return [
        ("random bytes as .pt", ["--checkpoint", junk], str(junk)),
        ("a text file as .pt", ["--checkpoint", text], str(text)),
        ("config does not match weights", ["--checkpoint", mismatch], str(mismatch)),
        ("unknown config key", ["--checkpoint", unknown], str(unknown)),
        ("missing checkpoint", ["--checkpoint", tmp_path / "nope.pt"], "no such file"),
        ("a folder as checkpoint", ["--checkpoint", tmp_path], "no such file"),
        ("bad --format", ["--checkpoint", ckpt, "--format", "tflite"], "invalid choice"),
        ("bad --opset", ["--checkpoint", ckpt, "--opset", "99"], "--opset must be between"),
        ("non-integer --opset", ["--checkpoint", ckpt, "--opset", "x"], "--opset"),
        ("--output in a missing folder", ["--checkpoint", ckpt, "--output", tmp_path / "no" / "m.onnx"], "does not exist"),
        ("--output under a file", ["--checkpoint", ckpt, "--output", a_file / "m.onnx"], "is not a folder"),
        ("--output is a folder", ["--checkpoint", ckpt, "--output", tmp_path], "is a folder"),
        ("--output overwrites the checkpoint", ["--checkpoint", ckpt, "--output", ckpt], "would overwrite"),
        ("--threads 0", ["--checkpoint", ckpt, "--threads", "0"], "--threads"),
        ("--device tpu (no such option)", ["--checkpoint", ckpt, "--device", "tpu"], "--device"),
        ("--quantize with torch-export", ["--checkpoint", ckpt, "--format", "torch-export", "--quantize", "int8"],
         "only available with --format onnx"),
    ]


def test_hostile_inputs_exit_2_naming_the_input(trained, tmp_path):
    _, ckpt, _ = trained
    before = set(ckpt.parent.iterdir())
    failures = []
    for name, argv, expected in _hostile_inputs(ckpt, tmp_path):
        result = _tt_export(*argv)
        if result.returncode != 2 or "Traceback" in result.stderr or expected not in result.stderr:
            failures.append(f"{name}: exit {result.returncode}, stderr {result.stderr[-300:]!r}")
    assert not failures, "\n".join(failures)
    assert set(ckpt.parent.iterdir()) == before  # nothing written next to the checkpoint


@pytest.mark.parametrize("temperature", [1e-40, 5e-324])
def test_tiny_temperature_is_greedy_not_nan(trained, cached_onnx, temperature):
    model, _, val = trained
    tokens = val[0][0].flatten()  # validation text as one stream of ids
    logits = torch.tensor([[3.0, 1.0, 2.9, -50.0]])
    assert sample_next_token(logits.repeat(8, 1), temperature=temperature).flatten().tolist() == [0] * 8
    prompt = tokens[:5].unsqueeze(0)
    greedy = model.generate(prompt, 10, top_k=1)
    assert torch.equal(model.generate(prompt, 10, temperature=temperature), greedy)
    assert torch.equal(cached_onnx.generate(prompt, 10, temperature=temperature), greedy)
    assert torch.equal(model.generate(prompt, 10, temperature=temperature, top_p=0.9, top_k=5), greedy)


def test_export_and_serve_never_import_training():
    "In a fresh interpreter: importing export, onnx_export or serve must not load the training module."
    probe = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
             "print([m for m in sys.modules if m.startswith('tiny_transformer.training')])")
    for module in ("tiny_transformer.export", "tiny_transformer.onnx_export", "tiny_transformer.serve"):
        result = run([sys.executable, "-c", probe, module], cwd=ROOT, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "[]", (module, result.stdout)
