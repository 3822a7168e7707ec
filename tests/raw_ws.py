"""A raw WebSocket client for fault injection: it reads only when told, sends any
bytes, and sets any header, where the websockets client would hide a fault (it
reads for you, answers closes, sets one Authorization header).

Used by tests/test_server_faults.py and benchmarks/bench_reliability.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct

import numpy as np


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 5.2)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 2**16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, mask)
    return head + mask + body


def _mask(payload: bytes, mask: bytes) -> bytes:
    data = np.frombuffer(payload, dtype=np.uint8)
    key = np.resize(np.frombuffer(mask, dtype=np.uint8), data.size)
    return (data ^ key).tobytes()


def text(message: str) -> bytes:
    return frame(0x1, message.encode())


def binary(data: bytes) -> bytes:
    return frame(0x2, data)


class Raw:
    """A TCP connection that speaks HTTP/WebSocket by hand and reads only when told."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> Raw:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small receive window: a client that stops reading blocks the server soon
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def upgrade(
        self, path: str, headers: tuple[tuple[str, str], ...] = (), host: str = "127.0.0.1"
    ) -> tuple[int, str]:
        """Send an upgrade request; returns (status, head and body as read)."""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *[f"{k}: {v}" for k, v in headers],
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode()
        status = int(head.split()[1])
        if status != 101:
            with contextlib.suppress(Exception):
                head += (await asyncio.wait_for(self.reader.read(4096), 5)).decode()
        return status, head

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    async def flood(self, message: bytes, *, backlog: int = 2**18) -> None:
        """Send ``message`` over and over, never reading, until the server stops
        reading us (our own send buffer backs up) or drops the connection."""
        transport = self.writer.transport
        while not transport.is_closing() and transport.get_write_buffer_size() < backlog:
            self.writer.write(message * 200)
            await asyncio.sleep(0.005)

    async def closed_by_server(self) -> bool:
        """Read (and drop) until the server ends the TCP connection."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        return True

    def abort(self) -> None:
        self.writer.transport.abort()


async def read_frames(raw: Raw) -> list[tuple[int, bytes]]:
    """Server frames (opcode, payload) up to and including its close frame."""
    frames = []
    while True:
        b1, b2 = await raw.reader.readexactly(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await raw.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await raw.reader.readexactly(8))[0]
        frames.append((b1 & 0x0F, await raw.reader.readexactly(n)))
        if frames[-1][0] == 0x8:
            return frames
