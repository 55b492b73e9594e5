"""What the test bed runs for the coredns image: a DNS responder over UDP that answers every A query with
the asking client's own address (as CoreDNS's ``whoami`` does), and every other query with no answer.

Standalone (the pod runner starts it as a script, in the pod's network namespace). It takes CoreDNS's
``-conf FILE`` and ignores it: the conformance suite's UDPRoute tests only need a well-formed answer.
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import sys

_HEADER = struct.Struct("!HHHHHH")
TYPE_A = 1
CLASS_IN = 1


def _question_end(message: bytes) -> int | None:
    """Where the first question (name, type, class) ends, or None if the message is malformed."""
    offset = _HEADER.size
    while offset < len(message):
        length = message[offset]
        if length == 0:
            end = offset + 1 + 4
            return end if end <= len(message) else None
        if length & 0xC0:  # no compression pointers in a question we answer
            return None
        offset += 1 + length
    return None


def answer(query: bytes, client: str) -> bytes | None:
    """The response to one query datagram, or None to drop it (too short, not a query, no question)."""
    if len(query) < _HEADER.size:
        return None
    ident, flags, questions, _, _, _ = _HEADER.unpack_from(query)
    if flags & 0x8000 or questions < 1:
        return None
    end = _question_end(query)
    if end is None:
        return None
    qtype, qclass = struct.unpack_from("!HH", query, end - 4)
    records = b""
    if qtype == TYPE_A and qclass == CLASS_IN:
        address = socket.inet_aton(client)
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 0, len(address)) + address
    response_flags = 0x8000 | 0x0400 | (flags & 0x0100)  # response, authoritative, recursion desired as asked
    header = _HEADER.pack(ident, response_flags, 1, 1 if records else 0, 0, 0)
    return header + query[_HEADER.size:end] + records


def serve(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        query, (host, client_port) = sock.recvfrom(4096)
        response = answer(query, host)
        if response is not None:
            sock.sendto(response, (host, client_port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-conf", default="", help="CoreDNS's Corefile (ignored)")
    parser.add_argument("-dns.port", dest="port", type=int, default=53)
    port = parser.parse_args().port
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a pod's deletion is a clean stop
    serve(port)


if __name__ == "__main__":
    main()
