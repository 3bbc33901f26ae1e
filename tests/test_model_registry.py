"""The family registry: detection from the tensors alone, loading, capabilities, refusals."""
from __future__ import annotations

import pytest
import torch

from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError
from neurodeploy.model import MambaSpike, MambaSpikeConfig, save_checkpoint
from neurodeploy.model.family import CAPABILITIES
from neurodeploy.model.registry import UnknownFamilyError, families, get_family, load_model


def test_every_family_answers_every_capability():
    for family in families():
        assert family.name
        config = family.config_from_dict({}) if family.name == "mamba-spike" else None
        if config is not None:
            assert set(family.capabilities(config)) == set(CAPABILITIES)


def test_own_and_bare_mamba_spike_checkpoints_are_detected(tmp_path):
    torch.manual_seed(0)
    config = MambaSpikeConfig.deployable(d_model=16, n_layers=1)
    model = MambaSpike(config)
    own = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(own)
    assert loaded.family.name == "mamba-spike" and loaded.config == config
    assert loaded.source_format == "neurodeploy safetensors"
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    loaded = load_model(bare, config.to_dict())
    assert loaded.family.name == "mamba-spike"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_max_pool_refuses_nir_with_the_way_out():
    loaded_config = MambaSpikeConfig.nmnist_v1()
    cap = get_family("mamba-spike").capabilities(loaded_config)["nir"]
    assert not cap.supported and "--pool-rewrite" in cap.reason


def test_unknown_weights_and_family_names_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(UnknownFamilyError, match="encoder.weight") as err:
        load_model(path)
    assert isinstance(err.value, NeurodeployError)
    with pytest.raises(UnknownFamilyError, match="known"):
        get_family("no-such-family")


def test_unsupported_capability_error_names_family_and_reason(tmp_path):
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig(d_model=16, n_layers=1))
    loaded = load_model(save_checkpoint(model, tmp_path / "v1.safetensors"))
    with pytest.raises(UnsupportedCapabilityError, match="mamba-spike: nir is not supported: NIR 1.0.8 has no max"):
        loaded.require("nir")
    loaded.require("onnx_full")
