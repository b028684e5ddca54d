# SPDX-License-Identifier: GPL-2.0-only
"""
Redis capture with real clients (redis-cli, python3-redis: RESP2 and RESP3,
pipelines, MULTI/EXEC, inline commands): one event per command, verb =
command name, objects = keys, no value in any event.
"""
import os
import socket
import time

import pytest
import redis

import events
from conftest import Redis, agents, serve


@pytest.fixture(scope="module")
def rd():
    yield from serve(Redis())


@pytest.fixture
def agent(tmp_path, rd):
    yield from agents(tmp_path, rd.port, proto="redis")


def test_redis_cli_commands_one_event_each(rd, agent):
    a = agent()
    _, pid = rd.cli("SET", "user:1", "lit_redis_alice@example.com")
    _, pid2 = rd.cli("GET", "user:1")
    _, pid3 = rd.cli("DEL", "user:1", "user:2")
    evs = a.stop()
    assert a.rc == 0
    st = [e for e in evs.statements(pid=pid) if e["statement"]["verb"] == "SET"]
    assert len(st) == 1
    e = st[0]
    assert e["statement"]["text"] == "SET user:1 ?"
    assert e["statement"]["objects"] == ["user:1"]
    assert e["outcome"]["status"] == "ok" and e["outcome"]["tag"] == "OK"
    assert e["connection"]["protocol"] == "redis"
    assert e["connection"]["server"] == f"127.0.0.1:{rd.port}"
    assert e["actor"]["pid"] == pid and e["actor"]["comm"] == "redis-cli"
    assert len(e["statement"]["fingerprint"]) == 16
    g = [e for e in evs.statements(pid=pid2) if e["statement"]["verb"] == "GET"]
    assert len(g) == 1 and g[0]["statement"]["text"] == "GET user:1"
    assert g[0]["outcome"]["tag"] == "bulk"
    d = [e for e in evs.statements(pid=pid3) if e["statement"]["verb"] == "DEL"]
    assert d[0]["statement"]["objects"] == ["user:1", "user:2"]
    assert d[0]["outcome"]["tag"] == "integer"
    events.assert_no_literals(evs, ["lit_redis_alice", "example.com"])
    events.assert_no_loss(evs, a)


def test_python_redis_pipeline_and_transaction(rd, agent):
    a = agent()
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.set(f"pl:{i}", f"lit_pipe_{i:03d}_zz")
    p.get("pl:7")
    p.incr("counter:1")
    p.lpush("list:1", "lit_list_value_q")
    p.hset("h:1", mapping={"f1": "lit_hash_value_w"})
    p.execute()
    t = r.pipeline(transaction=True)
    t.set("tx:1", "lit_tx_value_1")
    t.incr("tx:1")  # a WRONGTYPE-style error inside EXEC: not an integer
    t.get("tx:1")
    t.execute(raise_on_error=False)
    try:
        r.execute_command("NOSUCHCOMMAND", "lit_unknown_arg")
    except redis.ResponseError:
        pass
    pid = os.getpid()
    r.close()
    evs = a.stop()
    st = evs.statements(pid=pid)
    verbs = [e["statement"]["verb"] for e in st]
    assert verbs.count("SET") == 51
    sets = [e for e in st if e["statement"]["verb"] == "SET"]
    assert all(e["statement"]["text"].startswith("SET ") for e in sets)
    assert sets[0]["statement"]["text"] == "SET pl:0 ?"
    # the same shape whatever the digits of the key
    assert len({e["statement"]["fingerprint"] for e in sets[:50]}) == 1
    assert "LPUSH" in verbs and "HSET" in verbs and "INCRBY" in verbs
    # MULTI/EXEC: the queued commands carry EXEC's outcome for each
    i = verbs.index("MULTI")
    assert verbs[i:i + 5] == ["MULTI", "SET", "INCRBY", "GET", "EXEC"]
    assert st[i + 1]["outcome"]["status"] == "ok"
    assert st[i + 2]["outcome"]["status"] == "error" and st[i + 2]["outcome"]["tag"] == "ERR"
    assert st[i + 3]["outcome"]["status"] == "ok"
    assert st[i + 4]["outcome"]["rows"] == 3
    unk = [e for e in st if e["statement"]["verb"] == "NOSUCHCOMMAND"]
    assert unk and unk[0]["outcome"]["status"] == "error"
    lits = [f"lit_pipe_{i:03d}_zz" for i in range(50)]
    events.assert_no_literals(evs, lits + ["lit_list_value_q", "lit_hash_value_w",
                                           "lit_tx_value_1", "lit_unknown_arg"])
    events.assert_no_loss(evs, a)


def test_resp3_hello_and_select(rd, agent):
    rd.cli("HSET", "h:3", "f1", "lit_resp3_hval")
    a = agent()
    _, pid = rd.cli("-3", "-n", "3", "SET", "r3:k", "lit_resp3_val")
    _, pid2 = rd.cli("-3", "HGETALL", "h:3")
    evs = a.stop()
    st = evs.statements(pid=pid)
    verbs = [e["statement"]["verb"] for e in st]
    assert "HELLO" in verbs and "SELECT" in verbs
    s = [e for e in st if e["statement"]["verb"] == "SET"][0]
    assert s["connection"]["database"] == "3"
    h = [e for e in evs.statements(pid=pid2) if e["statement"]["verb"] == "HGETALL"][0]
    assert h["outcome"]["tag"] == "map" and h["outcome"]["rows"] == 1
    events.assert_no_literals(evs, ["lit_resp3_val", "lit_resp3_hval"])


def test_inline_commands(rd, agent):
    a = agent()
    with socket.create_connection(("127.0.0.1", rd.port)) as s:
        s.sendall(b'SET inl:1 "lit inline value"\r\nGET inl:1\r\nPING\r\n')
        buf = b""
        while buf.count(b"\r\n") < 4:
            buf += s.recv(4096)
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    assert [e["statement"]["text"] for e in st] == ["SET inl:1 ?", "GET inl:1", "PING"]
    assert [e["outcome"]["status"] for e in st] == ["ok"] * 3
    events.assert_no_literals(evs, ["lit inline value"])


def test_large_value_streams_without_loss(rd, agent):
    a = agent()
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    big = b"lit_big_" + b"x" * (3 << 20)
    r.set("big:1", big)
    assert r.get("big:1") == big
    pid = os.getpid()
    r.close()
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert [e["statement"]["text"] for e in st if e["statement"]["verb"] in ("SET", "GET")] == \
        ["SET big:1 ?", "GET big:1"]
    events.assert_no_literals(evs, ["lit_big_"])


REDIS_POLICY = """\
version: 1
defaults: {action: allow, unparsed: block}
targets:
  - {name: cache, protocol: redis, address: "127.0.0.1:%d", labels: {env: test}}
rules:
  - name: no-flush
    match: {target: {env: test}, verb: [FLUSHALL, FLUSHDB]}
    action: block
    message: "flushing is not allowed"
  - name: no-config-set
    match: {verb: ["CONFIG SET", DEBUG, SHUTDOWN]}
    action: block
  - name: no-keys-star
    match: {verb: [KEYS], objects: ["*"]}
    action: block
  - name: no-sql-drop
    match: {verb: [DROP]}
    action: block
"""

BLOCKED = "blocked by dbwarden rule"


@pytest.fixture
def rpolicy(tmp_path, rd):
    path = tmp_path / "policy.yaml"
    path.write_text(REDIS_POLICY % rd.port)
    return str(path)


def test_guard_blocks_redis_cli_and_session_goes_on(rd, agent, rpolicy):
    rd.cli("SET", "keep:1", "v")
    a = agent("--policy", rpolicy)
    cases = [
        (["FLUSHALL"], "no-flush"),
        (["flushdb", "ASYNC"], "no-flush"),
        (["CONFIG", "SET", "maxmemory", "1"], "no-config-set"),
        (["config", "set", "save", ""], "no-config-set"),
        (["DEBUG", "SLEEP", "0"], "no-config-set"),
        (["KEYS", "*"], "no-keys-star"),
    ]
    for args, rule in cases:
        res, _ = rd.cli(*args, check=False)
        assert f"ERR {BLOCKED} {rule}" in res.stdout + res.stderr, (args, res)
    # one session: blocked commands answered in order, the rest run
    res, pid = rd.cli(input="SET s:1 a\nFLUSHALL\nGET s:1\nKEYS *\nKEYS s:*\nCONFIG GET maxmemory\n"
                            "PING\n")
    out = [l for l in res.stdout.splitlines() if l]  # redis-cli adds a blank line after errors
    assert out[0] == "OK"
    assert BLOCKED in out[1]
    assert out[2] == "a"
    assert BLOCKED in out[3]
    assert out[4] == "s:1"
    assert out[-1] == "PONG"
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    assert r.get("keep:1") == b"v"  # nothing was flushed
    assert r.config_get("maxmemory")["maxmemory"] == "0"
    # pipelined and inside MULTI: the blocked command fails alone
    p = r.pipeline(transaction=False)
    p.set("pp:1", "x")
    p.flushall()
    p.get("pp:1")
    got = p.execute(raise_on_error=False)
    assert got[0] is True and isinstance(got[1], redis.ResponseError) and got[2] == b"x"
    assert BLOCKED in str(got[1])
    t = r.pipeline(transaction=True)
    t.set("tx:2", "y")
    t.flushdb()
    t.get("tx:2")
    got = t.execute(raise_on_error=False)
    assert got[0] is True and isinstance(got[1], redis.ResponseError) and got[2] == b"y"
    assert r.dbsize() > 0
    r.close()
    evs = a.stop()
    st = evs.statements(pid=pid)
    fl = [e for e in st if e["statement"]["verb"] == "FLUSHALL"][0]
    assert fl["decision"]["action"] == "block" and fl["decision"]["rule"] == "no-flush"
    assert fl["decision"]["enforced_by"] == "kernel"
    assert fl["outcome"]["status"] == "error"
    ks = [e for e in st if e["statement"]["verb"] == "KEYS"]
    assert [e["decision"]["action"] for e in ks] == ["block", "allow"]
    assert not evs.of("alert"), evs.of("alert")


def test_guard_allows_lookalikes(rd, agent, rpolicy):
    a = agent("--policy", rpolicy)
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    r.set("FLUSHALL", "CONFIG SET")
    assert r.get("FLUSHALL") == b"CONFIG SET"
    r.set("k", "FLUSHALL")
    assert r.keys("k") == [b"k"]
    assert r.config_get("maxmemory")
    assert r.echo("KEYS *") == b"KEYS *"
    r.set("big:2", b"x" * (2 << 20))
    assert r.strlen("big:2") == 2 << 20
    r.delete("drop")
    r.close()
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    assert all(e["decision"]["action"] == "allow" for e in st), \
        [(e["statement"]["text"], e["decision"]) for e in st if e["decision"]["action"] != "allow"]
    assert not evs.of("alert"), evs.of("alert")


def test_script_is_flagged_not_blocked(rd, agent, rpolicy):
    a = agent("--policy", rpolicy)
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    assert r.eval("return redis.call('PING')", 0) == b"PONG"
    r.close()
    evs = a.stop()
    al = [e for e in evs.of("alert") if e["alert"]["kind"] == "dynamic_sql"]
    assert len(al) == 1 and "EVAL runs a script" in al[0]["alert"]["detail"]
    ev = [e for e in evs.statements(pid=os.getpid()) if e["statement"]["verb"] == "EVAL"][0]
    assert ev["statement"]["text"] == "EVAL ? ?"


def test_policy_test_cli_reads_redis(rd, rpolicy):
    from conftest import DBW_BIN
    import subprocess
    r = subprocess.run([DBW_BIN, "policy", "test", rpolicy, "--protocol", "redis",
                        "--target", f"127.0.0.1:{rd.port}", "--sql", "flushdb async"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "verdict: block rule: no-flush" in r.stdout, r
    r = subprocess.run([DBW_BIN, "policy", "test", rpolicy, "--protocol", "redis",
                        "--sql", "KEYS user:*"], capture_output=True, text=True)
    assert "verdict: allow" in r.stdout and "statement: KEYS user:* verb: KEYS" in r.stdout, r


def test_acl_user_is_the_session_user_and_passwords_stay(rd, agent):
    rd.cli("ACL", "SETUSER", "appuser", "on", ">lit-redis-pw-77", "~*", "&*", "+@all")
    a = agent()
    res, pid = rd.cli("--user", "appuser", "--pass", "lit-redis-pw-77", "--no-auth-warning",
                      "SET", "acl:1", "v1")
    assert res.stdout.strip() == "OK"
    r = redis.Redis(host="127.0.0.1", port=rd.port, username="appuser",
                    password="lit-redis-pw-77")
    r.get("acl:1")
    r.close()
    evs = a.stop()
    st = evs.statements(pid=pid)
    auth = [e for e in st if e["statement"]["verb"] == "AUTH"]
    assert auth and auth[0]["statement"]["text"] == "AUTH ? ?"
    s = [e for e in st if e["statement"]["verb"] == "SET"][0]
    assert s["connection"]["db_user"] == "appuser"
    g = [e for e in evs.statements(pid=os.getpid()) if e["statement"]["verb"] == "GET"][0]
    assert g["connection"]["db_user"] == "appuser"
    events.assert_no_literals(evs, ["lit-redis-pw-77"])


def test_require_approval_for_redis(rd, agent, tmp_path):
    import re
    import subprocess
    from conftest import DBW_BIN
    policy = tmp_path / "approval.yaml"
    policy.write_text("version: 1\nrules:\n  - name: flush-needs-approval\n"
                      "    match: {verb: [FLUSHDB]}\n    action: require_approval\n")
    a = agent("--policy", str(policy))
    api = str(tmp_path / "api.sock")
    r = redis.Redis(host="127.0.0.1", port=rd.port, db=5)
    r.set("ap:1", "v")
    with pytest.raises(redis.ResponseError) as ei:
        r.flushdb()
    m = re.search(r"approval id ([0-9a-f]{12}): blocked by dbwarden rule flush-needs-approval",
                  str(ei.value))
    assert m, str(ei.value)
    aid = m.group(1)
    assert r.get("ap:1") == b"v"
    ok = subprocess.run([DBW_BIN, "approve", aid, "--socket", api], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    assert r.flushdb() is True  # the same actor, the same command: it passes now
    assert r.get("ap:1") is None
    r.close()
    evs = a.stop()
    fl = [e for e in evs.statements(pid=os.getpid()) if e["statement"]["verb"] == "FLUSHDB"]
    assert [e["decision"]["action"] for e in fl] == ["require_approval", "allow"]
    assert fl[0]["decision"]["approval_id"] == aid


def test_guard_follows_commands_across_sends(rd, agent, rpolicy):
    """A blocked command written a few bytes at a time, after a long value spanning sends."""
    import time
    a = agent("--policy", rpolicy)
    big = b"v" * 300000
    with socket.create_connection(("127.0.0.1", rd.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cmd = b"*3\r\n$3\r\nSET\r\n$5\r\nsp:b1\r\n$%d\r\n" % len(big) + big + b"\r\n"
        for i in range(0, len(cmd), 65536):
            s.sendall(cmd[i:i + 65536])
            time.sleep(0.01)
        flush = b"*1\r\n$8\r\nFLUSHALL\r\n"
        for i in range(len(flush)):
            s.sendall(flush[i:i + 1])
            time.sleep(0.005)
        s.sendall(b"*2\r\n$3\r\nGET\r\n$5\r\nsp:b1\r\n")
        buf = b""
        deadline = time.time() + 10
        while (b"+OK\r\n" not in buf or BLOCKED.encode() not in buf
               or not buf.endswith(big + b"\r\n")) and time.time() < deadline:
            buf += s.recv(1 << 20)
    assert buf.startswith(b"+OK\r\n-ERR " + BLOCKED.encode() + b" no-flush"), buf[:200]
    assert buf.endswith(b"$300000\r\n" + big + b"\r\n")
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    assert [e["statement"]["text"] for e in st] == ["SET sp:b1 ?", "FLUSHALL", "GET sp:b1"]
    assert [e["decision"]["action"] for e in st] == ["allow", "block", "allow"]
    assert not evs.of("alert"), evs.of("alert")
