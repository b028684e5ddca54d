# SPDX-License-Identifier: GPL-2.0-only
"""
TLS end to end: a PostgreSQL with ssl=on and a certificate made here, real
clients with sslmode=require/prefer/disable, the agent reading the
plaintext at OpenSSL's probes, and the guard enforcing over TLS by
dropping the write and resetting the connection.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import psycopg2
import pytest

import events
from conftest import Postgres, agents, helper, scratch_table, serve
from test_guard import ALLOWED, EVASIONS, POLICY, policy  # noqa: F401 (a fixture)

LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


@pytest.fixture(scope="module")
def tpg():
    yield from serve(Postgres(ssl=True))


@pytest.fixture
def tagent(tmp_path, tpg):
    """agent(*extra, env=None) watching the TLS server's port."""
    yield from agents(tmp_path, tpg.port)


@pytest.fixture
def table(tpg):
    yield from scratch_table(tpg)


def rows(tpg, table):
    # over the Unix socket: never through the agent
    res, _ = tpg.psql("-At", "-c", f"SELECT count(*) FROM {table}", host=tpg.dir)
    return int(res.stdout.strip())


def test_psql_and_psycopg2_over_tls(tpg, tagent):
    a = tagent()
    res, pid = tpg.psql("-At", "-c", "SELECT 'tls_lit_4417' AS v", "-c",
                        "SELECT g FROM generate_series(1, 3) g", sslmode="require")
    assert res.stdout.split() == ["tls_lit_4417", "1", "2", "3"]
    conn = psycopg2.connect(tpg.dsn(sslmode="require"), application_name="tls-app")
    cur = conn.cursor()
    cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert cur.fetchone() == (True,)
    cur.execute("SELECT %s::text, %s::int", ("psy_secret_99", 424242))
    conn.commit()
    conn.close()
    evs = a.stop()

    st = evs.statements(pid=pid)
    assert [e["statement"]["text"] for e in st] == [
        "SELECT $1 AS v", "SELECT g FROM generate_series($1, $2) g"]
    assert [e["outcome"]["rows"] for e in st] == [1, 3]
    assert all(e["connection"]["tls"] is True for e in st)
    assert all(e["outcome"]["status"] == "ok" for e in st)
    assert st[0]["connection"]["db_user"] == "postgres"
    psy = evs.statements(pid=os.getpid())
    assert [e["statement"]["text"] for e in psy] == [
        "BEGIN", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        "SELECT $1::text, $2::int", "COMMIT"]
    assert all(e["connection"]["tls"] and e["connection"]["application_name"] == "tls-app"
               for e in psy)
    events.assert_no_literals(evs, ["tls_lit_4417", "psy_secret_99", "424242"])
    # exactly one event per statement, nothing lost
    assert evs.losses() == []
    assert "tls: probing " + LIBSSL in a.stderr()


def test_extended_protocol_over_tls(tpg, tagent):
    a = tagent()
    dsn = tpg.dsn(sslmode="require")
    p = subprocess.run([helper("pq_client"), dsn, "execparams"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    q = subprocess.run([helper("pq_client"), dsn, "pipeline", "20"], capture_output=True,
                       text=True)
    assert q.returncode == 0, q.stderr
    evs = a.stop()
    st = [e for e in evs.statements() if e["actor"]["comm"] == "pq_client"]
    ins = [e for e in st if e["statement"]["text"] == "INSERT INTO pq_t VALUES ($1, $2)"]
    assert len(ins) == 1
    assert ins[0]["statement"]["mode"] == "extended"
    assert ins[0]["statement"]["params"] == {"count": 2, "types": [23, 25]}
    assert ins[0]["outcome"]["tag"] == "INSERT 0 1"
    pipe = [e for e in st if e["connection"]["id"] != ins[0]["connection"]["id"]]
    assert len(pipe) == 20 and all(e["outcome"]["status"] == "ok" for e in pipe)
    assert all(e["connection"]["tls"] for e in st)
    events.assert_no_literals(evs, ["secret-token-PQX", "41119999"])


def test_prefer_and_disable_on_the_same_port(tpg, tagent):
    a = tagent()
    _, p_prefer = tpg.psql("-c", "SELECT 'prefer'", sslmode="prefer")
    _, p_disable = tpg.psql("-c", "SELECT 'disable'", sslmode="disable")
    evs = a.stop()
    (pref,) = evs.statements(pid=p_prefer)
    (dis,) = evs.statements(pid=p_disable)
    assert pref["connection"]["tls"] is True
    assert dis["connection"]["tls"] is False
    assert pref["statement"]["text"] == dis["statement"]["text"] == "SELECT $1"


def test_guard_evasions_blocked_over_tls(tpg, tagent, policy, table):
    a = tagent("--policy", policy)
    for sql, rule in EVASIONS:
        stmt = sql.format(t=table)
        t0 = time.monotonic()
        res, pid = tpg.psql("-c", "SELECT 'before'", "-c", stmt, "-At", check=False,
                            sslmode="require")
        took = time.monotonic() - t0
        # the write was dropped and the connection reset: psql reports it, at once
        assert res.returncode != 0, (stmt, res.stdout, res.stderr)
        assert "before" in res.stdout
        assert took < 5, (stmt, took)
    assert rows(tpg, table) == 5
    # allowed statements still run over TLS under the same policy
    for sql in ALLOWED:
        res, _ = tpg.psql("-c", sql.format(t=table), check=False, sslmode="require")
        assert res.returncode == 0, (sql, res.stderr)
    evs = a.stop()
    blocked = [e for e in evs.statements() if e["decision"]["action"] == "block"]
    # one blocked write per evasion: every statement it carried was dropped with it
    assert len({e["connection"]["id"] for e in blocked}) == len(EVASIONS)
    for e in blocked:
        assert e["connection"]["tls"] is True
        assert e["outcome"]["status"] == "blocked"
        assert e["decision"]["enforced_by"] == "kernel"
        assert e["decision"]["rule"] in ("no-destructive-ddl", "delete-without-where")
    resets = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
    assert len(resets) == len(EVASIONS)
    assert all("TLS write was blocked" in e["alert"]["detail"] for e in resets)
    # the SELECT 'before' of each evasion, and the allow corpus
    ok = [e for e in evs.statements() if e["outcome"]["status"] == "ok"]
    assert len(ok) == len(EVASIONS) + len(ALLOWED)
    assert all(e["decision"]["action"] == "allow" for e in ok)


def test_block_resets_only_that_connection(tpg, tagent, policy, table):
    a = tagent("--policy", policy)
    c1 = psycopg2.connect(tpg.dsn(sslmode="require"))
    c2 = psycopg2.connect(tpg.dsn(sslmode="require"))
    cur1, cur2 = c1.cursor(), c2.cursor()
    t0 = time.monotonic()
    with pytest.raises(psycopg2.OperationalError):
        cur1.execute(f"DROP TABLE {table}")
    assert time.monotonic() - t0 < 5
    # the other connection of the same process goes on, and a new one works
    cur2.execute(f"SELECT count(*) FROM {table}")
    assert cur2.fetchone() == (5,)
    c3 = psycopg2.connect(tpg.dsn(sslmode="require"))
    c3.cursor().execute("SELECT 1")
    for c in (c1, c2, c3):
        c.close()
    evs = a.stop()
    drop = [e for e in evs.statements(pid=os.getpid()) if e["statement"]["verb"] == "DROP"]
    assert len(drop) == 1
    assert drop[0]["decision"]["rule"] == "no-destructive-ddl"
    assert drop[0]["outcome"]["status"] == "blocked"
    assert rows(tpg, table) == 5


def psql_with_library_copy(a, tpg, tmp_path, sql):
    """
    psql in a mount namespace of its own where libssl is a copy (another
    inode: a container's own file), once the agent has probed that copy. A
    process of the namespace maps the copy first (python's ssl module) and
    waits: a client whose handshake wins the race with the probing of a
    library never seen before is opaque (see Limits in the README), which a
    fast machine shows every time. Returns (CompletedProcess, the copy's inode).
    """
    copy = tmp_path / "libssl.so.3"
    shutil.copy(LIBSSL, copy)
    ino = os.stat(copy).st_ino
    go = tmp_path / "go"
    hold = ("import os, time\nimport ssl  # maps libssl: the copy\n"
            f"while not os.path.exists('{go}'): time.sleep(0.02)")
    inner = (f"mount --bind {copy} {LIBSSL} && /usr/bin/python3 -c \"{hold}\" && "
             f"exec /usr/lib/postgresql/15/bin/psql -X -At -d '{tpg.dsn(sslmode='require')}' "
             f"-c \"{sql}\"")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    probed = re.compile(rf"tls: probing {re.escape(LIBSSL)} \(device \d+:\d+ inode {ino}\)")
    deadline = time.time() + 20
    while not probed.search(a.stderr()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    go.touch()
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), ino


def test_library_copy_in_own_mount_namespace(tpg, tagent, tmp_path):
    """A container's libssl: another file, seen only inside another mount namespace."""
    a = tagent()
    p, ino = psql_with_library_copy(a, tpg, tmp_path, "SELECT 'from_container'")
    assert p.returncode == 0, p.stderr
    evs = a.stop()
    st = [e for e in evs.statements() if e["statement"]["text"] == "SELECT $1"
          and e["actor"]["comm"] == "psql"]
    assert len(st) == 1 and st[0]["connection"]["tls"] is True
    # probed as its own file (the copy's inode), not through the host's
    assert re.search(rf"tls: probing {re.escape(LIBSSL)} \(device \d+:\d+ inode {ino}\)",
                     a.stderr()), a.stderr()


def test_statically_linked_openssl(tpg, tagent, policy, table):
    """No libssl.so at all: the SSL functions are in the program's own executable."""
    a = tagent("--policy", policy)
    client = helper("static_tls_client")
    go = os.path.join(tempfile.mkdtemp(), "go")
    # the client connects once the agent has probed its image: a handshake that
    # wins the race with the exec-time probing is opaque (see Limits in the README)
    proc = subprocess.Popen([client, "127.0.0.1", str(tpg.port), "postgres",
                             "SELECT 'static_lit_5' AS v", f"DROP TABLE {table}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, STATIC_TLS_GO_FILE=go))
    deadline = time.time() + 20
    while f"tls: probing {client}" not in a.stderr() and time.time() < deadline:
        time.sleep(0.05)
    open(go, "w").close()
    out, err = proc.communicate(timeout=30)
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    shutil.rmtree(os.path.dirname(go))
    # the SELECT ran; the DROP was dropped and the connection reset
    assert p.stdout.splitlines() == ["ok SELECT 1"], (p.stdout, p.stderr)
    assert p.returncode != 0
    evs = a.stop()
    assert re.search(rf"tls: probing {re.escape(client)} \(.*\): write at", a.stderr())
    st = [e for e in evs.statements() if e["actor"]["comm"].startswith("static_tls")]
    assert [(e["statement"]["text"], e["outcome"]["status"]) for e in st] == [
        ("SELECT $1 AS v", "ok"), (f"DROP TABLE {table}", "blocked")]
    assert all(e["connection"]["tls"] for e in st)
    assert rows(tpg, table) == 5
    events.assert_no_literals(evs, ["static_lit_5"])


def test_unused_library_is_detached(tpg, tagent, tmp_path):
    a = tagent(env={"DBWARDEN_TLS_SWEEP_MS": "300"})
    try:
        p, _ = psql_with_library_copy(a, tpg, tmp_path, "SELECT 1")
        assert p.returncode == 0, p.stderr
        deadline = time.time() + 10
        while "no longer in use: probes removed" not in a.stderr():
            assert time.time() < deadline, a.stderr()
            time.sleep(0.1)
        # the host's copy stays probed: its users are still there
        assert a.stderr().count("probes removed") == 1
    finally:
        evs = a.stop()
    assert len([e for e in evs.statements() if e["connection"]["tls"]]) == 1


def test_exported_entry_points_fallback(tpg, tagent, policy, table):
    """The sites used when the internal functions are not recognised: same results."""
    a = tagent("--policy", policy, env={"DBWARDEN_TLS_PROBE": "exported"})
    res, pid = tpg.psql("-At", "-c", "SELECT 'fallback_lit'", "-c", f"DROP TABLE {table}",
                        check=False, sslmode="require")
    assert res.stdout.strip() == "fallback_lit" and res.returncode != 0
    p = subprocess.run([helper("pq_client"), tpg.dsn(sslmode="require"), "execparams"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    evs = a.stop()
    assert "at their entry (single-stepped: slower)" in a.stderr()
    st = evs.statements(pid=pid)
    assert [(e["statement"]["text"], e["outcome"]["status"]) for e in st] == [
        ("SELECT $1", "ok"), (f"DROP TABLE {table}", "blocked")]
    ins = [e for e in evs.statements() if e["statement"]["text"].startswith("INSERT INTO pq_t")]
    assert len(ins) == 1 and ins[0]["outcome"]["tag"] == "INSERT 0 1"
    assert rows(tpg, table) == 5


def test_unprobed_tls_follows_defaults_unparsed(tpg, tagent, tmp_path):
    """--no-tls stands for a TLS library dbwarden does not probe: the guard cannot read it."""
    closed = tmp_path / "closed.yaml"
    closed.write_text(POLICY)
    a = tagent("--no-tls", "--policy", str(closed))
    t0 = time.monotonic()
    res, _ = tpg.psql("-c", "SELECT 1", check=False, sslmode="require")
    assert res.returncode != 0 and time.monotonic() - t0 < 5
    # plaintext on the same port is still read, and so still allowed
    res, _ = tpg.psql("-c", "SELECT 1", check=False, sslmode="disable")
    assert res.returncode == 0, res.stderr
    evs = a.stop()
    resets = [e["alert"]["detail"] for e in evs.of("alert")
              if e["alert"]["kind"] == "connection_reset"]
    assert len(resets) == 1 and "does not probe" in resets[0]

    opened = tmp_path / "open.yaml"
    opened.write_text(POLICY.replace("unparsed: block", "unparsed: allow"))
    b = tagent("--no-tls", "--policy", str(opened))
    res, _ = tpg.psql("-c", "SELECT 1", check=False, sslmode="require")
    assert res.returncode == 0, res.stderr
    evs = b.stop()  # both runs: the file is shared, agent.seq goes on
    mine = evs[-1]["agent"]["instance"]
    unparsed = [e["alert"]["detail"] for e in evs.of("alert")
                if e["alert"]["kind"] == "connection_unparsed" and e["agent"]["instance"] == mine]
    assert unparsed == ["encrypted: no plaintext seen (TLS library not probed)"]
