# SPDX-License-Identifier: GPL-2.0-only
"""
Enforcement and audit across agent restarts: programs and maps pinned under
bpffs keep enforcing while no daemon runs, and the next daemon adopts them,
drains what they buffered and goes on with agent.seq.
"""
import json
import os
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest

import events
from conftest import DBW_BIN, Agent, MariaDB, Postgres, Redis, agents, free_port, scratch_table, serve


@pytest.fixture
def pin_dir():
    d = f"/sys/fs/bpf/dbw-test-{uuid.uuid4().hex[:8]}"
    yield d
    # whatever the test left: nothing of it stays attached
    if os.path.isdir(d):
        subprocess.run([DBW_BIN, "stop", "--unpin", "--pin-dir", d], capture_output=True)
    assert not os.path.exists(d)


@pytest.fixture
def start(tmp_path, pg):
    yield from agents(tmp_path, pg.port)


@pytest.fixture
def table(pg):
    yield from scratch_table(pg)


def policy_file(tmp_path, table):
    p = tmp_path / "policy.yaml"
    p.write_text(f"""version: 1
defaults: {{action: allow}}
rules:
  - name: keep-{table}
    match: {{verb: [DROP, TRUNCATE], objects: [{table}]}}
    action: block
""")
    return str(p)


def table_exists(pg, table):
    r, _ = pg.psql("-tAc", f"SELECT to_regclass('{table}') IS NOT NULL", host=pg.dir)
    return r.stdout.strip() == "t"


class Load:
    """Clients sending statements in a loop; counts what the server answered."""

    def __init__(self, pg, conns=3):
        self.pg = pg
        self.done = threading.Event()
        self.sent = [0] * conns
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(conns)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        try:
            c = psycopg2.connect(host="127.0.0.1", port=self.pg.port, user="postgres",
                                 dbname="postgres")
            c.autocommit = True
            cur = c.cursor()
            n = 0
            while not self.done.is_set():
                # the first client's statements are mostly in flight: the kill
                # falls between a request and its answer
                cur.execute(f"SELECT {i * 1000000 + n}" + (", pg_sleep(0.05)" if i == 0 else ""))
                assert cur.fetchone()[0] == i * 1000000 + n
                n += 1
                self.sent[i] = n
                time.sleep(0.002)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=60)
        return sum(self.sent)


def selects(evs):
    return [e for e in evs.of("statement") if e["statement"]["verb"] == "SELECT"]


def test_kill9_restart_accounts_every_statement(tmp_path, pg, pin_dir, start, table):
    """
    SIGKILL the daemon under a load of real clients, let statements (and a
    DROP) arrive while none runs, restart it: the DROP was blocked by the
    kernel all along, and every statement is an event or counted in a loss.
    """
    policy = policy_file(tmp_path, table)
    a = start("--pin-dir", pin_dir, "--policy", policy)
    load = Load(pg)
    time.sleep(1.0)
    a.kill()
    # no daemon now: the pinned programs keep enforcing
    r, _ = pg.psql("-c", f"DROP TABLE {table}", check=False)
    assert f"blocked by dbwarden rule keep-{table}" in r.stderr, r.stderr
    assert table_exists(pg, table)
    time.sleep(1.0)
    port = free_port()
    b = start("--pin-dir", pin_dir, "--policy", policy, "--metrics", f"127.0.0.1:{port}")
    assert "adopted the programs pinned in" in b.stderr()
    b.unclean = True
    st = json.loads(subprocess.run([DBW_BIN, "status", "--metrics", f"127.0.0.1:{port}",
                                    "--json"], capture_output=True, text=True,
                                   check=True).stdout)
    assert st["pinning"]["dir"] == pin_dir and st["pinning"]["adopted"] is True, st
    assert st["pinning"]["fail_mode"] == "open"
    time.sleep(1.0)
    sent = load.stop()
    assert not load.errors, load.errors
    b.wait_for(lambda evs: len(selects(evs)) >= sent - 50, timeout=20)
    time.sleep(0.5)
    evs = b.stop()

    seen = len(selects(evs))
    lost = sum(e["loss"]["count"] for e in evs.of("loss"))
    # what was read before the kill but not written is read again, not lost: every
    # loss here is a statement answered after the restart whose request the first
    # daemon had read
    assert all(e["loss"]["reason"] == "agent_restart" for e in evs.of("loss")), evs.of("loss")
    print(f"sent {sent} statements, {seen} events, {lost} counted lost")
    assert sent <= seen + lost, f"{sent - seen - lost} statements neither audited nor counted"
    assert seen + lost <= sent, "a statement both audited and counted lost, or audited twice"
    # the DROP sent while no daemon ran is in the audit, blocked
    drops = [e for e in evs.of("statement") if e["statement"]["verb"] == "DROP"]
    assert len(drops) == 1, drops
    assert drops[0]["outcome"]["sqlstate"] == "42501", drops
    assert drops[0]["decision"]["action"] == "block", drops
    assert drops[0]["decision"]["enforced_by"] == "kernel", drops
    assert drops[0]["decision"]["rule"] == f"keep-{table}"
    # seq goes on from the first run: increasing, and a gap only with the unclean alert
    seqs = [e["agent"]["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(e.get("alert", {}).get("kind") == "unclean_restart" for e in evs.of("alert"))


def test_second_daemon_refused(tmp_path, pg, pin_dir, start):
    start("--pin-dir", pin_dir)
    r = subprocess.run([DBW_BIN, "run", "--port", f"{pg.port}=postgres", "--pin-dir", pin_dir,
                        "--state-dir", str(tmp_path / "second"),
                        "--output", f"file:{tmp_path}/second.jsonl"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"another dbwarden agent (pid" in r.stderr and pin_dir in r.stderr, r.stderr


def test_fail_mode_closed_refuses_while_down(tmp_path, pg, pin_dir, start, table):
    """
    --fail-mode closed: while no daemon runs, statements on connections with
    rules are refused in-protocol with a clear message, and new connections
    to the port are refused; open (the default) keeps only the policy's blocks.
    """
    policy = policy_file(tmp_path, table)
    a = start("--pin-dir", pin_dir, "--policy", policy, "--fail-mode", "closed")
    c = psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres")
    c.autocommit = True
    cur = c.cursor()
    cur.execute("SELECT 41 + 1")
    assert cur.fetchone()[0] == 42
    a.kill()
    time.sleep(5.5)  # DBW_AGENT_STALE_NS: the kernel calls a silent daemon gone
    with pytest.raises(psycopg2.Error) as e:
        cur.execute("SELECT 41 + 1")
    assert e.value.pgcode == "42501"
    assert "fail-mode closed" in str(e.value) and "no dbwarden agent is running" in str(e.value)
    r, _ = pg.psql("-tAc", "SELECT 41 + 1", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    # a restarted daemon lifts it at once, and reports the refusal
    b = start("--pin-dir", pin_dir, "--policy", policy, "--fail-mode", "closed")
    b.unclean = True
    cur.execute("SELECT 41 + 1")
    assert cur.fetchone()[0] == 42
    r, _ = pg.psql("-tAc", "SELECT 41 + 1")
    assert r.stdout.strip() == "42"
    c.close()
    evs = b.stop()
    refused = [e for e in evs.of("statement")
               if e["decision"]["action"] == "block" and e["statement"]["verb"] == "SELECT"]
    assert len(refused) == 1, refused
    assert refused[0]["decision"].get("reason") == "fail_closed", refused[0]["decision"]
    assert refused[0]["outcome"]["sqlstate"] == "42501"


def test_fail_mode_open_and_clean_stop(tmp_path, pg, pin_dir, start, table):
    """
    The default (open): after a clean stop the kernel still blocks the
    policy's DROP but lets everything else through; `stop --unpin` removes
    every pinned object and detaches the programs.
    """
    policy = policy_file(tmp_path, table)
    a = start("--pin-dir", pin_dir, "--policy", policy)
    ids = a.prog_ids
    a.stop()
    assert a.rc == 0
    assert "keep enforcing the last policy" in a.stderr()
    assert os.path.exists(os.path.join(pin_dir, "link_sockops"))
    r, _ = pg.psql("-tAc", "SELECT 6 * 7")
    assert r.stdout.strip() == "42"
    r, _ = pg.psql("-c", f"DROP TABLE {table}", check=False)
    assert f"blocked by dbwarden rule keep-{table}" in r.stderr, r.stderr
    assert table_exists(pg, table)
    r = subprocess.run([DBW_BIN, "stop", "--unpin", "--pin-dir", pin_dir],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "removed" in r.stdout
    assert not os.path.exists(pin_dir)
    assert not events.loaded_progs(ids), "programs still loaded after stop --unpin"
    r, _ = pg.psql("-c", f"DROP TABLE {table}")  # nothing enforces any more
    assert not table_exists(pg, table)


def test_stop_signals_the_daemon(tmp_path, pg, pin_dir, start):
    a = start("--pin-dir", pin_dir)
    r = subprocess.run([DBW_BIN, "stop", "--pin-dir", pin_dir], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"stopped dbwarden (pid {a.proc.pid})" in r.stdout
    assert a.proc.wait(timeout=10) == 0
    r = subprocess.run([DBW_BIN, "stop", "--pin-dir", pin_dir], capture_output=True, text=True)
    assert r.returncode == 1 and "no agent is running" in r.stderr


@pytest.fixture(scope="module")
def tpg():
    yield from serve(Postgres(ssl=True))


def test_tls_while_down_counted_and_refused_closed(tmp_path, tpg, pin_dir):
    """
    The TLS library probes go with the daemon: a TLS write while none runs
    is not seen in plaintext. It passes (a dropped ciphertext write would
    leave the client waiting) and is counted: a loss event after the
    restart. Under --fail-mode closed a new connection is refused at once.
    """
    tbl = f"t_{uuid.uuid4().hex[:8]}"
    tpg.psql("-c", f"CREATE TABLE {tbl} (id int)", host=tpg.dir)
    gen = agents(tmp_path, tpg.port)
    start = next(gen)
    try:
        policy = policy_file(tmp_path, tbl)
        a = start("--pin-dir", pin_dir, "--policy", policy, "--fail-mode", "closed")
        dsn = dict(host="127.0.0.1", port=tpg.port, user="postgres", dbname="postgres",
                   sslmode="require", connect_timeout=10)
        c = psycopg2.connect(**dsn)
        c.autocommit = True
        cur = c.cursor()
        cur.execute("SELECT 1")
        a.kill()
        time.sleep(5.5)  # DBW_AGENT_STALE_NS
        cur.execute("SELECT 2")
        assert cur.fetchone()[0] == 2
        t0 = time.time()
        with pytest.raises(psycopg2.OperationalError) as e:
            psycopg2.connect(**dsn)
        assert "Operation not permitted" in str(e.value) and time.time() - t0 < 5
        b = start("--pin-dir", pin_dir, "--policy", policy, "--fail-mode", "closed")
        b.unclean = True
        evs = b.wait_for(lambda evs: any(e["loss"]["reason"] == "agent_down_tls"
                                         for e in evs.of("loss")), timeout=10)
        loss = [e["loss"] for e in evs.of("loss") if e["loss"]["reason"] == "agent_down_tls"]
        assert loss[0]["counter"] == "down_tls_writes" and loss[0]["count"] >= 1, loss
        c.close()
        b.stop()
    finally:
        for _ in gen:
            pass
        tpg.psql("-c", f"DROP TABLE IF EXISTS {tbl}", host=tpg.dir)


def test_adopted_under_the_daemonsets_capabilities(tmp_path, pg, pin_dir):
    """Pinning and adopting need nothing beyond the capabilities the DaemonSet grants."""
    from test_deploy import CAPS, capped

    a = Agent(str(tmp_path), pg.port, ("--pin-dir", pin_dir), prefix=capped(CAPS))
    b = None
    try:
        a.kill()
        b = Agent(str(tmp_path), pg.port, ("--pin-dir", pin_dir), prefix=capped(CAPS))
        b.unclean = True
        assert "adopted the programs pinned in" in b.stderr()
        r, _ = pg.psql("-tAc", "SELECT 'capped'")
        b.wait_for(lambda evs: any(e["statement"]["verb"] == "SELECT"
                                   for e in evs.of("statement")))
        b.stop()
        assert b.rc == 0
    finally:
        a.kill()
        if b:
            b.kill()
    assert os.path.exists(os.path.join(pin_dir, "link_sockops"))


def test_another_build_replaces_the_pins(tmp_path, pg, pin_dir, start):
    """
    An upgrade: what is pinned comes from another build (its digest in
    agent_meta differs), so the new agent replaces it instead of adopting
    maps whose layout may differ, and watches new connections itself.
    """
    a = start("--pin-dir", pin_dir)
    a.stop()
    meta = os.path.join(pin_dir, "agent_meta")
    cur = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "pinned", meta],
                                    capture_output=True, text=True, check=True).stdout)
    value = [int(b, 16) for b in cur[0]["value"]]
    value[24] ^= 0xff  # dbw_agent_meta.build: another build's digest
    subprocess.run(["bpftool", "map", "update", "pinned", meta, "key", "0", "0", "0", "0",
                    "value", *[str(b) for b in value]], check=True)
    b = start("--pin-dir", pin_dir)
    assert "holds the programs of another dbwarden build: replacing them" in b.stderr()
    assert "adopted" not in b.stderr()
    pg.psql("-tAc", "SELECT 'after the upgrade'")
    b.wait_for(lambda evs: any(e["type"] == "statement" for e in evs))
    b.stop()


@pytest.fixture(scope="module")
def rds():
    yield from serve(Redis())


def test_redis_connection_goes_on_across_a_restart(tmp_path, rds, pin_dir):
    """A Redis client's connection outlives the daemon: every command is audited once."""
    import redis

    gen = agents(tmp_path, rds.port, proto="redis")
    start = next(gen)
    try:
        a = start("--pin-dir", pin_dir)
        r = redis.Redis(host="127.0.0.1", port=rds.port)
        for i in range(50):
            r.set(f"restart:{i}", "v")
        a.kill()
        for i in range(50):
            r.get(f"restart:{i}")
        b = start("--pin-dir", pin_dir)
        b.unclean = True
        for i in range(50):
            r.delete(f"restart:{i}")
        r.close()
        evs = b.wait_for(lambda evs: len([e for e in evs.of("statement")
                                          if e["statement"]["verb"] == "DEL"]) == 50)
        verbs = [e["statement"]["verb"] for e in evs.of("statement")
                 if e["statement"]["objects"] and
                 e["statement"]["objects"][0].startswith("restart:")]
        lost = sum(e["loss"]["count"] for e in evs.of("loss"))
        assert verbs.count("SET") + verbs.count("GET") + lost >= 100, (verbs, lost)
        assert verbs.count("GET") >= 49 and verbs.count("DEL") == 50
        conns = {e["connection"]["id"] for e in evs.of("statement")
                 if e["statement"]["verb"] in ("GET", "DEL")}
        assert len(conns) == 1
        ev = [e for e in evs.of("statement") if e["statement"]["verb"] == "DEL"][0]
        assert ev["connection"]["client"] and ev["connection"]["protocol"] == "redis"
        b.stop()
    finally:
        for _ in gen:
            pass


@pytest.fixture(scope="module")
def mdb():
    yield from serve(MariaDB())


def test_mysql_connection_goes_on_across_a_restart(tmp_path, mdb, pin_dir):
    """A PyMySQL connection outlives the daemon: every statement is an event or a counted loss."""
    import pymysql

    gen = agents(tmp_path, mdb.port, proto="mysql")
    start = next(gen)
    try:
        a = start("--pin-dir", pin_dir)
        c = pymysql.connect(host="127.0.0.1", port=mdb.port, user="app",
                            password="app-secret-pw", database="shop", autocommit=True)
        cur = c.cursor()
        for i in range(50):
            cur.execute(f"SELECT {i} AS before_kill")
        a.kill()
        for i in range(50):
            cur.execute(f"SELECT {i} AS while_down")
        b = start("--pin-dir", pin_dir)
        b.unclean = True
        for i in range(50):
            cur.execute(f"SELECT {i} AS after_restart")
        c.close()
        evs = b.wait_for(lambda evs: sum(e["statement"]["text"].endswith("after_restart")
                                         for e in evs.of("statement")) == 50)
        sel = [e for e in evs.of("statement") if e["statement"]["verb"] == "SELECT"]
        lost = sum(e["loss"]["count"] for e in evs.of("loss"))
        assert len(sel) + lost == 150 and lost <= 1, (len(sel), lost)
        assert all(e["connection"]["client"] and e["connection"]["protocol"] == "mysql"
                   for e in sel)
        assert len({e["connection"]["id"] for e in sel}) == 1
        b.stop()
    finally:
        for _ in gen:
            pass
