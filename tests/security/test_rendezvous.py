"""The process groups that torchcontract starts itself (``check_distributed`` outside torchrun) can be
reached from no other host and joined by no other local user: the ranks meet through a file in a
private directory (no TCP store), gloo's own connections between ranks listen on the loopback
interface only, and what the ranks exchange over them is never unpickled.

Rank 0's loader factory looks at its own process from inside the running group: the sockets it
listens on, and whether another user (``nobody``, through ``setpriv``) can open the group's store."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'torchcontract[torch]')")

PROBE = '''
import json, os, subprocess, sys
from datetime import timedelta

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

INTRUDER = """
import sys
from datetime import timedelta
import torch.distributed as dist
kind, where = sys.argv[1], sys.argv[2:]
try:
    if kind == "TCPStore":
        store = dist.TCPStore(where[0], int(where[1]), is_master=False, timeout=timedelta(seconds=5))
    else:
        store = dist.FileStore(where[0], 2)
    keys = store.num_keys()
    store.set("intruder", "was here")
except Exception as error:
    print("REFUSED", type(error).__name__, error)
else:
    print("INTRUDED", keys)
"""


def _listening():
    """The (address, port) of every TCP socket this process listens on (Linux's /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].split(":")
                found.append([address, int(port, 16)])
    return found


def _probe():
    store = dist.distributed_c10d._get_default_store()
    while hasattr(store, "underlying_store"):
        store = store.underlying_store
    kind = type(store).__name__
    where = [store.host, str(store.port)] if kind == "TCPStore" else [getattr(store, "path", "")]
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    intruder = subprocess.run(
        [*as_nobody, sys.executable, "-c", INTRUDER, kind, *where],
        capture_output=True, text=True, timeout=60, check=False,
    )
    said = (intruder.stdout + intruder.stderr).strip()
    report = {"store": kind, "listening": _listening(), "intruder": said}
    with open(os.environ["TORCHCONTRACT_PROBE_OUT"], "w") as out:
        json.dump(report, out)


def probed_loader(rank, world_size):
    if rank == 0 and dist.is_initialized():  # not factory(0, 1), called for the whole dataset
        _probe()
    data = list(range(8))
    return DataLoader(data, batch_size=2, sampler=DistributedSampler(data, world_size, rank, shuffle=False))
'''

SCRIPT = """
from probe import probed_loader
from torchcontract.conformance import check_distributed

report = check_distributed(probed_loader, world_size=2)
print("PASSED" if report.passed else report)
"""

# Addresses in /proc/net/tcp{,6}: little-endian hex words. Loopback: 127.0.0.0/8 and ::1.
_LOOPBACK_V4_PREFIX = "7F"
_LOOPBACK_V6 = "00000000000000000000000001000000"


def _is_loopback(address: str) -> bool:
    if len(address) == 8:
        return address.endswith(_LOOPBACK_V4_PREFIX)
    mapped_v4 = address.startswith("0000000000000000FFFF0000") and address.endswith(_LOOPBACK_V4_PREFIX)
    return address == _LOOPBACK_V6 or mapped_v4


def _ipv4_address(interface: str) -> str | None:
    """The IPv4 address of ``interface`` (Linux's SIOCGIFADDR), or None."""
    import fcntl
    import struct

    request = struct.pack("256s", interface.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def _other_interface() -> str | None:
    """A network interface with an IPv4 address other than loopback, if this host has one."""
    for _, name in socket.if_nameindex():
        address = _ipv4_address(name)
        if address is not None and not address.startswith("127."):
            return name
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the sockets from Linux's /proc")
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="acting as another user needs root and setpriv (util-linux)",
)
def test_a_self_started_group_is_reachable_from_no_other_host_and_no_other_user(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
    (tmp_path / "script.py").write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "probe.json"
    env = {**os.environ, "TORCHCONTRACT_PROBE_OUT": str(out)}
    other = _other_interface()
    if other is not None:
        # A user's setting for their own multi-host jobs: a group of one host's ranks still stays on loopback.
        env["GLOO_SOCKET_IFNAME"] = other
    done = subprocess.run(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "PASSED" in done.stdout, done.stdout + done.stderr
    seen: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert seen["intruder"].startswith("REFUSED"), seen
    assert seen["listening"], seen  # gloo's connections between ranks
    exposed = [entry for entry in seen["listening"] if not _is_loopback(entry[0])]
    assert not exposed, seen
