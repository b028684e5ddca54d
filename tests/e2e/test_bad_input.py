# SPDX-License-Identifier: GPL-2.0-only
"""
Bad input on a watched port: garbage, cut messages, giant statements, many
idle connections. Bounded memory, a counted alert, no crash, and the other
connections unaffected.
"""
import os
import socket
import struct
import time

import events
from rawpg import message, query, raw_session, read_until_ready, send_all


def vm_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def test_garbage_client_is_marked_unparsed_others_unaffected(pg, agent):
    a = agent()
    s = socket.create_connection(("127.0.0.1", pg.port))
    s.sendall(b"hello lit_garbage\r\nGET / HTTP/1.1\r\n\r\n" + os.urandom(4096))
    try:
        s.recv(4096)  # the server answers with an error or just closes
    except ConnectionResetError:
        pass
    s.close()
    res, pid = pg.psql("-c", "SELECT 'lit_after_garbage'")
    evs = a.wait_for(lambda evs: evs.statements(pid=pid) and evs.of("alert"))
    evs = a.stop()
    assert a.rc == 0
    alerts = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_unparsed"]
    assert len(alerts) == 1
    assert alerts[0]["actor"]["pid"] == os.getpid()
    assert alerts[0]["alert"]["detail"]
    assert evs.statements(pid=os.getpid()) == []
    assert len(evs.statements(pid=pid)) == 1
    assert "unparsed 1" in a.stderr()
    events.assert_no_literals(evs, ["lit_garbage", "lit_after_garbage", "HTTP/1.1"])


def test_client_disconnects_mid_message(pg, agent):
    a = agent()
    s = raw_session(pg.port)
    q = b"SELECT 'lit_half_message' FROM generate_series(1, 10)\0"
    msg = message(b"Q", q)
    s.sendall(msg[:20])  # the header and a piece of the text, then gone
    time.sleep(0.1)
    s.close()
    res, pid = pg.psql("-c", "SELECT 2")
    evs = a.wait_for(lambda evs: any(e["type"] == "connection_close" and
                                     e["actor"]["pid"] == os.getpid() for e in evs))
    evs = a.stop()
    mine = [e for e in evs if e.get("actor", {}).get("pid") == os.getpid()]
    kinds = [e["type"] for e in mine]
    assert kinds[0] == "connection_open" and kinds[-1] == "connection_close"
    # the server never got the statement, so there is none to report
    assert "statement" not in kinds
    assert mine[0]["connection"]["application_name"] is None  # not yet known at open
    assert mine[-1]["connection"]["application_name"] == "rawclient"
    assert mine[-1]["stats"]["bytes_to_server"] >= 20
    assert len(evs.statements(pid=pid)) == 1
    events.assert_no_literals(evs, ["lit_half_message"])


def test_hundred_megabyte_statement_bounded_memory(pg, agent):
    a = agent()
    rss0 = vm_kib(a.proc.pid, "VmRSS")
    s = raw_session(pg.port)
    size = 100 << 20
    head = b"SELECT 1 /* lit_huge_head "
    tail = b" lit_huge_tail */"
    pad = size - len(head) - len(tail)
    total = len(head) + pad + len(tail) + 1
    send_all(s, b"Q" + struct.pack("!I", total + 4) + head)
    block = b"x" * (1 << 20)
    left = pad
    while left:
        n = min(left, len(block))
        send_all(s, block[:n])
        left -= n
    send_all(s, tail + b"\0")
    types = read_until_ready(s)
    assert "C" in types and "E" not in types
    send_all(s, query(b"SELECT 3"))
    read_until_ready(s)
    send_all(s, b"X\0\0\0\4")
    s.close()
    evs = a.wait_for(lambda evs: len(evs.statements(pid=os.getpid())) >= 2)
    hwm = vm_kib(a.proc.pid, "VmHWM")
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    assert len(st) == 2
    big = st[0]
    assert big["statement"]["truncated"] is True
    assert big["statement"]["verb"] == "SELECT"
    assert big["statement"]["bytes"] == total - 1  # the text, not its NUL
    assert big["outcome"]["status"] == "ok" and big["outcome"]["tag"] == "SELECT 1"
    assert st[1]["statement"]["truncated"] is False
    assert st[1]["outcome"]["tag"] == "SELECT 1"
    # the agent holds at most one capped message per direction, not 100 MB
    assert hwm - rss0 < 32 * 1024, (rss0, hwm)
    events.assert_no_literals(evs, ["lit_huge_head", "lit_huge_tail"])


def test_thousand_idle_connections(pg, agent):
    a = agent()
    rss0 = vm_kib(a.proc.pid, "VmRSS")
    socks = []
    try:
        for _ in range(1000):
            socks.append(raw_session(pg.port))
        evs = a.wait_for(lambda evs: len(evs.of("connection_open")) >= 1000, timeout=30)
        rss1 = vm_kib(a.proc.pid, "VmRSS")
        res, pid = pg.psql("-c", "SELECT 'lit_among_idle'")
    finally:
        for s in socks:
            s.close()
    evs = a.wait_for(lambda evs: len(evs.of("connection_close")) >= 1001, timeout=30)
    evs = a.stop()
    assert len(evs.of("connection_open")) == 1001
    assert len(evs.statements(pid=pid)) == 1
    apps = {e["connection"]["application_name"] for e in evs.of("connection_close")}
    assert apps == {"rawclient", "psql"}
    # a few KiB per idle connection at most (ASan's shadow and quarantine make RSS moot)
    if not os.environ.get("DBW_SANITIZED"):
        assert rss1 - rss0 < 16 * 1024, (rss0, rss1)
    events.assert_no_loss(evs, a)


def test_connection_table_full_evicts_with_an_alert(pg, agent):
    a = agent("--max-conns", "16")
    socks = []
    try:
        for _ in range(40):
            socks.append(raw_session(pg.port))
        evs = a.wait_for(lambda evs: len(evs.of("connection_open")) >= 40)
    finally:
        for s in socks:
            s.close()
    evs = a.stop()
    evicted = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_evicted"]
    assert len(evicted) == 40 - 16
    assert "evicted 24" in a.stderr()
