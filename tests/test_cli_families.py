"""`neurodeploy export / run / report` for the liquid and Vision Mamba families, end to end.

Small seeded checkpoints (tests/liquid_checkpoints.py, the Vision Mamba fixture of
tests/test_vision_mamba.py) go through the CLI; every figure is compared with what the
Python API gives on the same inputs: logits within 1e-4 (the bundles' own tolerance), spike
counts and report figures exactly.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from liquid_checkpoints import write_checkpoint
from neurodeploy.cli import main
from test_vision_mamba import images, make_state_dict, save_training_checkpoint

TOL = 1e-4
IDS = [3, 7, 0, 22, 5, 5, 11, 2, 19, 8]


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(*args: str) -> dict:
    out = _invoke(*args, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _refused(*args: str, message: str) -> None:
    out = _invoke(*args)
    assert out.exit_code == 1, out.output
    assert message in out.output and "Traceback" not in out.output, out.output


@pytest.fixture(scope="module")
def liquid(tmp_path_factory):
    root = tmp_path_factory.mktemp("liquid_cli")
    out = {}
    for mode in ("sequential", "parallel"):
        ckpt, config = write_checkpoint(root / mode, mode)
        manifest = _ok("export", ckpt, "-o", root / mode / "bundle", "--config", config)
        out[mode] = (ckpt, config, root / mode / "bundle", manifest)
    (root / "ids.txt").write_text(" ".join(map(str, IDS)) + "\n")
    return root, out


def test_liquid_export_writes_a_verified_bundle(liquid):
    from neurodeploy.bundle import sha256_of
    from neurodeploy.liquid_bundle import load_liquid_bundle

    _, bundles = liquid
    for mode, (_, _, bundle_dir, manifest) in bundles.items():
        assert manifest["format"] == "neurodeploy.bundle.liquid/1" and manifest["parity"]["ok"]
        assert manifest["config"]["integration_mode"] == mode
        assert all(sha256_of(bundle_dir / name) == digest for name, digest in manifest["files"].items())
        assert load_liquid_bundle(bundle_dir).manifest == manifest
        shown = _ok("inspect", bundle_dir)
        assert shown["kind"] == "liquid bundle" and shown["files"] == manifest["files"]
        assert shown["capabilities"]["onnx_step"].startswith("yes" if mode == "sequential" else "no: ")
    assert "block_0_step.onnx" in bundles["sequential"][3]["files"]
    assert not any("step" in name for name in bundles["parallel"][3]["files"])


def test_liquid_run_streams_tokens_like_the_torch_model(liquid):
    from neurodeploy.liquid_bundle import load_liquid_bundle

    root, bundles = liquid
    bundle_dir = bundles["sequential"][2]
    payload = _ok("run", bundle_dir, root / "ids.txt")
    model = load_liquid_bundle(bundle_dir).loaded.model
    ids = torch.tensor([IDS])
    with torch.no_grad():
        logits, blocks = model(ids, return_internals=True)
    rows = payload["tokens"]
    assert [r["token"] for r in rows] == IDS and payload["summary"]["tokens"] == len(IDS)
    streamed = torch.tensor([r["logits"] for r in rows])
    assert (streamed - logits[0]).abs().max().item() <= TOL
    assert [r["predicted"] for r in rows] == logits[0].argmax(-1).tolist()
    for t, row in enumerate(rows):
        expected = {f"blocks.{b}.{layer}": int(blocks[b][layer][0, t].count_nonzero())
                    for b in range(len(blocks)) for layer in ("lif1", "lif2")}
        assert row["spikes"] == expected
    assert sum(sum(r["spikes"].values()) for r in rows) > 0  # the encoders fire
    piped = CliRunner().invoke(main, ["run", str(bundle_dir), "-", "--json"], input=" ".join(map(str, IDS[:4])))
    assert piped.exit_code == 0, piped.output
    assert [r["logits"] for r in json.loads(piped.stdout)["tokens"]] == [r["logits"] for r in rows[:4]]
    (root / "bad_ids.txt").write_text("1 2 99\n")
    _refused("run", bundle_dir, root / "bad_ids.txt", message="bad_ids.txt: token 2 is id 99")
    _refused("run", bundle_dir, root / "ids.txt", "--window-us", "1000", message="--window-us")


def test_liquid_run_refuses_a_non_causal_bundle_with_the_reason(liquid):
    root, bundles = liquid
    _refused("run", bundles["parallel"][2], root / "ids.txt", message="centred kernel")
    _refused("bench", bundles["sequential"][2], message="bench")


def test_liquid_verify_checks_every_encoder_and_the_stepped_logits(liquid):
    root, bundles = liquid
    for mode in ("sequential", "parallel"):
        result = CliRunner().invoke(main, ["verify", str(bundles[mode][2]), str(root / "ids.txt"), "--json"])
        assert result.exit_code == 0, result.output
        outcome = json.loads(result.output)
        assert outcome["passed"] and outcome["encoders"]
        assert all(e["mismatches"] == 0 and e["spikes_nir"] > 0 for e in outcome["encoders"])
        assert ("stepped_logits_max_abs" in outcome) == (mode == "sequential")
    _refused("verify", bundles["sequential"][2], root / "bad_ids.txt", message="bad_ids.txt: token 2 is id 99")


def test_liquid_report_equals_the_python_api(liquid, tmp_path):
    from neurodeploy.model.registry import load_model
    from neurodeploy.report.liquid import liquid_report

    root, bundles = liquid
    ckpt, config, bundle_dir, _ = bundles["parallel"]
    model = load_model(bundle_dir / "model.safetensors", family="liquid").model
    expected = liquid_report(model, torch.tensor([IDS]), targets=("loihi", "spinnaker2")).to_dict()
    from_bundle = _ok("report", bundle_dir, root / "ids.txt", "--target", "loihi", "--target", "spinnaker2",
                      "-o", tmp_path / "a")
    assert from_bundle["report"]["spikes_from"] == "NIR encoders"
    assert {k: v for k, v in from_bundle["report"].items() if k in expected} == json.loads(json.dumps(expected))
    assert (tmp_path / "a" / "report.md").read_text().startswith("# liquid: 10 tokens")
    from_ckpt = _ok("report", bundles["sequential"][0], root / "ids.txt", "-o", tmp_path / "b")
    seq_model = load_model(ckpt.parent.parent / "sequential" / "model.pt", str(bundles["sequential"][1]),
                           family="liquid").model
    assert from_ckpt["report"]["encoder_layers"] == json.loads(json.dumps(
        liquid_report(seq_model, torch.tensor([IDS])).to_dict()["encoder_layers"]))


@pytest.fixture(scope="module")
def vision(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision_cli")
    ckpt = save_training_checkpoint(root / "vim.pth", make_state_dict())
    np.save(root / "batch.npy", images(batch=3).numpy())
    np.save(root / "labels.npy", np.array([0, 3, 2]))
    manifest = _ok("export", ckpt, "-o", root / "bundle")
    return root, ckpt, manifest


def test_vision_export_run_and_report_equal_the_python_api(vision, tmp_path):
    from neurodeploy.bundle import sha256_of
    from neurodeploy.image_classification import classify_images
    from neurodeploy.model.registry import load_model
    from neurodeploy.report.vision_mamba import vision_mamba_report

    root, ckpt, manifest = vision
    bundle_dir = root / "bundle"
    assert manifest["format"] == "neurodeploy.bundle.vision-mamba/1" and manifest["parity"]["onnx_logits_max_abs"] <= TOL
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "model.onnx"}
    assert all(sha256_of(bundle_dir / name) == digest for name, digest in manifest["files"].items())
    assert _ok("inspect", bundle_dir)["parity"] == manifest["parity"]
    loaded = load_model(ckpt)
    api = classify_images(loaded, root / "batch.npy", labels=root / "labels.npy")
    for backbone in ("onnxruntime", "torch"):
        ran = _ok("run", bundle_dir, root / "batch.npy", "--labels", root / "labels.npy", "--backbone", backbone)
        assert ran["summary"]["runtime"] == ("onnx" if backbone == "onnxruntime" else "torch")
        assert [r["prediction"] for r in ran["images"]] == api.predictions.tolist()
        assert ran["summary"]["top1"] == api.accuracy(1)
        assert max(abs(r["max_logit"] - float(m)) for r, m in zip(ran["images"], api.logits.max(-1).values)) <= TOL
    expected = json.loads(json.dumps(vision_mamba_report(loaded).to_dict()))
    for path in (bundle_dir, ckpt):
        rep = _ok("report", path, root / "batch.npy", "-o", tmp_path / path.name)["report"]
        assert {k: v for k, v in rep.items() if k in expected} == expected and rep["images"] == 3
    cpu_only = _ok("report", bundle_dir, root / "batch.npy", "--host", "cpu", "-o", tmp_path / "cpu")["report"]
    assert [e["device"] for e in cpu_only["energy_per_image"]] == ["cpu"]


def test_vision_refusals_name_the_capability(vision, tmp_path):
    root, ckpt, _ = vision
    _refused("report", root / "bundle", root / "batch.npy", "--target", "loihi", "-o", tmp_path,
             message="report --target")
    _refused("export", ckpt, "-o", tmp_path / "x", "--pool-rewrite", "sum", message="--pool-rewrite")
    _refused("verify", root / "bundle", message="vision-mamba")
    (root / "bundle_copy").mkdir()
    for path in (root / "bundle").iterdir():
        (root / "bundle_copy" / path.name).write_bytes(path.read_bytes())
    (root / "bundle_copy" / "model.onnx").write_bytes(b"tampered")
    _refused("run", root / "bundle_copy", root / "batch.npy", message="model.onnx: sha256 differs")
