"""When each request reached a local server, stamped by the kernel as it crossed the loopback interface.

A server's own stamps (the sandbox's `received_at`) say when its process got to a request. On a machine
where the senders and the "provider" share two cores, the server is sometimes taken off the CPU for a
tenth of a second; the requests that arrive meanwhile are then read, stamped and answered together, a
burst the senders never made. A provider's servers do not share the senders' cores: what their rate
limits see is when each request arrived. `WireTap` records that: a packet socket on `lo` (Linux, root),
each segment that opens an HTTP request to the server's port stamped by the kernel (SO_TIMESTAMPNS) when it
was handed to the interface, whenever this process gets to read it.

Used by benchmarks/scale_out.py's pacing part, beside the sandbox's own stamps.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_HOST = 0  # on `lo` each packet is seen twice: going out (PACKET_OUTGOING) and coming in
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>; the socket module does not name it
SO_RCVBUFFORCE = 33  # a buffer over rmem_max (root): a stalled reader loses no segment
BUFFER = 64 << 20
HEAD = 256  # bytes of each segment read: the IP and TCP headers and the request line


class WireTap:
    """Kernel stamps (seconds since the epoch) of each request to `port` on the loopback interface whose
    request line starts with `method` and contains `path`, in a thread of this process, until `stop`."""

    def __init__(self, port: int, path: bytes = b"", method: bytes = b"POST ") -> None:
        if not hasattr(socket, "AF_PACKET") or os.geteuid() != 0:
            raise PermissionError("the wire's stamps need Linux and root (a packet socket on lo)")
        self.port, self.prefix, self.path = port, method, path
        self.stamps: list[float] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._sock.bind(("lo", 0))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BUFFER)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, name="wire-tap", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[list[float], int]:
        """The stamps, sorted, and how many segments the kernel dropped (the buffer full: then the stamps
        are incomplete)."""
        self._stopped.set()
        self._thread.join()
        _packets, drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self._sock.close()
        return sorted(self.stamps), drops

    def _read(self) -> None:
        space = socket.CMSG_SPACE(16)
        while not self._stopped.is_set():
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(HEAD, space)
            except TimeoutError:
                continue
            if address[2] != PACKET_HOST or not ancillary:
                continue
            stamp = self._request(data)
            if stamp:
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = struct.unpack("qq", value[:16])
                        self.stamps.append(seconds + nanoseconds / 1e9)

    def _request(self, packet: bytes) -> bool:
        """Whether an IPv4 packet is a TCP segment to the port that opens a request we count."""
        if len(packet) < 20 or packet[9] != socket.IPPROTO_TCP:
            return False
        tcp = packet[(packet[0] & 0x0F) * 4 :]
        if len(tcp) < 20 or struct.unpack("!H", tcp[2:4])[0] != self.port:
            return False
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if not payload.startswith(self.prefix):
            return False
        line = payload.split(b"\r\n", 1)[0]
        return self.path in line
