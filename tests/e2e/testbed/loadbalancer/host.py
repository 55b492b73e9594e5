"""The host side of the load balancer: a link of its own holding its Service addresses, and the sweep.

Each load-balancer process creates one link, ``mlb<pid in hex>`` (a ``dummy``, or an empty bridge
where the kernel has no dummy driver), and adds every allocated address to it as a /32. A /32 adds
only a local route, so the host answers on it; the cluster namespaces reach it too, since the pool
lies inside the bridge's on-link /20 and the host answers ARP for any of its addresses. Deleting the
link removes every address at once, so exit needs one command. The link's alias records the owner's
PID and process start time: ``sweep_stale_lb`` removes links whose owner is gone (or whose PID was
reused), and never a live process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

LINK_PREFIX = "mlb"
_LINK_PATTERN = re.compile(rf"^{LINK_PREFIX}([0-9a-f]+)$")
_ALIAS_PREFIX = "mcgw-lb"
_LINK_KINDS = ("dummy", "bridge")


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


async def _ip_async(*args: str) -> None:
    process = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {stderr.decode(errors='replace').strip()}")


def link_name(pid: int) -> str:
    """``mlb`` + the PID in hex: at most 10 characters, under the kernel's 15."""
    return f"{LINK_PREFIX}{pid:x}"


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None if it is gone.

    Together with the PID it names one process for good: a PID reused later has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def parse_alias(alias: str) -> dict[str, str]:
    """``mcgw-lb pid=1 start=2 cluster=east`` -> ``{"pid": "1", ...}``; {} for an alias that is not ours."""
    words = alias.split()
    if not words or words[0] != _ALIAS_PREFIX:
        return {}
    return dict(word.split("=", 1) for word in words[1:] if "=" in word)


def owner_gone(name: str, alias: str) -> bool:
    """Whether the process that created link ``name`` has exited; False for names that are not ours."""
    match = _LINK_PATTERN.match(name)
    if match is None:
        return False
    pid = int(match.group(1), 16)
    started = process_start_time(pid)
    if started is None:
        return True
    recorded = parse_alias(alias).get("start")
    return recorded is not None and recorded != started


def sweep_stale_lb() -> list[str]:
    """Delete every load-balancer link (and so its addresses) whose owning process is gone; returns their names."""
    removed = []
    for link in json.loads(_ip("-json", "link", "show", check=False) or "[]"):
        name = str(link.get("ifname", ""))
        if owner_gone(name, str(link.get("ifalias", ""))):
            _ip("link", "delete", name, check=False)
            removed.append(name)
    return removed


class AddressLink:
    """This process's link: its addresses are exactly the Service addresses currently bound."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.addresses: set[str] = set()

    @classmethod
    def create(cls, cluster: str, bridge: str = "") -> AddressLink:
        pid = os.getpid()
        name = link_name(pid)
        # A link with our own name can only be left by an earlier process that had this PID.
        _ip("link", "delete", name, check=False)
        errors = []
        for kind in _LINK_KINDS:
            try:
                _ip("link", "add", name, "type", kind)
            except RuntimeError as error:
                errors.append(str(error))
                continue
            link = cls(name, kind)
            try:
                alias = f"{_ALIAS_PREFIX} pid={pid} start={process_start_time(pid)} cluster={cluster} bridge={bridge}"
                _ip("link", "set", "dev", name, "alias", alias)
                _ip("link", "set", "dev", name, "up")
            except BaseException:
                link.delete()
                raise
            return link
        raise RuntimeError("cannot create a link for the load balancer's addresses: " + "; ".join(errors))

    async def add(self, address: str) -> None:
        if address in self.addresses:
            return
        await _ip_async("addr", "add", f"{address}/32", "dev", self.name)
        self.addresses.add(address)

    async def remove(self, address: str) -> None:
        if address not in self.addresses:
            return
        self.addresses.discard(address)
        with contextlib.suppress(RuntimeError):  # already gone: the goal is reached
            await _ip_async("addr", "del", f"{address}/32", "dev", self.name)

    def delete(self) -> None:
        """Remove the link and with it every address; safe to call twice."""
        _ip("link", "delete", self.name, check=False)
        self.addresses.clear()


def bridge_networks(bridge: str) -> list[str]:
    """The IPv4 networks on ``bridge`` (e.g. ``198.18.0.1/20``), to check that the pool is on-link there."""
    if not bridge:
        return []
    answer = json.loads(_ip("-json", "addr", "show", "dev", bridge, check=False) or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in answer for a in link.get("addr_info", [])
            if a.get("family") == "inet"]
