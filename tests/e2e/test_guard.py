# SPDX-License-Identifier: GPL-2.0-only
"""
Guardrails end to end: a policy loaded with --policy, statements blocked in
the kernel before the server sees them, answered with the server's own
error (SQLSTATE 42501, the rule's message), the session going on.
"""
import http.server
import json
import os
import re
import select
import signal
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest

import events
from conftest import DBW_BIN, helper, scratch_table
from rawpg import query, raw_session, replies

POLICY = """\
version: 1
defaults: {action: allow, unparsed: block}
rules:
  - name: no-destructive-ddl
    match: {verb: [DROP, TRUNCATE]}
    action: block
    message: "destructive DDL is not allowed here"
  - name: delete-without-where
    match: {verb: [DELETE, UPDATE], without_where: true}
    action: block
    message: "add a WHERE clause"
"""

BLOCKED = "blocked by dbwarden rule"

# Statements that must be blocked, however they are spelled.
EVASIONS = [
    ("DROP TABLE {t}", "no-destructive-ddl"),
    ("drop table {t}", "no-destructive-ddl"),
    ("dRoP\t\n  TaBlE {t}", "no-destructive-ddl"),
    ("/* hello */DROP/* x */TABLE {t}", "no-destructive-ddl"),
    ("DROP -- comment\nTABLE {t}", "no-destructive-ddl"),
    ("/* /* nested */ still comment */ DROP TABLE {t}", "no-destructive-ddl"),
    ("SELECT 1; DROP TABLE {t}", "no-destructive-ddl"),
    ("  (  SELECT 1 ) ; ; DROP TABLE IF EXISTS {t}", "no-destructive-ddl"),
    ('DROP TABLE "{t}"', "no-destructive-ddl"),
    ("TRUNCATE {t}", "no-destructive-ddl"),
    ("DELETE FROM {t}", "delete-without-where"),
    ("UPDATE {t} SET v = 'x'", "delete-without-where"),
    ("WITH d AS (DELETE FROM {t} RETURNING *) SELECT count(*) FROM d", "delete-without-where"),
    ("EXPLAIN ANALYZE DELETE FROM {t}", "delete-without-where"),
]

# Statements that must pass: no false positive.
ALLOWED = [
    "SELECT 'DROP TABLE {t}'",
    "SELECT 1 AS \"drop\"",
    "SELECT 1 -- DROP TABLE {t}",
    "SELECT /* DROP TABLE {t} */ 1",
    "SELECT $$DROP TABLE {t}$$",
    "SELECT E'\\' DROP TABLE {t}'",
    "DELETE FROM {t} WHERE id = 42",
    "UPDATE {t} SET v = 'y' WHERE id = 7",
    "INSERT INTO {t} VALUES (1000, 'drop table')",
    "SELECT count(*) FROM {t} WHERE v <> 'delete from x'",
]


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


@pytest.fixture
def table(pg):
    yield from scratch_table(pg)


def rows(pg, table):
    res, _ = pg.psql("-At", "-c", f"SELECT count(*) FROM {table}")
    return int(res.stdout.strip())


def test_evasion_corpus_blocked_with_psql(pg, agent, policy, table):
    a = agent("--policy", policy)
    for sql, rule in EVASIONS:
        stmt = sql.format(t=table)
        # the blocked statement, then a query on the same connection
        res, pid = pg.psql("-c", stmt, "-c", "SELECT 'alive'", "-At", check=False)
        assert f"{BLOCKED} {rule}" in res.stderr, (stmt, res.stderr)
        assert "alive" in res.stdout, (stmt, res.stdout, res.stderr)
    assert rows(pg, table) == 5
    evs = a.stop()
    blocked = [e for e in evs.statements() if e["decision"]["action"] == "block"]
    assert len(blocked) >= len(EVASIONS)
    for e in blocked:
        assert e["outcome"]["status"] in ("error", "skipped")
        assert e["decision"]["rule"] in ("no-destructive-ddl", "delete-without-where")
        assert e["decision"]["enforced_by"] == "kernel"
    errors = [e for e in blocked if e["outcome"]["status"] == "error"]
    assert all(e["outcome"]["sqlstate"] == "42501" for e in errors)
    mismatches = [e["alert"]["detail"] for e in evs.of("alert")
                  if e["alert"]["kind"] == "guard_mismatch"]
    assert mismatches == []


def test_allow_corpus_no_false_positive(pg, agent, policy, table):
    a = agent("--policy", policy)
    for sql in ALLOWED:
        res, pid = pg.psql("-c", sql.format(t=table), check=False)
        assert res.returncode == 0 and BLOCKED not in res.stderr, (sql, res.stderr)
    # a typo: the server rejects it, the guard has nothing to add
    res, pid = pg.psql("-c", "SELEC typo FROM nowhere", check=False)
    assert "syntax error" in res.stderr and BLOCKED not in res.stderr
    evs = a.stop()
    st = evs.statements()
    assert len(st) == len(ALLOWED) + 1
    assert st[-1]["outcome"]["sqlstate"] == "42601"
    assert all(e["decision"]["action"] == "allow" for e in st)
    assert [e for e in evs.of("alert") if e["alert"]["kind"] == "guard_mismatch"] == []


def test_psycopg2_blocked_then_session_goes_on(pg, agent, policy, table):
    a = agent("--policy", policy)
    conn = psycopg2.connect(pg.dsn())
    cur = conn.cursor()
    with pytest.raises(psycopg2.errors.InsufficientPrivilege) as exc:
        cur.execute(f"DROP TABLE {table}")
    assert "blocked by dbwarden rule no-destructive-ddl: destructive DDL" in str(exc.value)
    conn.rollback()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone() == (5,)
    conn.close()
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    drop = [e for e in st if e["statement"]["verb"] == "DROP"]
    assert len(drop) == 1 and drop[0]["decision"]["action"] == "block"


def test_transaction_is_aborted_like_a_server_error(pg, agent, policy, table):
    a = agent("--policy", policy)
    res, pid = pg.psql("-c", "BEGIN", "-c", f"INSERT INTO {table} VALUES (99, 'lit_tx')",
                       "-c", f"DROP TABLE {table}", "-c", "COMMIT", check=False)
    assert BLOCKED in res.stderr
    a.stop()
    # the blocked statement aborted the transaction: COMMIT rolled the INSERT back
    assert rows(pg, table) == 5


def test_extended_protocol_and_named_statements(pg, agent, policy, table):
    a = agent("--policy", policy)
    client = helper("pq_client")
    for mode in ("extended", "named"):
        out = subprocess.run([client, pg.dsn(), mode, f"DROP TABLE {table}",
                              f"SELECT count(*) FROM {table}"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert out[0].startswith("error 42501 ERROR:  blocked by dbwarden rule no-destructive-ddl")
        assert out[-1] == "ok SELECT 1", out
    evs = a.stop()
    st = [e for e in evs.statements() if e["actor"]["comm"] == "pq_client"]
    drops = [e for e in st if e["statement"]["verb"] == "DROP"]
    assert len(drops) == 2
    assert all(e["decision"]["action"] == "block" for e in drops)
    assert all(e["statement"]["mode"] == "extended" for e in drops)
    assert rows(pg, table) == 5


def test_dynamic_sql_raises_an_alert(pg, agent, policy, table):
    a = agent("--policy", policy)
    res, pid = pg.psql("-c", f"DO $$ BEGIN EXECUTE 'SELECT count(*) FROM {table}'; END $$")
    evs = a.stop()
    alerts = [e for e in evs.of("alert") if e["alert"]["kind"] == "dynamic_sql"]
    assert len(alerts) == 1 and alerts[0]["actor"]["pid"] == pid


def test_policy_check_reports_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    match: {verb: [DROPP]}\n"
                   "    action: block\n  - name: y\n    action: explode\n")
    r = subprocess.run([DBW_BIN, "policy", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(l.startswith(f"{bad}:4:") and "DROPP" in l for l in lines), lines
    assert any(l.startswith(f"{bad}:7:") and "explode" in l for l in lines), lines
    good = tmp_path / "good.yaml"
    good.write_text(POLICY)
    r = subprocess.run([DBW_BIN, "policy", "check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "no-destructive-ddl" in r.stdout and "delete-without-where" in r.stdout


def test_reload_good_and_bad(pg, agent, tmp_path, table):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules: []\n")
    a = agent("--policy", str(path))
    res, _ = pg.psql("-c", f"TRUNCATE {table}", check=False)
    assert BLOCKED not in res.stderr
    path.write_text(POLICY)
    a.proc.send_signal(signal.SIGHUP)
    a.wait_for(lambda evs: any(e["type"] == "alert" and e["alert"]["kind"] == "policy_loaded"
                               for e in evs))
    res, _ = pg.psql("-c", f"DROP TABLE {table}", check=False)
    assert BLOCKED in res.stderr
    path.write_text("version: 1\nrules:\n  - name: broken\n    action: nope\n")
    a.proc.send_signal(signal.SIGHUP)
    a.wait_for(lambda evs: any(e["type"] == "alert" and e["alert"]["kind"] == "policy_rejected"
                               for e in evs))
    res, _ = pg.psql("-c", f"DROP TABLE {table}", check=False)
    assert BLOCKED in res.stderr  # the old policy stays in force
    evs = a.stop()
    rej = [e for e in evs.of("alert") if e["alert"]["kind"] == "policy_rejected"]
    assert "nope" in rej[0]["alert"]["detail"]


class Hook(http.server.BaseHTTPRequestHandler):
    """A chat tool's webhook endpoint: keeps what it is sent."""
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_require_approval_approve_retry_expire(pg, agent, tmp_path, table):
    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    Hook.received.clear()
    policy = tmp_path / "approval.yaml"
    policy.write_text(
        "version: 1\n"
        f"approvals: {{ttl: 15m, webhook: 'http://127.0.0.1:{hook.server_port}/hook'}}\n"
        "rules:\n"
        "  - name: wipe-needs-approval\n"
        "    match: {verb: [DELETE, UPDATE], without_where: true}\n"
        "    action: require_approval\n"
        "    message: ask a DBA\n")
    api = str(tmp_path / "api.sock")
    a = agent("--policy", str(policy), "--api", api)
    try:
        stmt = f"UPDATE {table} SET v = 'lit_approved'"
        res, _ = pg.psql("-c", stmt, check=False)
        m = re.search(r"approval id ([0-9a-f]{12}): blocked by dbwarden rule "
                      r"wipe-needs-approval: ask a DBA", res.stderr)
        assert m, res.stderr
        aid = m.group(1)
        listing = subprocess.run([DBW_BIN, "approvals", "--socket", api], capture_output=True,
                                 text=True)
        assert listing.returncode == 0 and f"{aid} pending" in listing.stdout, listing
        # the chat tool heard of it
        deadline = time.time() + 5
        while not Hook.received and time.time() < deadline:
            time.sleep(0.05)
        assert Hook.received and Hook.received[0][0] == "/hook"
        assert Hook.received[0][1]["id"] == aid
        assert Hook.received[0][1]["approve"] == f"dbwarden approve {aid}"
        # an unknown id is refused
        bad = subprocess.run([DBW_BIN, "approve", "000000000000", "--socket", api],
                             capture_output=True, text=True)
        assert bad.returncode == 1 and "no approval" in bad.stderr
        ok = subprocess.run([DBW_BIN, "approve", aid, "--ttl", "4s", "--socket", api],
                            capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        # the same actor's retry of the same statement passes (other literal, same shape)
        res, _ = pg.psql("-c", f"UPDATE {table} SET v = 'lit_other'", check=False)
        assert BLOCKED not in res.stderr and res.returncode == 0, res.stderr
        # another actor is still held
        res, _ = pg.psql("-c", stmt, run_as="nobody", check=False)
        assert "approval id" in res.stderr and aid not in res.stderr, res.stderr
        # after the TTL: held again, with the same id
        time.sleep(4.5)
        res, _ = pg.psql("-c", stmt, check=False)
        assert f"approval id {aid}" in res.stderr, res.stderr
    finally:
        hook.shutdown()
    evs = a.stop()
    upd = [e for e in evs.statements() if e["statement"]["verb"] == "UPDATE"]
    assert [e["decision"]["action"] for e in upd] == ["require_approval", "allow",
                                                      "require_approval", "require_approval"]
    assert upd[0]["decision"]["approval_id"] == aid
    assert upd[1]["decision"]["approval_id"] == aid
    assert upd[1]["decision"]["approved_by"].startswith("root")
    assert upd[1]["outcome"]["status"] == "ok" and upd[1]["outcome"]["rows"] == 5
    assert upd[0]["outcome"]["sqlstate"] == "42501"
    granted = [e for e in evs.of("alert") if e["alert"]["kind"] == "approval_granted"]
    assert len(granted) == 1 and aid in granted[0]["alert"]["detail"]
    events.assert_no_literals(evs, ["lit_approved", "lit_other"])


def padded_drop(table):
    """A DROP past the 16 KiB the kernel lexer reads, behind a long comment."""
    return "SELECT 1 /* " + "x" * 17000 + " */; DROP TABLE " + table


def test_unreadable_statement_fails_closed(pg, agent, policy, table):
    a = agent("--policy", policy)
    res, pid = pg.psql("-c", padded_drop(table), "-c", "SELECT 'alive'", "-At", check=False)
    assert f"{BLOCKED} defaults.unparsed" in res.stderr, res.stderr
    assert "alive" in res.stdout
    assert rows(pg, table) == 5
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert st[0]["decision"]["action"] == "block"
    assert st[0]["decision"]["rule"] == "defaults.unparsed"
    assert "guard_unparsed=1" in a.stderr()


def test_kernel_miss_is_an_alert_and_a_reset(pg, agent, tmp_path, table):
    """unparsed: allow lets the long statement through; the exact parse sees the DROP."""
    path = tmp_path / "lenient.yaml"
    path.write_text(POLICY.replace("unparsed: block", "unparsed: allow") +
                    "on_mismatch: reset\n")
    a = agent("--policy", str(path))
    res, pid = pg.psql("-c", padded_drop(table), check=False)
    evs = a.wait_for(lambda evs: any(e["type"] == "alert" and
                                     e["alert"]["kind"] == "connection_reset" for e in evs))
    evs = a.stop()
    kinds = [e["alert"]["kind"] for e in evs.of("alert")]
    assert "guard_mismatch" in kinds and "connection_reset" in kinds
    miss = next(e for e in evs.of("alert") if e["alert"]["kind"] == "guard_mismatch")
    assert "no-destructive-ddl" in miss["alert"]["detail"]


def test_policy_test_command(policy):
    def verdict(*args):
        r = subprocess.run([DBW_BIN, "policy", "test", policy] + list(args), capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()[0]

    assert verdict("--sql", "DROP TABLE t") == (
        "verdict: block rule: no-destructive-ddl message: destructive DDL is not allowed here")
    assert verdict("--sql", "WITH d AS (DELETE FROM t) SELECT 1").startswith(
        "verdict: block rule: delete-without-where")
    assert verdict("--sql", "DELETE FROM t WHERE id = 1") == "verdict: allow rule: (default)"
    assert verdict("--sql", "SELECT 'unterminated").startswith(
        "verdict: block rule: (defaults.unparsed)")
    r = subprocess.run([DBW_BIN, "policy", "test", policy], capture_output=True, text=True)
    assert r.returncode == 2


def test_bad_policy_at_start_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    action: explode\n")
    r = subprocess.run([DBW_BIN, "run", "--port", "5999", "--policy", str(bad), "--no-pin",
                        "--state-dir", str(tmp_path / "state")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"dbwarden: error: {bad}:4:13: unknown action 'explode'" in r.stderr
    assert "ready" not in r.stderr


def test_copy_and_pipeline_pass_under_a_policy(pg, agent, policy, table):
    """Thousands of small messages per send: the guard follows them, blocks nothing."""
    rows_in = "".join(f"{1000 + i}\tlit_copy_{i}\n" for i in range(10000))
    a = agent("--policy", policy)
    res, pid = pg.psql("-c", f"COPY {table} FROM STDIN", input=rows_in)
    assert res.returncode == 0
    out = subprocess.run([helper("pq_client"), pg.dsn(), "pipeline", "200"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    evs = a.stop()
    assert rows(pg, table) == 10005
    copy = evs.statements(pid=pid)
    assert len(copy) == 1 and copy[0]["outcome"]["rows"] == 10000
    pipe = [e for e in evs.statements() if e["actor"]["comm"] == "pq_client"]
    assert len(pipe) == 200 and all(e["outcome"]["status"] == "ok" for e in pipe)
    err = a.stderr()
    assert "guard_lost=0" in err and "guard_failed=0" in err, err
    assert [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"] == []


def test_pipelined_sends_that_end_inside_statements(pg, agent, policy, table):
    """
    A client that writes a long run of statements in fixed-size sends, each
    ending inside a statement: the guard holds back only the statement cut
    at the end of a send and lets the whole ones before it go, so the bytes
    held never pile up (held whole, they grew with every send until the
    guard gave up and refused the connection).
    """
    a = agent("--policy", policy)
    s = raw_session(pg.port)
    n = 1000
    stream = b"".join(query(b"SELECT %d /* " % i + b"q" * 6000 + b" */")
                      for i in range(n))
    stream += query(f"DROP TABLE {table}".encode())
    for i in range(0, len(stream), 65536):
        s.sendall(stream[i:i + 65536])
    answers = b"".join(body for _, body in replies(s, n + 1, timeout=30))
    s.close()
    assert b"blocked by dbwarden rule no-destructive-ddl" in answers
    assert rows(pg, table) == 5
    evs = a.stop()
    err = a.stderr()
    assert re.search(r"guard_corked=[1-9]", err), err
    assert "guard_lost=0" in err and "oversize_sends=0" in err, err
    st = [e for e in evs.statements() if e["actor"]["pid"] == os.getpid()]
    assert len([e for e in st if e["statement"]["verb"] == "SELECT"]) == n
    drop = [e for e in st if e["statement"]["verb"] == "DROP"]
    assert len(drop) == 1 and drop[0]["decision"]["action"] == "block"


def test_backlogged_client_every_send_seen_and_guarded(pg, agent, policy, table):
    """
    A non-blocking client whose sends the kernel cuts short (the server busy,
    the socket buffers full), sending again what was left with more messages
    behind it, as libpq does. With a plain pass, tcp_bpf would push every
    later send without running the sk_msg program (the verdict of the cut
    send stays); the guard's redirect has it run on each. Every statement is
    captured once (the resent bytes are not taken twice), none goes unseen,
    and the DROP after them is blocked. (A send cut inside text the guard
    rewrote cannot be mapped onto the client's resend: that connection is
    refused and reset, as any stream the guard cannot follow.)
    """
    a = agent("--policy", policy)
    s = raw_session(pg.port, sndbuf=4096)
    # the server sleeps: its receive buffer and our send buffer fill up
    s.sendall(query(b"SELECT pg_sleep(2)"))
    s.setblocking(False)
    npad = 1200  # statements waiting for the server: under the daemon's bound of 2048
    pad = query(b"SELECT 1 /* " + b"p" * 7000 + b" */")
    stream = pad * npad
    # each send ends where a message does (a statement cut at the end of a
    # send is held back whole until its last byte: a different path)
    ends = [len(pad) * (i + 1) for i in range(npad)]
    sent, short = 0, 0
    deadline = time.time() + 60
    while sent < len(stream) and time.time() < deadline:
        upto = max([e for e in ends if e <= sent + 65536] + [min(e for e in ends if e > sent)])
        try:
            n = s.send(stream[sent:upto])
            short += n < upto - sent
            sent += n
        except BlockingIOError:
            short += 1
            select.select([], [s], [], 1)
    s.setblocking(True)
    answers = b"".join(body for _, body in replies(s, npad + 1, timeout=30))
    # the backlog drained: the DROP goes in a send of its own, answered in-protocol
    s.sendall(query(f"DROP TABLE {table}".encode()) +
              query(b"SELECT 'end'"))
    answers += b"".join(body for _, body in replies(s, 2, timeout=30))
    s.close()
    assert sent == len(stream)
    assert b"blocked by dbwarden rule no-destructive-ddl" in answers
    assert rows(pg, table) == 5
    evs = a.stop()
    err = a.stderr()
    resends, unseen = int(re.search(r"msg_resends=(\d+)", err).group(1)), \
        int(re.search(r"unseen_bytes=(\d+)", err).group(1))
    print(f"\nsends cut short {short}, resends {resends}, unseen bytes {unseen}")
    assert short > 0 and resends > 0, err
    assert unseen == 0 and "msg_pass_plain=0" in err, err
    assert re.search(r"gaps 0 \(0 bytes\)", err), err
    st = [e for e in evs.statements() if e["actor"]["pid"] == os.getpid()]
    pads = [e for e in st if e["statement"]["verb"] == "SELECT"]
    assert len(pads) == npad + 2, len(pads)  # pg_sleep, the pads, 'end'
    drop = [e for e in st if e["statement"]["verb"] == "DROP"]
    assert len(drop) == 1 and drop[0]["decision"]["action"] == "block"
