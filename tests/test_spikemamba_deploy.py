"""SpikeMamba LM deployed: ONNX full and step graphs against PyTorch (per gate and integration
mode), N single steps = prefill on every runtime, greedy generation identical across runtimes,
the bundle, the spike report, the NIR refusal and the CLI on an upstream-style checkpoint."""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.errors import UnsupportedCapabilityError
from neurodeploy.exporters.nir import UnsupportedLayerError
from neurodeploy.exporters.nir_spikemamba import export_spikemamba_nir
from neurodeploy.exporters.onnx_spikemamba import build_spikemamba_model, export_spikemamba
from neurodeploy.formats.onnx_spikemamba import state_names, state_to_feeds
from neurodeploy.generation import SamplingOptions, TokenSourceError, generate, read_token_ids
from neurodeploy.lm_bundle import export_lm_bundle, load_lm_bundle
from neurodeploy.model.registry import load_model
from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.synthetic import firing_model, write_upstream_checkpoint
from neurodeploy.report.spikemamba import build_lm_report
from neurodeploy.runtimes.spikemamba_lm import OnnxTokenRuntime, TorchTokenRuntime
from neurodeploy.runtimes.spikemamba_native import NativeTokenRuntime

VARIANTS = [("pre", "hard"), ("post", "soft"), ("pre_post", "soft"), ("pre_post", "hard"), ("residual", "soft")]


def config(integration="pre_post", gate="soft", pooling="learnable", **kw) -> SpikeMambaLMConfig:
    base = dict(vocab_size=41, d_model=16, n_layer=2, d_state=4, d_conv=4, expand=2, bias=True)
    base.update(kw)
    return SpikeMambaLMConfig(spike_integration=integration, spike_gate_mode=gate, temporal_pooling=pooling, **base)


def sample_tokens(batch=2, length=10, vocab=41):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("integration,gate", VARIANTS)
def test_onnx_full_and_step_graphs_equal_torch(tmp_path, integration, gate):
    model = firing_model(config(integration, gate, reset_mode="zero" if gate == "hard" else "subtract"), seed=3)
    toks = sample_tokens()
    with torch.no_grad():
        reference = model(toks)
    assert all(s.sum() > 0 for s in reference.spikes.values())
    full = export_spikemamba(model, tmp_path / "full.onnx", "full", sample=toks)
    step = export_spikemamba(model, tmp_path / "step.onnx", "step", sample=toks)
    for result in (full, step):  # the export checks itself; here we check what it reports
        assert result.parity_logits_max_abs <= 1e-4 and result.parity_states_max_abs <= 1e-5
        assert result.parity_spikes_identical and result.custom_nodes == model.config.n_layer
    assert full.scan_nodes == model.config.n_layer * len(model.config.gates)
    # the graphs' own structure: one SelectiveScan per layer, the LIF gates as Scan, stock onnxruntime
    proto = onnx.load(str(tmp_path / "full.onnx"))
    assert sorted(n.op_type for n in proto.graph.node if n.domain == "ai.neurodeploy") == ["SelectiveScan"] * 2
    step_proto = onnx.load(str(tmp_path / "step.onnx"))
    names = state_names(model)
    assert [i.name for i in step_proto.graph.input] == ["token", *names]
    assert {f"{n}_out" for n in names} <= {o.name for o in step_proto.graph.output}
    # the full graph's final state continues in the step graph exactly like the PyTorch state
    session_full = ort.InferenceSession(str(tmp_path / "full.onnx"), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session_full.get_outputs()], session_full.run(None, {"tokens": toks[:, :6].numpy()})))
    state = {n: outputs[f"{n}_out"] for n in names}
    onnx_rt = OnnxTokenRuntime.for_model(tmp_path / "step.onnx", model)
    steps = onnx_rt.prefill(toks[:, 6:].numpy(), state)
    assert np.abs(steps[-1].logits - reference.logits[:, -1].numpy()).max() <= 1e-4
    for name in names:
        assert np.abs(steps[-1].state[name] - state_to_feeds(reference.state, model.config.gates)[name]).max() <= 1e-5


def test_single_steps_equal_prefill_on_every_runtime(tmp_path):
    model = firing_model(config(), seed=4)
    export_spikemamba(model, tmp_path / "step.onnx", "step")
    toks = sample_tokens(batch=1, length=12)
    with torch.no_grad():
        reference = model(toks)
    for runtime in (TorchTokenRuntime(model), OnnxTokenRuntime.for_model(tmp_path / "step.onnx", model),
                    NativeTokenRuntime(model)):
        steps = runtime.prefill(toks.numpy())
        logits = np.stack([s.logits for s in steps], axis=1)
        assert np.abs(logits - reference.logits.numpy()).max() <= 1e-4, runtime.name
        for t, step in enumerate(steps):
            for gate, spikes in step.spikes.items():
                for i in range(model.config.n_layer):
                    assert np.array_equal(spikes[i], reference.spikes[f"layers.{i}.{gate}"][:, t].numpy()), runtime.name
        final = state_to_feeds(reference.state, model.config.gates)
        assert max(np.abs(steps[-1].state[n] - final[n]).max() for n in final) <= 1e-5


@pytest.mark.parametrize("integration,gate", [("pre_post", "soft"), ("pre", "hard"), ("residual", "soft")])
def test_greedy_generation_identical_across_runtimes_and_sampling_reproducible(tmp_path, integration, gate):
    model = firing_model(config(integration, gate, d_model=32, vocab_size=64), seed=6)
    export_spikemamba(model, tmp_path / "step.onnx", "step")
    runtimes = [TorchTokenRuntime(model), OnnxTokenRuntime.for_model(tmp_path / "step.onnx", model),
                NativeTokenRuntime(model)]
    prompt = [3, 17, 42, 5]
    greedy = [generate(r, prompt, 24).generated for r in runtimes]
    assert greedy[0] == greedy[1] == greedy[2] and len(greedy[0]) == 24
    assert len(set(greedy[0])) > 3, "a degenerate fixture (one repeated token) would not test generation"
    # greedy = argmax of the model's own logits over the whole text (no re-run of the prefix)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + greedy[0][:-1]])).logits[0]
    assert logits[len(prompt) - 1:].argmax(-1).tolist() == greedy[0]
    sampled = [generate(r, prompt, 16, SamplingOptions(greedy=False, temperature=1.5, top_k=10, seed=7)).generated
               for r in runtimes]
    assert sampled[0] == sampled[1] == sampled[2] != greedy[0][:16]
    assert generate(runtimes[0], prompt, 16, SamplingOptions(greedy=False, temperature=1.5, top_k=10, seed=7)).generated \
        == sampled[0]


def test_adaptive_pooling_full_graph_only(tmp_path):
    model = firing_model(config(pooling="adaptive"), seed=3)
    result = export_spikemamba(model, tmp_path / "full.onnx", "full")
    assert result.parity_logits_max_abs <= 1e-4
    with pytest.raises(UnsupportedCapabilityError, match="adaptive"):
        build_spikemamba_model(model, "step")


def test_nir_export_is_refused_naming_what_nir_lacks():
    model = firing_model(config(), seed=0)
    with pytest.raises(UnsupportedLayerError) as err:
        export_spikemamba_nir(model)
    for feature in ("adaptive threshold", "refractory", "spike x activation gating", ">="):
        assert feature in str(err.value)


def test_report_counts_real_spikes():
    model = firing_model(config("pre_post", "hard"), seed=3)
    toks = sample_tokens(batch=1, length=15)
    with torch.no_grad():
        spikes = model(toks).spikes
    report = build_lm_report(model, toks)
    by_name = {g.name: g for g in report.gates}
    for name, s in spikes.items():
        assert by_name[name].spikes == int(s.sum()) > 0
        assert by_name[name].firing_rate == pytest.approx(float(s.mean()))
        assert by_name[name].spikes_at_token == tuple(int(v) for v in s.sum(dim=(0, 2)))
    # hard gating: in_proj only sees the inputs that spiked, out_proj only computes gated-on outputs
    pre = by_name["layers.0.pre"]
    assert pre.effective_macs_per_token < pre.dense_ops_per_token
    assert pre.effective_macs_per_token == pytest.approx(pre.spikes_per_token * 2 * model.config.d_inner)
    post = by_name["layers.0.post"]
    assert post.effective_macs_per_token == pytest.approx(post.spikes_per_token * model.config.d_inner)
    clocked = {e.device: e for e in report.energy}
    assert clocked["cpu"].energy_per_token_j > clocked["gpu"].energy_per_token_j > 0
    assert all(t["source"] for e in report.energy for t in e.terms if t["energy_j"] is not None)


# -- bundle and CLI on upstream-style files --------------------------------------------------------
@pytest.fixture()
def upstream(tmp_path):
    model = firing_model(config(d_model=32, vocab_size=64), seed=8)
    weights, cfg = write_upstream_checkpoint(model, tmp_path / "ckpt")
    return model, weights, cfg


def test_bundle_roundtrip_and_tamper_refusal(upstream, tmp_path):
    model, weights, cfg = upstream
    bundle = export_lm_bundle(load_model(weights, cfg), tmp_path / "lm")
    assert set(bundle.manifest["artifacts"]) == {"model.safetensors", "model_full.onnx", "model_step.onnx"}
    assert set(bundle.manifest["skipped"]) == {"nir", "netx"}
    assert bundle.manifest["rms_norm_eps"] == 2.0 ** -23
    with torch.no_grad():
        assert torch.equal(bundle.model()(sample_tokens(vocab=64)).logits, model(sample_tokens(vocab=64)).logits)
    # a link out of the bundle is refused even when it points at the same bytes
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes((tmp_path / "lm" / "model_step.onnx").read_bytes())
    (tmp_path / "lm" / "model_step.onnx").unlink()
    (tmp_path / "lm" / "model_step.onnx").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        load_lm_bundle(tmp_path / "lm")
    (tmp_path / "lm" / "model_step.onnx").unlink()
    (tmp_path / "lm" / "model_step.onnx").write_bytes(b"changed")
    with pytest.raises(ValueError, match="model_step.onnx: sha256"):
        load_lm_bundle(tmp_path / "lm")


def test_cli_info_export_run_report_generate(upstream, tmp_path):
    _, weights, cfg = upstream
    runner = CliRunner()
    info = runner.invoke(main, ["info", str(weights), "--config", str(cfg), "--json"])
    assert info.exit_code == 0, info.output
    payload = json.loads(info.output)
    assert payload["family"] == "spikemamba-lm" and payload["capabilities"]["nir"].startswith("no:")
    refused = runner.invoke(main, ["info", str(weights)])
    assert refused.exit_code == 1 and "reset_mode" in refused.output and "--config" in refused.output
    out = tmp_path / "lm"
    exported = runner.invoke(main, ["export", str(weights), "--config", str(cfg), "-o", str(out)])
    assert exported.exit_code == 0 and "NOT MADE" in exported.output, exported.output
    nir = runner.invoke(main, ["export", str(weights), "--config", str(cfg), "-o", str(tmp_path / "x"), "--artifacts", "nir"])
    assert nir.exit_code == 1 and "adaptive threshold" in nir.output
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("3 17 42\n5 9\n")
    runs = {kind: runner.invoke(main, ["run", str(out), str(tokens), "--backbone", kind, "--json"])
            for kind in ("onnxruntime", "torch", "native")}
    per_token = {}
    for kind, result in runs.items():
        assert result.exit_code == 0, result.output
        per_token[kind] = [(t["predicted"], t["spikes"]) for t in json.loads(result.output)["tokens"]]
    assert per_token["onnxruntime"] == per_token["torch"] == per_token["native"] and len(per_token["torch"]) == 5
    stdin = runner.invoke(main, ["run", str(out), "-"], input="3 17 x\n")
    assert stdin.exit_code == 1 and "line 1, column 6" in stdin.output
    event_option = runner.invoke(main, ["run", str(out), str(tokens), "--window-us", "1000"])
    assert event_option.exit_code == 1 and "--window-us" in event_option.output and "token ids" in event_option.output
    report = runner.invoke(main, ["report", str(out), str(tokens), "-o", str(tmp_path / "rep"), "--json"])
    assert report.exit_code == 0, report.output
    payload = json.loads(report.output)["report"]
    assert sum(g["spikes"] for g in payload["gates"]) > 0
    assert {e["device"] for e in payload["energy"]} == {"cpu", "gpu", "arm", "cmos45nm"}
    one_host = runner.invoke(main, ["report", str(out), str(tokens), "--host", "arm", "-o", str(tmp_path / "r"), "--json"])
    assert [e["device"] for e in json.loads(one_host.output)["report"]["energy"]] == ["arm"]
    chip = runner.invoke(main, ["report", str(out), str(tokens), "--target", "loihi", "-o", str(tmp_path / "r")])
    assert chip.exit_code == 1 and "report --target is not supported" in chip.output
    generated = {kind: runner.invoke(main, ["generate", str(out), "--prompt", "-", "--max-new-tokens", "8",
                                            "--runtime", kind, "--json"], input="3 17 42")
                 for kind in ("onnxruntime", "torch", "native")}
    assert all(g.exit_code == 0 for g in generated.values()), [g.output for g in generated.values()]
    texts = [json.loads(g.output)["generated"] for g in generated.values()]
    assert texts[0] == texts[1] == texts[2] and len(texts[0]) == 8


def test_cli_refuses_streaming_an_adaptive_pooling_model(tmp_path):
    model = firing_model(config(pooling="adaptive"), seed=2)
    weights, cfg = write_upstream_checkpoint(model, tmp_path)
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = runner.invoke(main, ["export", str(weights), "--config", str(cfg), "-o", str(tmp_path / "lm")])
    assert exported.exit_code == 0 and "model_step.onnx" in exported.output and "NOT MADE" in exported.output
    (tmp_path / "t.txt").write_text("1 2 3")
    for command in (["run", str(tmp_path / "lm"), str(tmp_path / "t.txt"), "--backbone", "torch"],
                    ["generate", str(tmp_path / "lm"), "--prompt", str(tmp_path / "t.txt")]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1 and "is not supported" in result.output and "adaptive" in result.output


def test_token_source_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3 -4\n")
    with pytest.raises(TokenSourceError, match="line 2, column 3: negative"):
        read_token_ids(bad)
    with pytest.raises(TokenSourceError, match="no such file"):
        read_token_ids(tmp_path / "missing.txt")


def test_cli_verify_bench_inspect_on_an_lm_bundle(upstream, tmp_path):
    _, weights, cfg = upstream
    export_lm_bundle(load_model(weights, cfg), tmp_path / "lm")
    runner = CliRunner()
    verified = runner.invoke(main, ["verify", str(tmp_path / "lm"), "--steps", "12", "--json"])
    assert verified.exit_code == 0, verified.output
    outcome = json.loads(verified.output)
    assert outcome["passed"]
    assert set(outcome["runtimes"]) == {"onnx full", "torch step", "native step", "onnxruntime step"}
    bench = runner.invoke(main, ["bench", str(tmp_path / "lm"), "--steps", "5", "--json"])
    assert bench.exit_code == 0 and json.loads(bench.output)["onnxruntime_per_token_us"]["p50"] > 0
    inspected = runner.invoke(main, ["inspect", str(tmp_path / "lm"), "--json"])
    assert inspected.exit_code == 0 and json.loads(inspected.output)["family"] == "spikemamba-lm"


@pytest.mark.slow
def test_generate_is_refused_for_an_event_model_bundle(tmp_path):
    from pathlib import Path

    import neurodeploy

    asset = Path(neurodeploy.__file__).parent / "assets" / "mamba_spike_synthetic.safetensors"
    runner = CliRunner()
    exported = runner.invoke(main, ["export", str(asset), "-o", str(tmp_path / "ms"), "--artifacts", "onnx"])
    assert exported.exit_code == 0, exported.output
    (tmp_path / "t.txt").write_text("1 2")
    result = runner.invoke(main, ["generate", str(tmp_path / "ms"), "--prompt", str(tmp_path / "t.txt")])
    assert result.exit_code == 1 and "mamba-spike: generate is not supported" in result.output
