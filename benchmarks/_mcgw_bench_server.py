"""mcgw's xDS server behind the benchmark protocol that the go-control-plane peer speaks too.

stdin:  ``load <file>`` (records: 4-byte big-endian length + serialised ``google.protobuf.Any``)
stdout: ``ready <port>``, ``published <unix-ns>``, ``loaded``, and per stream event
        ``push <stream> <type> <bytes> <unix-ns>``, ``ack <stream> <type> <unix-ns>``, ``nack ...``
Every Envoy is in one node group, as with the peer. With ``--lrs`` it also serves load reporting, asks
every Envoy for all its clusters (or those of ``--lrs-clusters``) each second, and answers ``reports``
with ``reports <count> <clusters>`` (the reports received so far, and the cluster entries in them).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from pathlib import Path

from google.protobuf import any_pb2, symbol_database
from google.protobuf.message import Message

import xdsserver.loader  # noqa: F401 - registers the Envoy message types
from xdsserver import LoadReport, LoadReporting, NodeStatus, Snapshot, SnapshotCache, XdsServer
from xdsserver.metrics import short_type

GROUP = ("bench", "bench/gw")


def read_records(path: Path) -> list[Message]:
    data = path.read_bytes()
    messages, offset = [], 0
    pool = symbol_database.Default()
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        packed = any_pb2.Any.FromString(data[offset + 4: offset + 4 + size])
        offset += 4 + size
        message = pool.GetSymbol(packed.type_url.rsplit("/", 1)[-1])()
        packed.Unpack(message)
        messages.append(message)
    return messages


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def observe(event: str, node: NodeStatus, type_url: str, size: int) -> None:
    now = time.time_ns()
    if event == "push":
        emit(f"push {node.node_id} {short_type(type_url)} {size} {now}")
    else:
        emit(f"{event} {node.node_id} {short_type(type_url)} {now}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--lrs", action="store_true", help="serve load reporting (every cluster, every second)")
    parser.add_argument("--lrs-clusters", default="", help="comma-separated: ask for these clusters only")
    args = parser.parse_args()
    cache = SnapshotCache()
    received = [0, 0]

    def count(report: LoadReport) -> None:
        received[0] += 1
        received[1] += len(report.clusters) + len(report.idle)

    named = tuple(filter(None, args.lrs_clusters.split(",")))
    asked = (lambda group: named) if named else None
    server = XdsServer(cache, node_group=lambda node: GROUP, observer=observe,
                       load_reporting=LoadReporting(count, asked, 1.0) if args.lrs else None)
    port = await server.start(args.listen)
    emit(f"ready {port}")
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, _, argument = line.strip().partition(" ")
        if command == "reports":
            emit(f"reports {received[0]} {received[1]}")
            continue
        if command != "load":
            emit(f"error unknown command {command!r}")
            continue
        messages = read_records(Path(argument))
        emit(f"published {time.time_ns()}")
        cache.set_snapshot(GROUP, Snapshot.from_messages(messages, previous=cache.get(GROUP)))
        emit("loaded")
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
