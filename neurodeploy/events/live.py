"""Live and growing event sources. Each is an iterator of EVENT_DTYPE packets with .sensor_size and
.stats (events received, packets, bytes or packets lost), ends cleanly when the peer closes (or
after idle_timeout_s of silence where a protocol has no close), and can be stopped from another
thread with .stop()."""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np

from .convert import FAERY_DTYPE, from_faery
from .detect import detect_from_bytes
from .dv_network import MAX_PACKET_BYTES, DvStreamReader
from .errors import DecodeStats, EventFileError
from .policy import PacketChecker, ReadPolicy
from .readers import incremental_decoder


class _Source:
    def __init__(self):
        self.stats = DecodeStats()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.close()
        return False

    def close(self) -> None:
        pass


class FollowFile(_Source):
    """Follow a file that is still being written (tail -f), decoding as bytes arrive with the
    format's incremental decoder, which keeps its state (EVT3's y / time / vector base) between
    reads. Ends after idle_timeout_s without growth, or on stop(). A partial record left at the end
    is counted in stats.bytes_lost (truncated='count') or raises (truncated='error')."""

    def __init__(self, path, sensor_size: tuple[int, int] | None = None, *, format: str | None = None,
                 poll_s: float = 0.02, idle_timeout_s: float = 2.0, chunk_bytes: int = 1 << 20,
                 out_of_bounds: str = "error", non_monotonic: str = "error", truncated: str = "count",
                 layout: str | None = None, wait_for_file_s: float = 5.0):
        super().__init__()
        self.path = os.fspath(path)
        self.poll_s = poll_s
        self.idle_timeout_s = idle_timeout_s
        self.chunk_bytes = chunk_bytes
        self.policy = ReadPolicy(out_of_bounds, non_monotonic, truncated)
        self._format = format
        self._layout = layout
        self._override = tuple(sensor_size) if sensor_size is not None else None
        deadline = time.monotonic() + wait_for_file_s
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise EventFileError(self.path, "the file did not appear", fix="start the writer first")
            time.sleep(poll_s)
        self._file = open(self.path, "rb")
        self._decoder = None
        self._pending: list[np.ndarray] = []
        self.sensor_size = None
        self._start()

    def _read_ready(self) -> bytes:
        """Wait for bytes; b'' means idle timeout or stop."""
        idle_since = time.monotonic()
        while not self._stop.is_set():
            data = self._file.read(self.chunk_bytes)
            if data:
                return data
            if time.monotonic() - idle_since > self.idle_timeout_s:
                return b""
            time.sleep(self.poll_s)
        return b""

    def _start(self):
        head = b""
        while self._decoder is None or not self._decoder.header_done:
            data = self._read_ready()
            if not data:
                if self._decoder is None:
                    if not head:
                        raise EventFileError(self.path, "no bytes arrived", offset=0, fix="start the writer first")
                    self._decoder = incremental_decoder(self._format or detect_from_bytes(head, self.path),
                                                        self.path, self._override, self.stats, self._layout)
                    self._pending.append(self._decoder.feed(head))
                self._pending.append(self._decoder.finish(self.policy.truncated))
                self._finished = True
                break
            if self._decoder is None:
                head += data
                if len(head) < 64 and self._format is None:
                    continue  # enough bytes to see the magic
                self._decoder = incremental_decoder(self._format or detect_from_bytes(head, self.path),
                                                    self.path, self._override, self.stats, self._layout)
                data, head = head, b""
            self._pending.append(self._decoder.feed(data))
        else:
            self._finished = False
        self.sensor_size = self._decoder.sensor_size
        if self.sensor_size is None:
            raise EventFileError(self.path, "the stream carries no sensor size", field="sensor_size",
                                 fix="pass --sensor-size WxH (sensor_size=(width, height) in Python)")
        self._check = PacketChecker(self.path, self.sensor_size, self.policy, self.stats)

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for packet in self._pending:
                packet = self._check(packet)
                if len(packet):
                    yield packet
            self._pending = []
            if self._finished:
                return
            while True:
                data = self._read_ready()
                if not data:
                    before = self.stats.truncated_bytes
                    packet = self._decoder.finish(self.policy.truncated)
                    self.stats.bytes_lost += self.stats.truncated_bytes - before
                    packet = self._check(packet)
                    if len(packet):
                        yield packet
                    return
                packet = self._check(self._decoder.feed(data))
                if len(packet):
                    yield packet
        finally:
            self.close()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class DvNetworkSource(_Source):
    """The DV network stream (AEDAT4 packets over TCP or a UNIX socket), as served by DV or by
    dv-processing's NetworkWriter, read and decoded by dv_network.DvStreamReader (dv-processing's
    own reader aborted, hung or dropped queued packets uncounted on misbehaving peers). Ends when
    the server closes the connection; a connection cut inside a packet counts it in packets_lost
    (and its bytes in bytes_lost). Bounded: a packet may claim at most max_packet_bytes, the peer
    may send at most max_bytes (None: no limit) and max_events events, and silence longer than
    read_timeout_s is an error."""

    def __init__(self, host: str | None = None, port: int | None = None, *, socket_path: str | None = None,
                 sensor_size: tuple[int, int] | None = None, out_of_bounds: str = "error",
                 non_monotonic: str = "error", read_timeout_s: float = 10.0,
                 max_packet_bytes: int = MAX_PACKET_BYTES, max_bytes: int | None = None,
                 max_events: int | None = None):
        super().__init__()
        self.name = socket_path if socket_path is not None else f"tcp://{host}:{port}"
        self.max_events = max_events
        try:
            if socket_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(read_timeout_s)
                sock.connect(socket_path)
            else:
                sock = socket.create_connection((host, int(port)), timeout=read_timeout_s)
        except (OSError, ValueError, TypeError) as exc:
            raise EventFileError(self.name, f"cannot connect to the DV stream: {exc}",
                                 fix="start the DV NetworkWriter / DV output module first") from exc
        self._socket = sock
        try:
            self._reader = DvStreamReader(sock, self.name, self.stats, read_timeout_s=read_timeout_s,
                                          max_packet_bytes=max_packet_bytes, max_bytes=max_bytes)
        except BaseException:
            sock.close()
            raise
        header = self._reader.resolution
        self.sensor_size = tuple(sensor_size) if sensor_size is not None else header
        if self.sensor_size is None:
            sock.close()
            raise EventFileError(self.name, "the stream declares no resolution", field="sensor_size",
                                 fix="pass --sensor-size WxH (sensor_size=(width, height) in Python)")
        self._check = PacketChecker(self.name, self.sensor_size, ReadPolicy(out_of_bounds, non_monotonic), self.stats)

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while not self._stop.is_set():
                packet = self._reader.next_packet()
                if packet is None:
                    return
                if self.max_events is not None and self.stats.events + len(packet) > self.max_events:
                    raise EventFileError(self.name, f"the peer sent more than the budget of {self.max_events} events",
                                         fix="raise max_events, or check the sender")
                packet = self._check(packet)
                if len(packet):
                    yield packet
        finally:
            self.close()

    def close(self) -> None:
        self._socket.close()


class UdpSource(_Source):
    """UDP datagrams in faery's t64_x16_y16_on8 layout (13-byte little-endian events: u64 t, u16 x,
    u16 y, u8 on), as faery's UDP encoder sends them. The layout has no sequence numbers, so loss
    shows only as: a datagram that is not a whole number of events (the tail is counted in
    bytes_lost) and a datagram whose first timestamp is older than the last delivered one
    (reordered or duplicated: dropped and counted in packets_lost). A datagram lost whole leaves no
    trace in this layout: compare stats.events with the sender's count. UDP has no close: the stream
    ends on an empty datagram (what send_udp() sends last), after idle_timeout_s, or on stop()."""

    def __init__(self, host: str, port: int, sensor_size: tuple[int, int], *, idle_timeout_s: float = 2.0,
                 out_of_bounds: str = "error", max_bytes: int | None = None, max_events: int | None = None):
        super().__init__()
        self.max_bytes, self.max_events = max_bytes, max_events  # budgets of the stream (None: none)
        self.sensor_size = tuple(sensor_size)
        self.idle_timeout_s = idle_timeout_s
        self.name = f"udp://{host}:{port}"
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        # a large receive buffer: datagrams that overflow it are lost without a trace in this layout
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._socket.bind((host, port))
        self._socket.settimeout(0.05)
        self.address = self._socket.getsockname()
        self._check = PacketChecker(self.name, self.sensor_size, ReadPolicy(out_of_bounds, "keep"), self.stats)
        self._last_t = -1

    def __iter__(self) -> Iterator[np.ndarray]:
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    data = self._socket.recv(65536)
                except socket.timeout:
                    if time.monotonic() - idle_since > self.idle_timeout_s:
                        return
                    continue
                idle_since = time.monotonic()
                self.stats.bytes_read += len(data)
                if not data:
                    return
                if self.max_bytes is not None and self.stats.bytes_read > self.max_bytes:
                    raise EventFileError(self.name, f"more than the budget of {self.max_bytes} bytes arrived",
                                         fix="raise max_bytes, or check the senders")
                if self.max_events is not None and \
                        self.stats.events + len(data) // FAERY_DTYPE.itemsize > self.max_events:
                    raise EventFileError(self.name, f"more than the budget of {self.max_events} events arrived",
                                         fix="raise max_events, or check the senders")
                whole = len(data) // FAERY_DTYPE.itemsize * FAERY_DTYPE.itemsize
                self.stats.bytes_lost += len(data) - whole
                raw = np.frombuffer(data, FAERY_DTYPE, count=whole // FAERY_DTYPE.itemsize)
                if len(raw) == 0:
                    continue
                if int(raw["t"][0]) < self._last_t or np.any(raw["t"][1:] < raw["t"][:-1]):
                    self.stats.packets_lost += 1
                    continue
                self._last_t = int(raw["t"][-1])
                packet = self._check(from_faery(raw))
                if len(packet):
                    yield packet
        finally:
            self.close()

    def close(self):
        self._socket.close()


def send_udp(events: np.ndarray, address: tuple[str, int], events_per_packet: int = 100,
             datagrams_per_s: float | None = None) -> int:
    """Send events as faery's UDP encoder does (t64_x16_y16_on8), then an empty end-of-stream
    datagram; datagrams_per_s paces the sender. Returns the number of datagrams with events."""
    from .convert import to_faery

    raw = to_faery(events)
    sent = 0
    with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(0, len(raw), events_per_packet):
            s.sendto(raw[i:i + events_per_packet].tobytes(), address)
            sent += 1
            if datagrams_per_s:
                time.sleep(1.0 / datagrams_per_s)
        s.sendto(b"", address)
    return sent


class CsvStreamSource(_Source):
    """CSV events from a text or binary stream (stdin by default), line by line as they come;
    ends at end of input. The sensor size from a '# sensor_size: WxH' comment or the argument."""

    def __init__(self, stream=None, sensor_size: tuple[int, int] | None = None, *, out_of_bounds: str = "error",
                 non_monotonic: str = "error", truncated: str = "count", lines_per_packet: int = 1024):
        super().__init__()
        stream = stream if stream is not None else sys.stdin
        self._stream = getattr(stream, "buffer", stream)
        self.name = getattr(stream, "name", "<stdin>")
        self.lines_per_packet = lines_per_packet
        self.policy = ReadPolicy(out_of_bounds, non_monotonic, truncated)
        self._decoder = incremental_decoder("csv", str(self.name), sensor_size, self.stats)
        self._pending = []
        while not self._decoder.header_done:
            line = self._stream.readline()
            if isinstance(line, str):
                line = line.encode()
            if not line:
                self._pending.append(self._decoder.finish(truncated))
                break
            self._pending.append(self._decoder.feed(line))
        self.sensor_size = self._decoder.sensor_size
        if self.sensor_size is None:
            raise EventFileError(str(self.name), "no '# sensor_size: WxH' comment before the data",
                                 field="sensor_size",
                                 fix="pass --sensor-size WxH (sensor_size=(width, height) in Python)")
        self._check = PacketChecker(str(self.name), self.sensor_size, self.policy, self.stats)

    def __iter__(self) -> Iterator[np.ndarray]:
        for packet in self._pending:
            packet = self._check(packet)
            if len(packet):
                yield packet
        self._pending = []
        if self._decoder.header_done and not self._decoder._buffer and self._stream is None:
            return
        lines = []
        while not self._stop.is_set():
            line = self._stream.readline()
            if isinstance(line, str):
                line = line.encode()
            if line:
                lines.append(line)
            if lines and (not line or len(lines) >= self.lines_per_packet):
                packet = self._check(self._decoder.feed(b"".join(lines)))
                lines = []
                if len(packet):
                    yield packet
            if not line:
                before = self.stats.truncated_bytes
                packet = self._check(self._decoder.finish(self.policy.truncated))
                self.stats.bytes_lost += self.stats.truncated_bytes - before
                if len(packet):
                    yield packet
                return


def follow_file(path, sensor_size=None, **kwargs) -> FollowFile:
    return FollowFile(path, sensor_size, **kwargs)


def dv_network_source(host: str | None = None, port: int | None = None, **kwargs) -> DvNetworkSource:
    return DvNetworkSource(host, port, **kwargs)


def udp_source(host: str, port: int, sensor_size: tuple[int, int], **kwargs) -> UdpSource:
    return UdpSource(host, port, sensor_size, **kwargs)


def csv_stdin_source(stream=None, sensor_size=None, **kwargs) -> CsvStreamSource:
    return CsvStreamSource(stream, sensor_size, **kwargs)
