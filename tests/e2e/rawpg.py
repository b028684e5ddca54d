# SPDX-License-Identifier: GPL-2.0-only
"""
PostgreSQL spoken by hand, for tests that need sends no driver makes:
garbage, cut messages, giant statements, pipelines written in pieces.
"""
import select
import socket
import struct


def message(typ, body):
    """A protocol message: type byte (b"" for the startup), length, body."""
    return typ + struct.pack("!I", len(body) + 4) + body


def query(sql):
    """A simple-protocol Query of sql (bytes)."""
    return message(b"Q", sql + b"\0")


def startup_msg(user="postgres", db="postgres", app="rawclient"):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", db), ("application_name", app)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    return message(b"", body + b"\0")


def replies(s, n=1, timeout=None):
    """
    The server's messages, (type, body) each, up to and with its n-th
    ReadyForQuery from now (what follows in the last read is dropped).
    """
    if timeout:
        s.settimeout(timeout)
    buf, out, ready = b"", [], 0
    while ready < n:
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                # tcp_bpf's receive path can answer EAGAIN on a blocking socket
                # (seen under heavy load); clients that poll, as libpq does, never see it
                select.select([s], [], [], 1.0)
                continue
            assert chunk, f"server closed the connection after {[t for t, _ in out]}"
            buf += chunk
        size = 1 + struct.unpack("!I", buf[1:5])[0]
        out.append((chr(buf[0]), buf[5:size]))
        ready += buf[0:1] == b"Z"
        buf = buf[size:]
    return out


def read_until_ready(s):
    """Read server messages until ReadyForQuery; returns the message types."""
    return [t for t, _ in replies(s)]


def send_all(s, data):
    """
    sendall that survives EAGAIN: a socket in a sockmap sends through
    tcp_bpf, which can return EAGAIN even on a blocking socket when its
    memory is short (seen once streaming 100 MB here). libpq waits for
    writability and retries; so does this.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[s.send(view):]
        except BlockingIOError:
            select.select([], [s], [], 1.0)


def raw_session(port, sndbuf=None):
    """A connection ready for queries; sndbuf: its SO_SNDBUF, to make sends end short."""
    s = socket.socket()
    if sndbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(startup_msg())
    read_until_ready(s)
    return s
