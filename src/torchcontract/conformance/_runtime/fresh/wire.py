"""What passes between the parent and the fresh interpreter: the frames on the socket (an 8-byte
length, then a pickle of a tuple of plain values), and what a request comes to (:class:`Fetched`,
:class:`Raised`) or fails with (:class:`Unavailable`, :class:`HelperFailed`, :class:`TimedOut`).

Imported by both sides: the parent (:mod:`.client`) and the server in the fresh interpreter
(:mod:`.server`).
"""

from __future__ import annotations

import pickle
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Closed", "Fetched", "HelperFailed", "Raised", "TimedOut", "Unavailable", "recv", "send"]


class Unavailable(Exception):
    """The fresh interpreter cannot rebuild the object faithfully (a class in an unguarded main
    script, no ``os.fork``, no interpreter to start): a skip, saying why."""


class HelperFailed(Exception):
    """torchcontract's fresh interpreter failed: it did not start, exited, was stopped or killed, or
    stopped answering before the object's call began. Nothing is known about the object: an
    internal error of torchcontract (an ``error`` result), never the object's failure."""


class TimedOut(Exception):
    """The object's time budget ran out; ``waiting_for`` is the call in progress in the child."""

    def __init__(self, waiting_for: str) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for


@dataclass(frozen=True)
class Raised:
    """The object raised in the child: ``what`` raised ``type_name: message`` at ``where``."""

    what: str
    type_name: str
    message: str
    where: str


@dataclass
class Fetched:
    """What the child computed: the pickled items, whether ``iter(ds)`` ended, what raised."""

    items: list[bytes] = field(default_factory=list)
    ended: bool = False
    raised: Raised | None = None


def send(conn: socket.socket, frame: tuple[Any, ...]) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(struct.pack(">Q", len(data)) + data)


class Closed(Exception):
    """The other end closed the connection."""


def _recv_exact(conn: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            conn.settimeout(left)
        else:
            conn.settimeout(None)
        try:
            chunk = conn.recv(min(size, 1 << 20))
        except TimeoutError as error:
            raise TimeoutError from error
        if not chunk:
            raise Closed
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv(conn: socket.socket, deadline: float | None) -> tuple[Any, ...]:
    (size,) = struct.unpack(">Q", _recv_exact(conn, 8, deadline))
    frame: tuple[Any, ...] = pickle.loads(_recv_exact(conn, size, deadline))
    return frame
