"""Live sources on loopback / tmp_path only, each bounded in time, threads and sockets cleaned up."""
import io
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import neurodeploy.events as E
from neurodeploy.events import live, synthetic


@pytest.fixture(scope="module")
def rec():
    samples = synthetic.make_nmnist_like(3, seed=21)
    r, _ = synthetic.concatenate_samples(samples)
    ev = r.events.copy()
    ev["t"] += 17_000_000  # past the EVT3 24-bit wrap at 16.7 s
    return E.Recording(ev, (34, 34))


def _write_in_chunks(path, data: bytes, n_chunks: int, pause_s: float):
    with open(path, "wb") as f:
        for chunk in np.array_split(np.frombuffer(data, np.uint8), n_chunks):
            f.write(chunk.tobytes())
            f.flush()
            time.sleep(pause_s)


@pytest.mark.parametrize("fmt", ["evt3", "evt2", "aedat3", "aedat2", "dat", "csv", "nmnist_bin"])
def test_follow_file_written_in_chunks(tmp_path, rec, fmt):
    src_path = tmp_path / "whole"
    r = rec
    if fmt == "aedat2":  # the DVS128 layout is for 128x128
        r = E.Recording(rec.events, (128, 128))
    if fmt == "nmnist_bin":
        ev = rec.events.copy()
        ev["t"] -= 17_000_000
        r = E.Recording(ev, (34, 34))
    E.save(r, src_path, format=fmt)
    data = src_path.read_bytes()
    path = tmp_path / "growing"
    writer = threading.Thread(target=_write_in_chunks, args=(path, data, 23, 0.01))
    writer.start()
    try:
        source = live.follow_file(path, format=fmt, idle_timeout_s=0.5, poll_s=0.005)
        packets = list(source)
    finally:
        writer.join(10)
    assert source.sensor_size == r.sensor_size
    assert np.array_equal(np.concatenate(packets), r.events)
    assert source.stats.events == len(r) and source.stats.bytes_lost == 0
    if fmt == "evt3":
        assert source.stats.time_wraps >= 1


def test_follow_stream_that_stops_mid_record(tmp_path, rec):
    ev = rec.events.copy()
    ev["t"] -= 17_000_000
    E.save(E.Recording(ev, (34, 34)), tmp_path / "w.bin")
    data = (tmp_path / "w.bin").read_bytes()[:-2]
    (tmp_path / "cut.bin").write_bytes(data)
    source = live.follow_file(tmp_path / "cut.bin", idle_timeout_s=0.2)
    out = np.concatenate(list(source))
    assert len(out) == len(ev) - 1 and source.stats.bytes_lost == 3
    with pytest.raises(E.EventFileError, match="inside a record"):
        list(live.follow_file(tmp_path / "cut.bin", idle_timeout_s=0.2, truncated="error"))


def _free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = r"""
import os, sys, time
import numpy as np
import dv_processing as dv
from neurodeploy.events.convert import to_dv
events = np.load(sys.argv[1])
width, height = int(sys.argv[3]), int(sys.argv[4])
stream = dv.io.Stream.EventStream(0, "events", "neurodeploy-test", (width, height))
target = sys.argv[2]
writer = dv.io.NetworkWriter(target, stream) if not target.isdigit() else dv.io.NetworkWriter("127.0.0.1", int(target), stream)
print("listening", flush=True)
deadline = time.time() + 20
while writer.getClientCount() < 1 and time.time() < deadline:
    time.sleep(0.005)
for part in np.array_split(events, 7):
    writer.writeEvents(to_dv(part))
    time.sleep(0.02)
while writer.getQueuedPacketCount() > 0 and time.time() < deadline:
    time.sleep(0.005)
time.sleep(0.1)
# dv-processing 2.0.4's NetworkWriter destructor can deadlock on the GIL: close by exiting
os._exit(0)
"""


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_dv_network_stream_from_real_writer(tmp_path, rec, transport):
    np.save(tmp_path / "ev.npy", rec.events)
    target = str(_free_port()) if transport == "tcp" else str(tmp_path / "dv.sock")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "ev.npy"), target, "34", "34"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        source = None
        for _ in range(100):
            try:
                source = (live.dv_network_source("127.0.0.1", int(target)) if transport == "tcp"
                          else live.dv_network_source(socket_path=target))
                break
            except E.EventFileError:
                time.sleep(0.05)
        assert source is not None and source.sensor_size == (34, 34)
        packets = list(source)   # ends when the server closes
        assert np.array_equal(np.concatenate(packets), rec.events)
        assert source.stats.events == len(rec)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_udp_stream(rec):
    port = _free_port(socket.SOCK_DGRAM)
    source = live.udp_source("127.0.0.1", port, (34, 34), idle_timeout_s=2.0)
    got = []
    reader = threading.Thread(target=lambda: got.extend(source))
    reader.start()
    try:
        sent = live.send_udp(rec.events, ("127.0.0.1", port), events_per_packet=100, datagrams_per_s=2000)
    finally:
        reader.join(10)
        source.stop()
    assert not reader.is_alive()
    out = np.concatenate(got)
    # paced loopback UDP does not drop; a whole lost datagram shows only against the sender's count
    assert source.stats.packets == sent and source.stats.events == len(rec)
    assert np.array_equal(out, rec.events)


def test_udp_counts_partial_and_reordered(rec):
    port = _free_port(socket.SOCK_DGRAM)
    source = live.udp_source("127.0.0.1", port, (34, 34), idle_timeout_s=1.0)
    got = []
    reader = threading.Thread(target=lambda: got.extend(source))
    reader.start()
    raw = E.to_faery(rec.events[:30]).tobytes()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(raw[13 * 10:13 * 20] + b"\x01\x02", ("127.0.0.1", port))   # 10 events + 2 stray bytes
        s.sendto(raw[:13 * 10], ("127.0.0.1", port))                      # older: reordered
        s.sendto(raw[13 * 20:], ("127.0.0.1", port))
        s.sendto(b"", ("127.0.0.1", port))
    reader.join(10)
    assert np.array_equal(np.concatenate(got), np.concatenate([rec.events[10:20], rec.events[20:30]]))
    assert source.stats.bytes_lost == 2 and source.stats.packets_lost == 1


def test_csv_from_stdin_pipe(tmp_path, rec):
    E.save(rec, tmp_path / "e.csv")
    code = ("import sys; import numpy as np; from neurodeploy.events import live\n"
            "s = live.csv_stdin_source()\n"
            "n = sum(len(p) for p in s)\n"
            "print(n, s.sensor_size, s.stats.events)")
    out = subprocess.run([sys.executable, "-c", code], stdin=open(tmp_path / "e.csv", "rb"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == str(len(rec))


def test_csv_stream_object(rec):
    text = "# sensor_size: 34x34\nt,x,y,p\n" + "".join(f"{t},{x},{y},{p}\n" for x, y, t, p in rec.events[:50].tolist())
    source = live.csv_stdin_source(io.BytesIO(text.encode()), lines_per_packet=7)
    assert np.array_equal(np.concatenate(list(source)), rec.events[:50])
