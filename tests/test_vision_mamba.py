"""Vision Mamba (docs/vision_mamba.md): loading, maths against tests/plain_vision_mamba.py, refusals.

Small seeded checkpoints of both norm kinds and every cls placement are written here in the
upstream layout (`{model, args: Namespace}` and bare state_dicts), loaded through the registry
and compared with the plain loop-by-loop implementation: logits <= 1e-4, cls features <= 1e-5.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError
from neurodeploy.model.registry import load_model
from plain_vision_mamba import plain_vision_mamba

LOGITS_TOL = 1e-4
FEATURES_TOL = 1e-5


def make_state_dict(*, seed=0, embed=16, depth=2, d_state=4, d_conv=4, expand=2, patch=4, stride=4, img=16,
                    chans=3, classes=5, cls_position="middle", norm="rms", proj_bias=False, conv_bias=True,
                    pos_embed=True, gamma=False):
    """Upstream keys (docs/vision_mamba.md) with seeded weights scaled so every part matters."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    d_inner = expand * embed
    R = math.ceil(embed / 16)
    grid = (img - patch) // stride + 1
    cls = {"none": 0, "middle": 1, "head": 1, "double": 2}[cls_position]
    sd = {"patch_embed.proj.weight": rnd(embed, chans, patch, patch, scale=1 / (chans * patch)),
          "patch_embed.proj.bias": rnd(embed, scale=0.1)}
    if cls_position == "double":
        sd["cls_token_head"] = rnd(1, 1, embed)
        sd["cls_token_tail"] = rnd(1, 1, embed)
    elif cls_position != "none":
        sd["cls_token"] = rnd(1, 1, embed)
    if pos_embed:
        sd["pos_embed"] = rnd(1, grid * grid + cls, embed, scale=0.5)
    for i in range(depth):
        p = f"layers.{i}."
        sd[p + "norm.weight"] = 1 + rnd(embed, scale=0.2)
        if norm == "layer":
            sd[p + "norm.bias"] = rnd(embed, scale=0.2)
        m = p + "mixer."
        sd[m + "in_proj.weight"] = rnd(2 * d_inner, embed, scale=embed ** -0.5)
        if proj_bias:
            sd[m + "in_proj.bias"] = rnd(2 * d_inner, scale=0.1)
            sd[m + "out_proj.bias"] = rnd(embed, scale=0.1)
        sd[m + "out_proj.weight"] = rnd(embed, d_inner, scale=d_inner ** -0.5)
        for s in ("", "_b"):
            sd[m + f"conv1d{s}.weight"] = rnd(d_inner, 1, d_conv, scale=0.5)
            if conv_bias:
                sd[m + f"conv1d{s}.bias"] = rnd(d_inner, scale=0.2)
            sd[m + f"x_proj{s}.weight"] = rnd(R + 2 * d_state, d_inner, scale=d_inner ** -0.5)
            sd[m + f"dt_proj{s}.weight"] = rnd(d_inner, R, scale=R ** -0.5)
            sd[m + f"dt_proj{s}.bias"] = torch.log(torch.expm1(0.01 + 0.2 * torch.rand(d_inner, generator=g)))
            sd[m + f"A{'_b' if s else ''}_log"] = torch.log(torch.arange(1, d_state + 1.0)).repeat(d_inner, 1) + rnd(d_inner, d_state, scale=0.1)
            sd[m + f"D{s}"] = 1 + rnd(d_inner, scale=0.2)
        if gamma:
            sd[m + "gamma"] = 0.5 + rnd(embed, scale=0.1)
    sd["norm_f.weight"] = 1 + rnd(embed, scale=0.2)
    if norm == "layer":
        sd["norm_f.bias"] = rnd(embed, scale=0.2)
    sd["head.weight"] = rnd(classes, embed, scale=embed ** -0.5)
    sd["head.bias"] = rnd(classes, scale=0.1)
    return sd


def save_training_checkpoint(path: Path, sd, **args) -> Path:
    """The layout `vim/main.py` writes: `{model, optimizer, ..., args: Namespace}`."""
    namespace = argparse.Namespace(model="vim_test_patch4", input_size=16, nb_classes=5, **args)
    torch.save({"model": sd, "optimizer": {}, "epoch": 3, "model_ema": None, "scaler": "none", "args": namespace}, path)
    return path


def images(batch=2, img=16, chans=3, seed=1):
    return torch.randn(batch, chans, img, img, generator=torch.Generator().manual_seed(seed))


CASES = {
    "rms-middle": dict(norm="rms", cls_position="middle"),
    "layer-middle": dict(norm="layer", cls_position="middle", seed=1),
    "layer-head-bias": dict(norm="layer", cls_position="head", proj_bias=True, seed=2),
    "rms-double-overlap": dict(norm="rms", cls_position="double", patch=6, stride=5, img=16, seed=3),
    "rms-nocls-mean": dict(norm="rms", cls_position="none", seed=4),
    "layer-nocls-none-noconvbias": dict(norm="layer", cls_position="none", conv_bias=False, seed=5),
    "rms-nocls-max": dict(norm="rms", cls_position="none", seed=6),
}
POOL = {"rms-nocls-mean": "mean", "layer-nocls-none-noconvbias": "none", "rms-nocls-max": "max"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_plain_reference(tmp_path, case):
    params = CASES[case]
    sd = make_state_dict(**params)
    patch, stride, img = params.get("patch", 4), params.get("stride", 4), params.get("img", 16)
    pool = POOL.get(case, "mean")
    config = {"img_size": img, "stride": stride, "final_pool_type": pool}
    if params["cls_position"] == "head":
        config["cls_position"] = "head"
    path = tmp_path / "vim.pth"
    torch.save(sd, path)
    loaded = load_model(path, config)
    assert loaded.family.name == "vision-mamba"
    assert loaded.config.norm == params["norm"]
    x = images(img=img)
    with torch.no_grad():
        logits = loaded.model(x)
        features = loaded.model.forward_features(x)
    ref_features, ref_logits = plain_vision_mamba(sd, x, patch=patch, stride=stride, cls_position=params["cls_position"],
                                                  final_pool_type=pool)
    assert logits.shape == (2, 5)
    assert (logits - ref_logits).abs().max().item() <= LOGITS_TOL
    assert (features - ref_features).abs().max().item() <= FEATURES_TOL
    # the images are told apart and the mixers matter: not a constant output
    assert (logits[0] - logits[1]).abs().max().item() > 1e-2


def test_training_checkpoint_with_args(tmp_path):
    sd = make_state_dict(norm="layer")
    path = save_training_checkpoint(tmp_path / "checkpoint.pth", sd)
    loaded = load_model(path)
    assert loaded.config.img_size == 16 and loaded.config.stride == 4 and loaded.config.norm == "layer"
    assert loaded.source_format.startswith("Vision Mamba training checkpoint")
    x = images()
    _, ref = plain_vision_mamba(sd, x, patch=4, stride=4)
    with torch.no_grad():
        assert (loaded.model(x) - ref).abs().max().item() <= LOGITS_TOL


def test_safetensors_state_dict_with_config_json(tmp_path):
    sd = make_state_dict(norm="rms", patch=6, stride=5, cls_position="double", seed=7)
    path = tmp_path / "vim.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    config_path = tmp_path / "config.json"
    config_path.write_text('{"img_size": 16, "stride": 5}')
    loaded = load_model(path, str(config_path))
    assert loaded.config.grid_size == 3 and loaded.config.cls_position == "double"
    # a bare state_dict cannot tell EdgeVisionMamba from hustvl/Vim maths: always said
    assert any("hustvl/Vim needs divide_out: true" in note for note in loaded.notes)


def test_divide_out_changes_logits_and_matches_plain(tmp_path):
    sd = make_state_dict(norm="rms")
    path = save_training_checkpoint(tmp_path / "vim_div2.pth", sd)
    plain = load_model(path)
    halved = load_model(path, {"divide_out": True})
    x = images()
    with torch.no_grad():
        a, b = plain.model(x), halved.model(x)
    assert (a - b).abs().max().item() > 1e-2
    _, ref = plain_vision_mamba(sd, x, patch=4, stride=4, divide_out=True)
    assert (b - ref).abs().max().item() <= LOGITS_TOL


def test_div2_name_and_gamma_are_flagged(tmp_path):
    sd = make_state_dict(gamma=True)
    path = tmp_path / "vim.pth"
    torch.save({"model": sd, "args": argparse.Namespace(model="vim_tiny_patch16_224_bimambav2_div2", input_size=16)}, path)
    loaded = load_model(path)
    notes = " ".join(loaded.notes)
    assert "divide_out" in notes and "hustvl" in notes and "gamma" in notes
    applied = load_model(path, {"gamma": "apply"})
    x = images()
    _, ref_ignored = plain_vision_mamba(sd, x, patch=4, stride=4)
    _, ref_applied = plain_vision_mamba(sd, x, patch=4, stride=4, apply_gamma=True)
    with torch.no_grad():
        assert (loaded.model(x) - ref_ignored).abs().max().item() <= LOGITS_TOL
        assert (applied.model(x) - ref_applied).abs().max().item() <= LOGITS_TOL
    assert (ref_ignored - ref_applied).abs().max().item() > 1e-2


def _drop(sd, fragment):
    return {k: v for k, v in sd.items() if fragment not in k}


@pytest.mark.parametrize("mutate, args, config, message", [
    (lambda sd: _drop(sd, "_b"), {}, None, "bimamba 'none'"),
    (lambda sd: _drop(sd, "conv1d_b"), {}, None, "bimamba 'v1'"),
    (lambda sd: {**sd, "rope.freqs_cos": torch.zeros(4), "rope.freqs_sin": torch.zeros(4)}, {}, None, "rope"),
    (lambda sd: sd, {"if_bidirectional": True}, None, "if_bidirectional"),
    (lambda sd: sd, {"flip_img_sequences_ratio": 0.5}, None, "flip_img_sequences_ratio"),
    (lambda sd: sd, {}, {"if_rope": True}, "if_rope"),
    (lambda sd: sd, {}, {"img_size": 20}, "pos_embed has 17 rows"),
    (lambda sd: {**sd, "layers.0.norm.bias": torch.zeros(16)}, {}, None, "mixed norms"),
    (lambda sd: {**sd, "head.bias": torch.full((5,), float("nan"))}, {}, None, "NaN"),
    (lambda sd: sd, {}, {"embed_dim": 32}, "the weights say 16"),
    (lambda sd: _drop(sd, "head."), {}, None, "head.weight missing"),
    (lambda sd: _drop(sd, "layers.1.mixer.x_proj.weight"), {}, None, "x_proj.weight"),
])
def test_refusals_name_the_reason(tmp_path, mutate, args, config, message):
    path = save_training_checkpoint(tmp_path / "bad.pth", mutate(make_state_dict()), **args)
    with pytest.raises(NeurodeployError, match=message):
        load_model(path, config, family="vision-mamba")


def test_step_chunk_and_stream_are_refused(tmp_path):
    path = tmp_path / "vim.pth"
    torch.save(make_state_dict(), path)
    loaded = load_model(path)
    assert loaded.capability("onnx_full").supported
    for name in ("onnx_step", "stream"):
        with pytest.raises(UnsupportedCapabilityError, match="both directions.*middle cls token"):
            loaded.require(name)


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, options", [
    ("rms-middle", {}),
    ("layer-head-bias", {"cls_position": "head", "divide_out": True}),
    ("rms-double-overlap", {"img_size": 16, "stride": 5}),
    ("rms-nocls-max", {"final_pool_type": "max"}),
    ("layer-nocls-none-noconvbias", {"final_pool_type": "none"}),
])
def test_onnx_graph_matches_plain_reference_in_bare_onnxruntime(tmp_path, case, options):
    import onnx
    import onnxruntime

    from neurodeploy.exporters.onnx_vision_mamba import export_vision_mamba

    params = CASES[case]
    sd = make_state_dict(**params)
    torch.save(sd, tmp_path / "vim.pth")
    loaded = load_model(tmp_path / "vim.pth", {"img_size": 16, "stride": params.get("stride", 4), **options})
    result = export_vision_mamba(loaded.model, tmp_path / "vim.onnx")
    proto = onnx.load(str(tmp_path / "vim.onnx"))
    scans = [n for n in proto.graph.node if n.domain == "ai.neurodeploy"]
    assert [n.op_type for n in scans] == ["SelectiveScan"] * (2 * loaded.config.depth)
    # the backward direction: x and z reversed before its scan, y reversed after, by Slice step -1
    reversals = [n for n in proto.graph.node if n.op_type == "Slice" and len(n.input) == 5]
    assert len(reversals) == 3 * loaded.config.depth
    session = onnxruntime.InferenceSession(str(tmp_path / "vim.onnx"), providers=["CPUExecutionProvider"])
    x = images(batch=3, seed=4)
    (logits,) = session.run(["logits"], {"images": x.numpy()})
    _, ref = plain_vision_mamba(sd, x, patch=params.get("patch", 4), stride=params.get("stride", 4),
                                cls_position=params["cls_position"], final_pool_type=options.get("final_pool_type", "mean"),
                                divide_out=options.get("divide_out", False))
    assert abs(torch.from_numpy(logits) - ref).max().item() <= LOGITS_TOL
    assert result.parity_max_abs <= LOGITS_TOL and result.custom_nodes == 2 * loaded.config.depth


def test_onnx_applies_gamma_when_asked(tmp_path):
    import onnxruntime

    from neurodeploy.exporters.onnx_vision_mamba import export_vision_mamba

    sd = make_state_dict(gamma=True, proj_bias=True)
    torch.save(sd, tmp_path / "vim.pth")
    loaded = load_model(tmp_path / "vim.pth", {"img_size": 16, "gamma": "apply", "divide_out": True})
    export_vision_mamba(loaded.model, tmp_path / "vim.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "vim.onnx"), providers=["CPUExecutionProvider"])
    x = images()
    (logits,) = session.run(["logits"], {"images": x.numpy()})
    _, ref = plain_vision_mamba(sd, x, patch=4, stride=4, divide_out=True, apply_gamma=True)
    assert abs(torch.from_numpy(logits) - ref).max().item() <= LOGITS_TOL


# -- image inputs, run / eval -----------------------------------------------------------------------
def test_classify_image_folder_and_npy_batches(tmp_path):
    import numpy as np
    from PIL import Image

    from neurodeploy.exporters.onnx_vision_mamba import export_vision_mamba
    from neurodeploy.image_classification import classify_images
    from neurodeploy.images import ImageInputError

    sd = make_state_dict()
    torch.save(sd, tmp_path / "vim.pth")
    loaded = load_model(tmp_path / "vim.pth", {"img_size": 16})
    rng = np.random.default_rng(0)
    for cls_name in ("cat", "dog"):
        (tmp_path / "folder" / cls_name).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(tmp_path / "folder" / cls_name / f"{j}.png")
    result = classify_images(loaded, tmp_path / "folder")
    assert result.names[0] == "cat/0.png" and result.labels.tolist() == [0, 0, 1, 1]
    assert result.logits.shape == (4, 5) and 0.0 <= result.accuracy(1) <= 1.0 and result.accuracy(5) == 1.0
    # uint8 pixels at the model size: the same normalisation; float32: taken as model input
    pixels = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    np.save(tmp_path / "labels.npy", np.array([0, 4, 2]))
    from_pixels = classify_images(loaded, tmp_path / "pixels.npy", labels=tmp_path / "labels.npy")
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    normalised = ((pixels.transpose(0, 3, 1, 2) / np.float32(255) - mean) / std).astype(np.float32)
    np.save(tmp_path / "input.npy", normalised)
    from_floats = classify_images(loaded, tmp_path / "input.npy")
    assert torch.allclose(from_pixels.logits, from_floats.logits, atol=1e-5)
    _, ref = plain_vision_mamba(sd, torch.from_numpy(normalised), patch=4, stride=4)
    assert (from_floats.logits - ref).abs().max().item() <= LOGITS_TOL
    export_vision_mamba(loaded.model, tmp_path / "vim.onnx")
    on_onnx = classify_images(loaded, tmp_path / "input.npy", runtime="onnx", onnx_path=tmp_path / "vim.onnx", batch_size=2)
    assert (on_onnx.logits - ref).abs().max().item() <= LOGITS_TOL
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 20, 20), np.float32))
    with pytest.raises(ImageInputError, match=r"wrong.npy: float array of shape \(2, 3, 20, 20\)"):
        classify_images(loaded, tmp_path / "wrong.npy")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ImageInputError, match="a.png: not a readable image"):
        classify_images(loaded, tmp_path / "broken")


def test_report_counts_macs_footprint_and_host_energy(tmp_path):
    from neurodeploy.report.vision_mamba import vision_mamba_report

    torch.save(make_state_dict(), tmp_path / "vim.pth")
    loaded = load_model(tmp_path / "vim.pth", {"img_size": 16})
    report = vision_mamba_report(loaded)
    c = loaded.config  # 16 patches + 1 cls, D 16, Di 32, N 4, K 4, R 1, 5 classes
    per_token = (16 * 64) + 2 * (32 * 4 + 32 * 9 + 32 + 4 * 32 * 4 + 3 * 32) + 32 + 32 * 16 + 16
    expected = 16 * 16 * 3 * 16 + 2 * per_token * 17 + 16 * 5
    assert c.num_tokens == 17 and report.macs_per_image == expected
    assert report.parameters == sum(p.numel() for p in loaded.model.parameters())
    assert report.footprint_bytes == 4 * report.parameters
    hosts = {e.device for e in report.energy}
    assert {"cpu", "gpu", "arm"} <= hosts and "loihi" not in hosts
    cpu = next(e for e in report.energy if e.device == "cpu")
    assert cpu.total_j > 0 and cpu.sources
    assert "energy per image" in report.to_markdown() and report.to_dict()["macs_per_image"] == expected


def test_cli_classify_runs_and_fails_cleanly(tmp_path):
    import numpy as np
    from click.testing import CliRunner

    from neurodeploy.cli import main

    torch.save(make_state_dict(), tmp_path / "vim.pth")
    np.save(tmp_path / "batch.npy", images(batch=3).numpy())
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2]))
    runner = CliRunner()
    ok = runner.invoke(main, ["classify", str(tmp_path / "vim.pth"), str(tmp_path / "batch.npy"), "--labels",
                              str(tmp_path / "labels.npy"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"top1"' in ok.output and '"images": 3' in ok.output
    np.save(tmp_path / "big.npy", np.zeros((1, 3, 32, 32), np.float32))
    bad = runner.invoke(main, ["classify", str(tmp_path / "vim.pth"), str(tmp_path / "big.npy")])
    assert bad.exit_code == 1 and "big.npy: float array of shape (1, 3, 32, 32)" in bad.output
    assert "Traceback" not in bad.output


def test_cli_eval_routes_an_image_checkpoint_to_image_classification(tmp_path):
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from neurodeploy.cli import main

    torch.save(make_state_dict(), tmp_path / "vim.pth")
    for cls_name in ("a", "b"):
        (tmp_path / "val" / cls_name).mkdir(parents=True)
        Image.fromarray(np.full((20, 20, 3), 40 if cls_name == "a" else 200, np.uint8)).save(tmp_path / "val" / cls_name / "x.png")
    out = CliRunner().invoke(main, ["eval", str(tmp_path / "vim.pth"), str(tmp_path / "val"), "--json"])
    assert out.exit_code == 0, out.output
    assert '"top1"' in out.output and '"image": "a/x.png"' in out.output
