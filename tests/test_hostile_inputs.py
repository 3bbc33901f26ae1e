"""Issue 21: no file, checkpoint, bundle or stream can crash, hang, exhaust or read past the toolkit.

Every hostile input here is made by the project's own writers and mutators (events.mutation),
never copied: the regression corpus is a list of (decoder, seed) pairs that once killed, hung or
escaped the error base in benchmarks/fuzz.py.
"""
from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import neurodeploy.events as E
from neurodeploy.errors import NeurodeployError
from neurodeploy.events.mutation import mutate, valid_file
from neurodeploy.events.readers import incremental_decoder

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LENIENT = {"out_of_bounds": "drop", "non_monotonic": "keep", "truncated": "count"}


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _events(n: int, size=(128, 128), span=2_000_000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return E.make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), np.sort(rng.integers(0, span, n)),
                         rng.integers(0, 2, n))


# -- regression corpus ---------------------------------------------------------------------------
# (kind, seed): mutants that aborted the interpreter before issue 21 (faery on a non-UTF-8 AEDAT4
# description: a pyo3 panic in a destructor), found by benchmarks/fuzz.py
# and packets whose header claims -1 bytes (faery allocated 4 GB and took 10 s)
CORPUS = [("aedat4", 679), ("aedat4_dv", 199), ("aedat4_dv", 403), ("aedat4_dv", 411), ("aedat4_dv", 577),
          ("aedat4_dv", 589), ("aedat4_dv", 765), ("aedat4", 3491), ("aedat4_dv", 2981),
          ("evt2.1", 7400),  # a header width of '1²8' (str.isdigit() accepts it, int() does not)
          ("evt3", 58728), ("dat", 45675), ("csv", 42219),  # a header size of 128128: Recording's own
                                                              # check raised a bare ValueError
          ("csv", 97)]  # non-ASCII garbage in a data line: numpy's loadtxt segfaulted now and then


@pytest.mark.parametrize("kind,seed", CORPUS)
def test_corpus_mutants_are_refused_cleanly(tmp_path, kind, seed):
    path = _write(tmp_path, "m.aedat4" if kind.startswith("aedat4") else "m.csv" if kind == "csv" else "m.raw",
                  mutate(valid_file(kind), np.random.default_rng(seed)))
    started = time.perf_counter()
    with pytest.raises(NeurodeployError, match=path.name):
        E.load(path, format=kind.removesuffix("_dv"), **(LENIENT if seed % 2 else {}))
    assert time.perf_counter() - started < 5


def test_aedat4_truncated_inside_a_packet_follows_the_policy(tmp_path):
    path = tmp_path / "t.aedat4"
    E.save(E.Recording(_events(20_000), (128, 128)), path)
    data = path.read_bytes()
    cut = _write(tmp_path, "cut.aedat4", data[: len(data) // 2])
    with pytest.raises(E.EventFileError, match="truncated"):
        E.load(cut)
    kept = E.load(cut, truncated="count")
    assert 0 < len(kept) < 20_000 and kept.stats.truncated_bytes > 0
    assert np.array_equal(kept.events, E.load(path).events[: len(kept)])


def test_dv_stream_fuzz_target():
    """The DV network reader on mutated streams (fed through a socket pair): errors or events."""
    import importlib.util

    # loaded from its file: putting benchmarks/ on sys.path would let its lava.py shadow Lava
    spec = importlib.util.spec_from_file_location(
        "_fuzz_benchmark", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "fuzz.py"))
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    _decode_dv_stream = fuzz._decode_dv_stream

    from neurodeploy.events.mutation import dv_stream

    base = dv_stream()
    assert _decode_dv_stream(base) == 200
    for seed in range(150):
        try:
            _decode_dv_stream(mutate(base, np.random.default_rng(seed)))
        except E.EventFileError:
            pass


def test_aedat4_non_utf8_description_is_refused_before_faery(tmp_path):
    data = bytearray(valid_file("aedat4"))
    at = data.index(b"<dv version")
    data[at + 1] = 0xC3  # a lone UTF-8 lead byte inside the description
    with pytest.raises(E.EventFileError, match="IOHeader.*utf-8|utf-8.*IOHeader"):
        E.load(_write(tmp_path, "d.aedat4", bytes(data)))


def test_aedat4_short_type_identifier_is_refused(tmp_path):
    data = valid_file("aedat4_dv")
    forged = data.replace(b">EVTS<", b">EVT<  ", 1) if b">EVTS<" in data else data.replace(b'"EVTS"', b'"EVT"', 1)
    with pytest.raises(E.EventFileError):
        E.load(_write(tmp_path, "t.aedat4", forged))


@pytest.mark.parametrize("kind", ["aedat4", "aedat4_dv", "evt2", "evt2.1", "evt3", "dat", "npy", "npz"])
@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_library_and_container_decoders_fuzz(tmp_path_factory, kind, seed):
    """A hypothesis target per decoder that load() uses (the hand-written byte decoders are fuzzed
    chunk by chunk in test_events_fuzz.py): EventFileError or events, nothing else."""
    folder = tmp_path_factory.mktemp("fuzz")
    name = {"aedat4": "f.aedat4", "aedat4_dv": "f.aedat4", "npy": "f.npy", "npz": "f.npz"}.get(kind, "f.raw")
    fmt = {"aedat4_dv": "aedat4"}.get(kind, kind)
    path = _write(folder, name, mutate(valid_file(kind), np.random.default_rng(seed)))
    try:
        recording = E.load(path, format=fmt, sensor_size=(128, 128) if fmt == "npy" else None,
                           **(LENIENT if seed % 2 else {}))
    except E.EventFileError as err:
        assert str(path) in str(err)
    else:
        assert recording.events.dtype == E.EVENT_DTYPE


# -- one answer per recording ----------------------------------------------------------------------
def _going_back(fmt: str) -> bytes:
    """Three events at t = 64+20, 64+10 (back by 10 us: not a counter wrap), 64+30, written by hand."""
    times, x, y = [84, 74, 94], [1, 2, 3], [5, 6, 7]
    if fmt == "dat":
        head = b"% Data file containing CD events.\n% Version 2\n% Width 128\n% Height 128\n\x0c\x08"
        records = np.array([(t, xi | (yi << 14) | (1 << 28)) for t, xi, yi in zip(times, x, y)], "<u4")
        return head + records.tobytes()
    if fmt == "evt2":
        words = [(8 << 28) | 1] + [(1 << 28) | ((t & 63) << 22) | (xi << 11) | yi for t, xi, yi in zip(times, x, y)]
        return b"% evt 2.0\n% format EVT2;height=128;width=128\n% end\n" + np.array(words, "<u4").tobytes()
    words = [(8 << 60) | (1 << 32)] + [(1 << 60) | ((t & 63) << 54) | (xi << 43) | (yi << 32) | 1
                                       for t, xi, yi in zip(times, [0, 32, 64], y)]
    return b"% evt 2.1\n% format EVT21;height=128;width=128\n% end\n" + np.array(words, "<u8").tobytes()


@pytest.mark.parametrize("fmt", ["evt2", "evt2.1", "dat"])
def test_backwards_time_gives_one_answer_loaded_and_followed(tmp_path, fmt):
    """faery 0.7.1 clamped the step back to the previous time and counted nothing; now loading and
    following (the project's decoders both) raise under 'error' and count the same under 'keep'."""
    path = _write(tmp_path, "b.raw", _going_back(fmt))
    with pytest.raises(E.EventFileError, match="backwards"):
        E.load(path, format=fmt)
    with pytest.raises(E.EventFileError, match="backwards"):
        list(E.follow_file(path, format=fmt, idle_timeout_s=0.05))
    loaded = E.load(path, format=fmt, non_monotonic="keep")
    followed = E.follow_file(path, format=fmt, idle_timeout_s=0.05, non_monotonic="keep")
    events = np.concatenate(list(followed))
    assert loaded.stats.non_monotonic == followed.stats.non_monotonic == 1
    assert np.array_equal(loaded.events, events)
    assert loaded.events["t"].tolist() == [84, 74, 94]


@pytest.mark.parametrize("fmt", ["evt2", "evt2.1", "dat"])
def test_partial_last_record_is_an_error_or_counted(tmp_path, fmt):
    path = tmp_path / "p.raw"
    E.save(E.Recording(_events(100), (128, 128)), path, format=fmt)
    path.write_bytes(path.read_bytes() + b"\x01\x02\x03")
    with pytest.raises(E.EventFileError, match="ends inside a record"):
        E.load(path, format=fmt)
    assert E.load(path, format=fmt, truncated="count").stats.truncated_bytes == 3


def test_evt21_roundtrip_both_byte_orders(tmp_path):
    events = _events(4000, (640, 480), span=100_000_000_000)  # 27.8 h: the 34-bit (4.77 h) time wraps 5 times
    events["t"][:64] = events["t"][0]  # one burst in one microsecond: vectors
    recording = E.Recording(events, (640, 480))
    path = tmp_path / "e.raw"
    E.save(recording, path, format="evt2.1")
    assert E.detect_format(path) == "evt2.1"
    back = E.load(path)
    assert back == recording and back.stats.time_wraps == int(events["t"][-1]) >> 34 == 5
    # the IMX636 ("endianness=legacy") layout: the header half first, then the mask
    raw = path.read_bytes()
    body = raw.index(b"% end\n") + len(b"% end\n")
    halves = np.frombuffer(raw[body:], "<u4").reshape(-1, 2)[:, ::-1].copy()
    legacy = raw[:body].replace(b"width=640", b"width=640;endianness=legacy") + halves.tobytes()
    assert E.load(_write(tmp_path, "l.raw", legacy)) == recording
    # chunked decoding gives the same events
    decoder = incremental_decoder("evt2.1", "x")
    parts = [decoder.feed(raw[i:i + 101]) for i in range(0, len(raw), 101)] + [decoder.finish()]
    assert np.array_equal(np.concatenate(parts), events)


def test_header_saying_evt21_on_other_data_is_an_error_not_a_panic(tmp_path):
    path = tmp_path / "x.raw"
    E.save(E.Recording(_events(100), (128, 128)), path, format="evt3")
    forged = path.read_bytes().replace(b"evt 3.0", b"evt 2.1").replace(b"EVT3", b"EVT21")
    try:
        E.load(_write(tmp_path, "y.raw", forged), **LENIENT)
    except E.EventFileError:
        pass


def test_int64_extremes_in_the_monotonicity_check():
    from neurodeploy.events.policy import PacketChecker, ReadPolicy

    checker = PacketChecker("x", (10, 10), ReadPolicy(), E.DecodeStats())
    big = np.iinfo(np.int64).max
    forward = E.make_events([0, 1], [0, 0], [-big, big], [0, 1])  # forward by almost 2**64: was rejected
    assert len(checker(forward)) == 2
    checker = PacketChecker("x", (10, 10), ReadPolicy(), E.DecodeStats())
    backward = E.make_events([0, 1], [0, 0], [big, -big], [0, 1])  # back by almost 2**64: was accepted
    with pytest.raises(E.EventFileError, match="backwards"):
        checker(backward)


# -- .npy / .npz ------------------------------------------------------------------------------------
def test_npy_header_claiming_a_billion_events_is_refused_before_allocation(tmp_path):
    path = tmp_path / "e.npy"
    np.save(path, _events(10))
    forged = path.read_bytes().replace(b"(10,)", b"(1000000000,)")
    tracemalloc.start()
    with pytest.raises(E.EventFileError, match="claims 1000000000 elements"):
        E.load(_write(tmp_path, "f.npy", forged), sensor_size=(128, 128))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 << 20


def test_npz_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    header = b"\x93NUMPY\x01\x00v\x00{'descr': [('x', '<u2'), ('y', '<u2'), ('t', '<i8'), ('p', '|u1')], " \
             b"'fortran_order': False, 'shape': (10000000,), }"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("events.npy", header.ljust(128, b" ") + bytes(130_000_000))
    assert path.stat().st_size < 1 << 20
    started = time.perf_counter()
    with pytest.raises(E.EventFileError, match="inflates"):
        E.load(path)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("header", [
    b"{'descr': '<i8', (",                                   # tokenize.TokenError
    b"{'descr': [('x', '<u2')], 'fortran_order': False, 'shape': (1e999,), }",  # not a shape
    b"{'descr': 'O', 'fortran_order': False, 'shape': (1,), }",                  # objects
    b"{'descr': [('x', 'V0')], 'fortran_order': False, 'shape': (99999999999999999999,), }",
    b"{'descr': 1 +, 'fortran_order': False, 'shape': (1,), }",                   # SyntaxError
])
def test_npy_header_errors_are_event_file_errors(tmp_path, header):
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n"
    with pytest.raises(E.EventFileError, match="x.npy"):
        E.load(_write(tmp_path, "x.npy", data + bytes(64)), sensor_size=(4, 4))


# -- checkpoints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    from neurodeploy.model.mamba_spike.checkpoint import save_checkpoint
    from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
    from neurodeploy.model.mamba_spike.model import MambaSpike

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "ok.safetensors"
    save_checkpoint(MambaSpike(MambaSpikeConfig(d_model=16, n_layers=1, d_state=4, conv_channels=4,
                                                spiking_channels=4)), path)
    return path


def _forge(small_checkpoint, tmp_path, config_text=None, **fields):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(small_checkpoint), "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["neurodeploy.config"])
    config.update(fields)
    meta["neurodeploy.config"] = config_text if config_text is not None else json.dumps(config)
    path = tmp_path / "forged.safetensors"
    save_file(load_file(str(small_checkpoint)), str(path), metadata=meta)
    return path


@pytest.mark.parametrize("fields,match", [
    ({"d_model": 10**9}, "input_proj.weight"),
    ({"d_state": 10**7}, "A_log"),
    ({"n_layers": 10**5}, "n_layers"),
    ({"threshold": float("nan")}, "threshold"),
    ({"threshold": float("inf")}, "threshold"),
    ({"beta": float("nan")}, "beta"),
    ({"interface_window": 10**9}, "interface_window"),
])
def test_forged_checkpoint_config_is_refused_before_allocation(small_checkpoint, tmp_path, fields, match):
    from neurodeploy.model.registry import load_model

    path = _forge(small_checkpoint, tmp_path, **fields)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(NeurodeployError, match=match):
        load_model(path)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 1 and peak < 50 << 20


def test_deeply_nested_config_json_is_refused(small_checkpoint, tmp_path):
    from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint

    path = _forge(small_checkpoint, tmp_path, config_text="[" * 200_000 + "]" * 200_000)
    with pytest.raises(NeurodeployError, match="nested"):
        load_checkpoint(path)


def test_safetensors_header_claims_checked_and_parameter_budget(small_checkpoint, tmp_path, monkeypatch):
    from neurodeploy.model.checkpoint_io import read_checkpoint

    data = small_checkpoint.read_bytes()
    header_size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_size])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10**6, 10**6]
    text = json.dumps(header).encode()
    forged = _write(tmp_path, "h.safetensors", struct.pack("<Q", len(text)) + text + data[8 + header_size:])
    with pytest.raises(NeurodeployError, match=f"{name}.*needs"):
        read_checkpoint(forged)
    monkeypatch.setenv("NEURODEPLOY_MAX_PARAMETERS", "1000")
    with pytest.raises(NeurodeployError, match="NEURODEPLOY_MAX_PARAMETERS"):
        read_checkpoint(small_checkpoint)


# -- bundles ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, small_checkpoint):
    from neurodeploy.bundle import ExportOptions, export

    folder = tmp_path_factory.mktemp("bundle") / "b"
    export(small_checkpoint, folder, ExportOptions(artifacts=("onnx",), parity_samples=1, parity_steps=3))
    return folder


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path):
    import shutil

    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def _rehash(folder, manifest=None):
    from neurodeploy.bundle import sha256_of

    manifest = manifest or json.loads((folder / "manifest.json").read_text())
    for name in manifest["artifacts"]:
        path = folder / name
        if path.is_file():
            manifest["artifacts"][name]["sha256"] = sha256_of(path)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_symlinked_artifact_pointing_outside_is_refused(bundle_copy, tmp_path):
    from neurodeploy.bundle import BundleError, load_bundle

    outside = _write(tmp_path, "secret.safetensors", (bundle_copy / "model.safetensors").read_bytes())
    (bundle_copy / "model.safetensors").unlink()
    (bundle_copy / "model.safetensors").symlink_to(outside)
    with pytest.raises(BundleError, match="model.safetensors.*symbolic link"):
        load_bundle(bundle_copy)


def test_symlinked_manifest_is_refused(bundle_copy, tmp_path):
    from neurodeploy.bundle import BundleError, load_bundle

    outside = _write(tmp_path, "m.json", (bundle_copy / "manifest.json").read_bytes())
    (bundle_copy / "manifest.json").unlink()
    (bundle_copy / "manifest.json").symlink_to(outside)
    with pytest.raises(BundleError, match="manifest.json.*symbolic link"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("name", ["../model.safetensors", "/etc/passwd", "sub/model.safetensors", "notes.txt"])
def test_artifact_names_outside_the_toolkit_set_are_refused(bundle_copy, name):
    from neurodeploy.bundle import BundleError, load_bundle

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["artifacts"][name] = {"sha256": "0" * 64, "bytes": 1}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest.json|not a plain file name"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("field,value,match", [
    ("dt_us", 0, "dt_us"), ("dt_us", "1000", "dt_us"), ("dt_us", 10**12, "dt_us"),
    ("artifacts", [], "artifacts"), ("config", "x", "config"), ("format", None, "format"),
    ("skipped", [1], "skipped"),
])
def test_manifest_schema(bundle_copy, field, value, match):
    from neurodeploy.bundle import BundleError, load_bundle

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest[field] = value
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "{}", "[]", '{"format": "neurodeploy.bundle/1"}'])
def test_malformed_manifests_are_bundle_errors(bundle_copy, text):
    from neurodeploy.bundle import BundleError, load_bundle

    (bundle_copy / "manifest.json").write_text(text)
    with pytest.raises(BundleError):
        load_bundle(bundle_copy)


def _edit_onnx(folder, name, edit):
    import onnx

    model = onnx.load(str(folder / name))
    edit(model)
    onnx.save(model, str(folder / name))
    _rehash(folder)


def test_onnx_external_data_outside_the_bundle_is_refused(bundle_copy):
    from neurodeploy.bundle import BundleError, load_bundle

    def edit(model):
        import onnx

        tensor = model.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"

    _edit_onnx(bundle_copy, "backbone_step.onnx", edit)
    with pytest.raises(BundleError, match="external data.*not a plain file name"):
        load_bundle(bundle_copy)


def test_onnx_loop_and_huge_allocation_are_refused(bundle_copy):
    import onnx
    from onnx import helper, numpy_helper

    from neurodeploy.bundle import BundleError, load_bundle

    def add_loop(model):
        model.graph.node.append(helper.make_node("Loop", ["", "", ""], ["forever"], name="spin",
                                                 body=helper.make_graph([], "body", [], [])))

    _edit_onnx(bundle_copy, "backbone_step.onnx", add_loop)
    with pytest.raises(BundleError, match="Loop"):
        load_bundle(bundle_copy)

    def loop_in_the_custom_op(model):
        model.graph.node.remove(model.graph.node[-1])
        model.functions[0].node.append(helper.make_node("Loop", ["", "", ""], ["forever"], name="hidden",
                                                        body=helper.make_graph([], "body", [], [])))

    _edit_onnx(bundle_copy, "backbone_step.onnx", loop_in_the_custom_op)
    with pytest.raises(BundleError, match="hidden.*Loop"):
        load_bundle(bundle_copy)

    def add_allocation(model):
        model.functions[0].node.remove(model.functions[0].node[-1])
        model.graph.initializer.append(numpy_helper.from_array(np.array([3, 1 << 30], np.int64), "huge_shape"))
        model.graph.node.append(helper.make_node("ConstantOfShape", ["huge_shape"], ["big"], name="alloc"))

    _edit_onnx(bundle_copy, "backbone_step.onnx", add_allocation)
    with pytest.raises(BundleError, match="alloc.*elements"):
        load_bundle(bundle_copy)
    del onnx


def test_onnx_declared_shape_must_match_the_config(bundle_copy):
    from neurodeploy.bundle import BundleError, load_bundle

    def edit(model):
        dims = next(i for i in model.graph.input if i.name == "ssm_state").type.tensor_type.shape.dim
        dims[3].dim_value = 10**6

    _edit_onnx(bundle_copy, "backbone_step.onnx", edit)
    with pytest.raises(BundleError, match="ssm_state"):
        load_bundle(bundle_copy)


def test_hdf5_artifact_that_inflates_is_refused(bundle_copy):
    import h5py

    from neurodeploy.bundle import BundleError, load_bundle

    with h5py.File(bundle_copy / "frontend.nir", "w") as f:
        f.create_dataset("w", shape=(20_000, 20_000), dtype="f4", chunks=(1000, 1000), compression="gzip")
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["artifacts"]["frontend.nir"] = {"sha256": "0" * 64, "bytes": 0}
    _rehash(bundle_copy, manifest)
    with pytest.raises(BundleError, match="frontend.nir.*dataset 'w'"):
        load_bundle(bundle_copy)


def test_signed_bundles(bundle_copy, tmp_path):
    from click.testing import CliRunner

    from neurodeploy.bundle import load_bundle
    from neurodeploy.bundle_signing import SignatureError, generate_keypair, sign_manifest
    from neurodeploy.cli import main

    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    generate_keypair(tmp_path / "other", tmp_path / "other.pub")
    with pytest.raises(SignatureError, match="not signed"):
        load_bundle(bundle_copy, trusted_key=tmp_path / "k.pub")
    sign_manifest(bundle_copy / "manifest.json", tmp_path / "k")
    assert load_bundle(bundle_copy, trusted_key=tmp_path / "k.pub").dt_us == 1000
    with pytest.raises(SignatureError, match="does not verify"):
        load_bundle(bundle_copy, trusted_key=tmp_path / "other.pub")
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["dt_us"] = 2000
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SignatureError, match="does not verify"):
        load_bundle(bundle_copy, trusted_key=tmp_path / "k.pub")
    events = tmp_path / "e.npz"
    E.save(E.Recording(_events(50, (34, 34), 100_000), (34, 34)), events)
    result = CliRunner().invoke(main, ["run", str(bundle_copy), str(events), "--trust", str(tmp_path / "k.pub"),
                                       "--frontend", "torch", "--backbone", "torch"])
    assert result.exit_code == 1 and "does not verify" in result.output


def test_export_sign_then_run_trust(small_checkpoint, tmp_path):
    from click.testing import CliRunner

    from neurodeploy.bundle_signing import generate_keypair
    from neurodeploy.cli import main

    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    runner = CliRunner()
    out = tmp_path / "signed"
    result = runner.invoke(main, ["export", str(small_checkpoint), "-o", str(out), "--artifacts", "onnx",
                                  "--sign", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    events = tmp_path / "e.npz"
    E.save(E.Recording(_events(50, (34, 34), 100_000), (34, 34)), events)
    result = runner.invoke(main, ["run", str(out), str(events), "--trust", str(tmp_path / "k.pub"),
                                  "--frontend", "torch"])
    assert result.exit_code == 0, result.output
    assert "1 samples" in result.output


# -- streams ----------------------------------------------------------------------------------------
class _CountingFrontend:
    """A stand-in runtime: the streaming bookkeeping under test, not a model."""

    layer_names = ("lif",)

    def __init__(self):
        self.spike_counts = {"lif": 0}

    def reset(self, batch):
        self.spike_counts = {"lif": 0}

    def step(self, frame):
        return frame.sum(dim=(1, 2, 3), keepdim=False)[:, None]

    def flush(self):
        return torch.zeros(1, 0, 1)

    def close(self):
        pass


class _SumBackbone:
    def reset(self, batch):
        self.total = torch.zeros(1, 2)

    def step(self, spikes):
        self.total = self.total + torch.cat([spikes, -spikes], dim=1)
        return self.total

    def flush(self):
        return self.total

    def close(self):
        pass


def _run(packets, **options):
    from neurodeploy.stream import StreamOptions, StreamRun

    run = StreamRun(_CountingFrontend(), _SumBackbone(), packets, (34, 34), StreamOptions(**options))
    return run, list(run)


def test_an_event_an_hour_ahead_closes_the_sample_without_a_gap_sized_allocation():
    events = _events(100, (34, 34), 100_000)
    late = E.make_events([1], [1], [int(events["t"][-1]) + 3_600_000_000], [1])
    tracemalloc.start()
    run, results = _run([events, late], dt_us=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 << 20
    assert len(results) == 2 and results[0].n_events == 100 and results[1].n_events == 1
    summary = run.summary()
    assert summary["time_jumps"] == 1 and summary["largest_time_jump_us"] >= 3_600_000_000
    assert summary["steps"] < 200
    # windows are re-anchored at the jump instead of stepping through 12 000 empty windows
    run, results = _run([events, late], dt_us=1000, window_us=300_000)
    assert len(results) == 2 and run.summary()["time_jumps"] == 1
    # the jump is a configurable bound; a jump below it runs its bins in bounded batches
    run, results = _run([events, late], dt_us=200_000, max_time_jump_us=4_000_000_000)
    assert len(results) == 1 and run.summary()["time_jumps"] == 0 and results[0].n_steps > 18_000


def test_offline_binning_of_a_gap_is_refused_not_allocated():
    from neurodeploy.events.binning import FrameBudgetError, to_frames_dt

    events = E.make_events([1, 2], [1, 2], [0, 3_600_000_000], [1, 0])
    with pytest.raises(FrameBudgetError, match="GiB"):
        to_frames_dt(events, (128, 128), 1000)
    assert to_frames_dt(events, (128, 128), 1000, n_bins=10).shape == (10, 2, 128, 128)


def test_dt_us_range():
    from neurodeploy.stream import StreamOptions

    for dt in (0, -5, 10**9, 1.5):
        with pytest.raises(ValueError, match="dt_us"):
            StreamOptions(dt_us=dt)


def test_long_stream_keeps_bounded_state():
    """100 000 steps in 1 000 samples: results, per-sample lists and latencies stay bounded."""
    def packets():
        for k in range(1000):
            yield E.make_events([1, 2], [1, 2], [k * 100_000, k * 100_000 + 50_000], [1, 0])

    run, results = _run(packets(), dt_us=1000, window_us=100_000, keep_results=10, keep_steps=16)
    summary = run.summary()
    assert summary["samples"] == 1000 and summary["steps"] == 100_000
    assert len(run.results) == 10 and all(len(r.step_latency_us) <= 16 for r in run.results)
    assert summary["step_latency_us"]["p50"] > 0
    assert run.stats.step_latency_us.counts.nbytes < 20_000


@pytest.mark.slow
def test_million_step_soak_has_flat_rss():
    import resource

    def packets():
        for k in range(10_000):
            yield E.make_events([1, 2], [1, 2], [k * 100_000, k * 100_000 + 50_000], [1, 0])

    from neurodeploy.stream import StreamOptions, StreamRun

    run = StreamRun(_CountingFrontend(), _SumBackbone(), packets(), (34, 34),
                    StreamOptions(dt_us=1000, window_us=100_000, keep_results=100))
    rss = []
    for i, _ in enumerate(run):
        if i % 1000 == 999:
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert run.summary()["steps"] == 1_000_000
    assert rss[-1] - rss[1] < 20_000  # KB: flat after warm-up


# -- Lava workers ----------------------------------------------------------------------------------
@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killed_lava_run_leaves_no_orphans_and_no_shared_memory(signal_name):
    import signal
    import subprocess
    import sys

    def descendants(pid):
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent == pid:
                    found += [int(entry), *descendants(int(entry))]
        return found

    def alive(pid):
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    before = set(os.listdir("/dev/shm"))
    child = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "lava_kill_child.py")],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout.readline().strip() == b"running"
    time.sleep(1)
    workers = descendants(child.pid)
    ours = set(os.listdir("/dev/shm")) - before
    assert len(workers) >= 5 and ours
    child.send_signal(getattr(signal, signal_name))
    child.wait(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(alive(w) for w in workers) or ours & set(os.listdir("/dev/shm"))):
        time.sleep(0.2)
    left = [w for w in workers if alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left
    assert not ours & set(os.listdir("/dev/shm"))


# -- live DV peers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dv_stream_bytes(tmp_path_factory):
    """What dv-processing's NetworkWriter sends for 300 events in 7 packets, captured from a real writer."""
    import socket
    import subprocess
    import sys

    from test_events_live import SERVER

    folder = tmp_path_factory.mktemp("dv")
    np.save(folder / "ev.npy", _events(300, (34, 34), 100_000))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(folder / "ev.npy"), str(port), "34", "34"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        data = b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            while chunk := client.recv(1 << 16):
                data += chunk
        assert server.wait(10) == 0
    finally:
        server.kill()
        server.wait()
    from neurodeploy.events.aedat4_framing import parse_io_header

    header = parse_io_header(data, "capture")
    return data[:header.length], data[header.length:]


def _serve(data: bytes, linger_s: float = 0.0):
    """A peer that sends `data` at once to the first client, then waits linger_s and closes."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def send():
        connection, _ = server.accept()
        with connection:
            connection.sendall(data)
            time.sleep(linger_s)
        server.close()

    threading.Thread(target=send, daemon=True).start()
    return server.getsockname()[1]


def _packets(body: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(body):
        size = struct.unpack_from("<i", body, at + 4)[0]
        out.append(body[at:at + 8 + size])
        at += 8 + size
    return out


def test_dv_burst_then_disconnect_delivers_every_packet(dv_stream_bytes):
    header, body = dv_stream_bytes
    packets = _packets(body)
    burst = header + b"".join(packets * 43)  # 301 packets sent at once, then the close
    source = E.dv_network_source("127.0.0.1", _serve(burst), non_monotonic="keep")
    delivered = list(source)
    assert len(delivered) == source.stats.packets == 7 * 43
    assert source.stats.packets_lost == 0


@pytest.mark.parametrize("attack,match", [
    ("garbage_after_header", "claims"),
    ("garbage_before_header", "header size"),
    ("short_type_identifier", "four characters"),
    ("packet_claims_2gb", "claims 2147483000 bytes"),
    ("corrupt_flatbuffer", "corrupt event packet"),
])
def test_dv_misbehaving_peers_end_with_a_message(dv_stream_bytes, attack, match):
    header, body = dv_stream_bytes
    rng = np.random.default_rng(0)
    data = {
        "garbage_after_header": header + rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes(),
        "garbage_before_header": rng.integers(0, 256, 64, dtype=np.uint8).tobytes().replace(b"\x00", b"\xff") + header,
        "short_type_identifier": None,
        "packet_claims_2gb": header + body[:4] + struct.pack("<i", 2147483000) + body[8:],
        "corrupt_flatbuffer": header + body[:8] + bytes(16) + body[24:],
    }[attack]
    if attack == "short_type_identifier":
        size = struct.unpack_from("<i", header)[0]
        forged = header[4:].replace(b">EVTS<", b">EVT <")
        data = struct.pack("<i", size) + forged + body
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(E.EventFileError, match=match):
        list(E.dv_network_source("127.0.0.1", _serve(data, linger_s=0.5), read_timeout_s=2))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 3 and peak < 50 << 20


def test_dv_cut_inside_a_packet_is_counted(dv_stream_bytes):
    header, body = dv_stream_bytes
    cut = header + body[: len(body) - 100]
    source = E.dv_network_source("127.0.0.1", _serve(cut))
    delivered = list(source)
    assert len(delivered) == 6 and source.stats.packets_lost == 1 and source.stats.bytes_lost > 0


def test_dv_silent_peer_and_budgets(dv_stream_bytes):
    header, body = dv_stream_bytes
    with pytest.raises(E.EventFileError, match="no data for 0.3 s"):
        list(E.dv_network_source("127.0.0.1", _serve(header + body[:50], linger_s=2), read_timeout_s=0.3))
    with pytest.raises(E.EventFileError, match="budget of 2000 bytes"):
        list(E.dv_network_source("127.0.0.1", _serve(header + body), max_bytes=2000))
    with pytest.raises(E.EventFileError, match="budget of 100 events"):
        list(E.dv_network_source("127.0.0.1", _serve(header + body), max_events=100))


def test_udp_budgets():
    import socket
    import threading

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = E.udp_source("127.0.0.1", port, (34, 34), idle_timeout_s=2.0, max_events=150)
    errors = []

    def read():
        try:
            list(source)
        except E.EventFileError as err:
            errors.append(err)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.1)
    E.send_udp(_events(400, (34, 34), 100_000), ("127.0.0.1", port), events_per_packet=100, datagrams_per_s=500)
    reader.join(10)
    assert errors and "budget of 150 events" in str(errors[0]) and source.stats.events <= 150
