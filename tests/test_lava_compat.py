"""The Python 3.11 shim imports Lava and a tiny Dense+LIF network runs to the end."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.lava


def test_lava_imports_through_the_shim_and_runs_dense_lif():
    # In a subprocess: Lava sets the fork start method and spawns runtime processes; a fresh
    # interpreter proves the shim works from a clean import and that nothing hangs at exit.
    code = textwrap.dedent(
        """
        import numpy as np
        from neurodeploy.lava_compat import import_lava
        import_lava()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF
        from lava.proc.monitor.process import Monitor

        steps = 6
        inp = np.zeros((2, steps)); inp[0, :] = 1.0; inp[1, ::2] = 1.0
        src = Source(data=inp)
        dense = Dense(weights=np.array([[0.6, 0.0], [0.0, 0.9]]))
        lif = LIF(shape=(2,), du=1.0, dv=0.0, vth=1.0, bias_mant=0.0)
        src.s_out.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        mon = Monitor(); mon.probe(lif.s_out, steps)
        try:
            lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
            spikes = mon.get_data()[lif.name]["s_out"]
        finally:
            lif.stop()
        print("SPIKES", spikes.astype(int).T.tolist())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("SPIKES")][0]
    spikes = np.array(eval(line.split(" ", 1)[1]))  # noqa: S307  (our own printed list)
    # du=1, dv=0: v integrates the Dense output without leak, fires when v > 1, resets to 0.
    # Dense delivers input t at step t+1. Neuron 0 gets 0.6 from step 1 on: v = .6, 1.2 (spike),
    # .6, 1.2 (spike), .6. Neuron 1 gets 0.9 at steps 1, 3, 5: v = .9, 1.8 (spike), .9.
    assert spikes.tolist() == [[0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]]


def test_shim_refuses_when_var_model_was_imported_first(monkeypatch):
    import neurodeploy.lava_compat as compat

    monkeypatch.setattr(compat, "_installed", False)
    monkeypatch.setitem(sys.modules, compat._TARGET, object())
    with pytest.raises(compat.LavaCompatError, match="imported before neurodeploy.lava_compat"):
        compat.install()


def test_shim_refuses_unexpected_lava_version(monkeypatch):
    import importlib.metadata

    import neurodeploy.lava_compat as compat

    monkeypatch.setattr(compat, "_installed", False)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.9.0")
    with pytest.raises(compat.LavaCompatError, match="lava-nc 0.9.0 is installed"):
        compat.install()


def test_patch_refuses_source_it_does_not_recognise(tmp_path):
    import neurodeploy.lava_compat as compat

    fake = tmp_path / "var_model.py"
    fake.write_text("from dataclasses import dataclass, InitVar\nclass ByteEncoder: pass\n")
    loader = compat._PatchedSourceLoader("lava.magma.compiler.var_model", str(fake))
    with pytest.raises(compat.LavaCompatError, match="expected 8 .*found 0"):
        loader.get_data(str(fake))
