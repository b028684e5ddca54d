# SPDX-License-Identifier: GPL-2.0-only
"""
Guardrails end to end: a policy loaded with --policy, statements blocked in
the kernel before the server sees them, answered with the server's own
error (SQLSTATE 42501, the rule's message), the session going on.
"""
import os
import signal
import subprocess
import time
import uuid

import psycopg2
import pytest

import events
from conftest import DBW_BIN, helper

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
    name = f"g_{uuid.uuid4().hex[:8]}"
    pg.psql("-c", f"CREATE TABLE {name} (id int, v text); "
                  f"INSERT INTO {name} SELECT g, 'v' || g FROM generate_series(1, 5) g")
    yield name
    pg.psql("-c", f"DROP TABLE IF EXISTS {name}")  # the agent is stopped by now


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
    evs = a.stop()
    st = evs.statements()
    assert len(st) == len(ALLOWED)
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
