# SPDX-License-Identifier: GPL-2.0-only
"""
Plaintext PostgreSQL capture with real clients: psql, psycopg2, SQLAlchemy,
libpq's extended protocol, COPY. Every statement yields exactly one event,
with its outcome and its actor, and no literal leaves the host.
"""
import os
import pwd
import subprocess

import psycopg2
import pytest

import events
from conftest import helper


def test_psql_c_multi_statement_one_event_each(pg, agent):
    a = agent()
    res, pid = pg.psql("-c", "SELECT 'lit_multi_a1' AS x; SELECT 4242001; SELECT 'lit_multi_a3'")
    evs = a.stop()
    assert a.rc == 0
    st = evs.statements(pid=pid)
    assert [e["statement"]["text"] for e in st] == ["SELECT $1 AS x", "SELECT $1", "SELECT $1"]
    for e in st:
        assert e["outcome"]["status"] == "ok"
        assert e["outcome"]["tag"] == "SELECT 1"
        assert e["outcome"]["rows"] == 1
        assert e["statement"]["mode"] == "simple"
        assert e["statement"]["verb"] == "SELECT"
        assert len(e["statement"]["fingerprint"]) == 16
        assert e["outcome"]["duration_us"] is not None
        act = e["actor"]
        assert act["pid"] == pid and act["comm"] == "psql" and act["uid"] == 0
        assert act["user"] == "root" and act["exe"].endswith("psql")
        assert e["connection"]["db_user"] == "postgres"
        assert e["connection"]["database"] == "postgres"
        assert e["connection"]["application_name"] == "psql"
        assert e["connection"]["server"] == f"127.0.0.1:{pg.port}"
    events.assert_no_literals(evs, ["lit_multi_a1", "4242001", "lit_multi_a3"])
    events.assert_no_loss(evs, a)


def test_psql_f_twenty_statements(pg, agent, tmp_path):
    sql = ["CREATE TABLE IF NOT EXISTS f20 (id int primary key, name text, price numeric)",
           "TRUNCATE f20"]
    lits = []
    for i in range(1, 15):
        lit = f"lit_f20_{i:02d}"
        lits.append(lit)
        sql.append(f"INSERT INTO f20 VALUES ({73190000 + i}, '{lit}', {i}.98765432)")
    sql += ["UPDATE f20 SET price = price * 2 WHERE name = 'lit_f20_upd'",
            "SELECT count(*) FROM f20 WHERE id > 73190005",
            "DELETE FROM f20 WHERE id = 73190014",
            "DROP TABLE f20"]
    assert len(sql) == 20
    path = tmp_path / "twenty.sql"
    path.write_text(";\n".join(sql) + ";\n")
    os.chmod(tmp_path, 0o755)
    a = agent()
    res, pid = pg.psql("-f", str(path))
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert len(st) == 20, [e["statement"]["text"] for e in st]
    verbs = [e["statement"]["verb"] for e in st]
    assert verbs == ["CREATE", "TRUNCATE"] + ["INSERT"] * 14 + ["UPDATE", "SELECT", "DELETE",
                                                                 "DROP"]
    assert all(e["outcome"]["status"] == "ok" for e in st)
    assert st[2]["statement"]["text"] == "INSERT INTO f20 VALUES ($1, $2, $3)"
    assert st[2]["statement"]["objects"] == ["f20"]
    assert st[2]["outcome"]["tag"] == "INSERT 0 1" and st[2]["outcome"]["rows"] == 1
    assert st[16]["outcome"]["rows"] == 0  # the UPDATE matched nothing
    assert st[17]["outcome"]["rows"] == 1 and st[18]["outcome"]["tag"] == "DELETE 1"
    # the same shape gives the same fingerprint whatever the literals
    assert len({e["statement"]["fingerprint"] for e in st[2:16]}) == 1
    # numbers long enough not to turn up by chance in ids, hashes or times
    events.assert_no_literals(evs, lits + ["lit_f20_upd", "73190005", "73190014", "98765432"])
    events.assert_no_loss(evs, a)


def test_psycopg2_params_bound_client_side(pg, agent):
    a = agent()
    conn = psycopg2.connect(pg.dsn() + " application_name=orders-svc")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE pyt (id int, email text)")
    cur.execute("INSERT INTO pyt VALUES (%s, %s)", (5550123, "alice.lit@example.org"))
    cur.execute("SELECT id FROM pyt WHERE email = %s", ("alice.lit@example.org",))
    assert cur.fetchall() == [(5550123,)]
    cur.execute("UPDATE pyt SET email = %s WHERE id IN %s", ("bob.lit@example.org", (5550123, 77)))
    conn.close()
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    texts = [e["statement"]["text"] for e in st]
    assert texts == ["CREATE TEMP TABLE pyt (id int, email text)",
                     "INSERT INTO pyt VALUES ($1, $2)",
                     "SELECT id FROM pyt WHERE email = $1",
                     "UPDATE pyt SET email = $1 WHERE id IN ($2, $3)"]
    assert st[2]["outcome"]["rows"] == 1
    assert st[3]["outcome"]["tag"] == "UPDATE 1"
    assert all(e["connection"]["application_name"] == "orders-svc" for e in st)
    assert all(e["actor"]["pid"] == os.getpid() for e in st)
    events.assert_no_literals(evs, ["5550123", "alice.lit", "bob.lit", "example.org"])


def test_libpq_extended_protocol(pg, agent):
    a = agent()
    client = helper("pq_client")

    procs = {}
    for mode in (["execparams"], ["prepared", "25"], ["pipeline", "10"], ["badprepare"]):
        p = subprocess.run([client, pg.dsn()] + mode, capture_output=True, text=True)
        procs[mode[0]] = p
    evs = a.stop()
    for name in ("execparams", "prepared", "pipeline"):
        assert procs[name].returncode == 0, procs[name].stderr

    def by_comm_conn(evs):
        groups = {}
        for e in evs.statements():
            if e["actor"]["comm"] == "pq_client":
                groups.setdefault(e["connection"]["id"], []).append(e)
        return list(groups.values())

    conns = by_comm_conn(evs)
    assert len(conns) == 4
    execp, prep, pipe, bad = conns
    # PQexecParams: one extended-protocol statement, values never in the event
    assert [e["statement"]["text"] for e in execp] == [
        "CREATE TEMP TABLE pq_t (id int, note text)", "INSERT INTO pq_t VALUES ($1, $2)"]
    ins = execp[1]
    assert ins["statement"]["mode"] == "extended"
    assert ins["statement"]["params"] == {"count": 2, "types": [23, 25]}
    assert ins["outcome"]["tag"] == "INSERT 0 1"
    # PQprepare + PQexecPrepared x25 = 25 events of the named statement
    assert len(prep) == 25
    for e in prep:
        assert e["statement"]["prepared"] == "ins"
        assert e["statement"]["text"] == "SELECT $1::int + $3, length($2::text)"
        assert e["outcome"]["rows"] == 1 and e["outcome"]["status"] == "ok"
    # pipeline mode: 10 queries sent before one Sync, answered in one stream
    assert len(pipe) == 10, [e["statement"]["text"] for e in pipe]
    for e in pipe:
        assert e["statement"]["text"] == "SELECT $1::int * $2"
        assert e["statement"]["mode"] == "extended"
        assert e["outcome"]["status"] == "ok" and e["outcome"]["rows"] == 1
    # a Parse the server rejects: one event with the SQLSTATE
    assert len(bad) == 1
    assert bad[0]["outcome"]["status"] == "error"
    assert bad[0]["outcome"]["sqlstate"] == "42601"
    events.assert_no_literals(evs, ["secret-token-PQX", "41119999", "70000003", "90000004"])
    events.assert_no_loss(evs, a)


def test_sqlalchemy_orm_crud(pg, agent):
    sqlalchemy = pytest.importorskip("sqlalchemy", reason="python3-sqlalchemy is a test dep")
    from sqlalchemy import Column, Integer, String, create_engine, select
    from sqlalchemy.orm import Session, declarative_base

    Base = declarative_base()

    class Customer(Base):
        __tablename__ = "customers_orm"
        id = Column(Integer, primary_key=True)
        email = Column(String(100))

    engine = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/postgres")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    # connections opened before the agent started are not watched: start afresh
    engine.dispose()
    a = agent()
    with Session(engine) as s:
        s.add(Customer(id=8800123, email="carol.lit@example.net"))
        s.commit()
        c = s.scalars(select(Customer).where(Customer.email == "carol.lit@example.net")).one()
        c.email = "dave.lit@example.net"
        s.commit()
        s.delete(c)
        s.commit()
    engine.dispose()
    evs = a.stop()
    Base.metadata.drop_all(create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/postgres"))
    st = evs.statements(pid=os.getpid())
    verbs = [e["statement"]["verb"] for e in st]
    for v in ("INSERT", "SELECT", "UPDATE", "DELETE"):
        assert v in verbs, verbs
    dml = [e for e in st if e["statement"]["verb"] in ("INSERT", "UPDATE", "DELETE")]
    assert all(e["statement"]["objects"] == ["customers_orm"] for e in dml), dml
    assert all(e["outcome"]["rows"] == 1 for e in dml)
    assert verbs.count("COMMIT") == 3
    events.assert_no_literals(evs, ["8800123", "carol.lit", "dave.lit"])


def test_copy_10000_rows_in_and_out(pg, agent):
    rows = "".join(f"{i}\tlit_copy_{i}\n" for i in range(10000))
    pg.psql("-c", "DROP TABLE IF EXISTS copyt; CREATE TABLE copyt (id int, v text)")
    a = agent()
    res, pid_in = pg.psql("-c", "COPY copyt FROM STDIN", input=rows)
    res, pid_out = pg.psql("-c", "COPY copyt TO STDOUT")
    evs = a.stop()
    assert res.stdout.count("\n") == 10000
    cin = evs.statements(pid=pid_in)
    cout = evs.statements(pid=pid_out)
    assert len(cin) == 1 and len(cout) == 1
    for e, tag in ((cin[0], "COPY 10000"), (cout[0], "COPY 10000")):
        assert e["statement"]["verb"] == "COPY" and e["statement"]["copy"] is True
        assert e["outcome"]["tag"] == tag and e["outcome"]["rows"] == 10000
        assert e["statement"]["objects"] == ["copyt"]
    events.assert_no_literals(evs, ["lit_copy_"])
    events.assert_no_loss(evs, a)
    pg.psql("-c", "DROP TABLE copyt")


def test_failing_statement_and_skipped_rest(pg, agent):
    a = agent()
    res, pid = pg.psql("-c", "SELECT 1 FROM no_such_table_x WHERE v = 'lit_fail'", check=False)
    assert "does not exist" in res.stderr
    res, pid2 = pg.psql("-c", "SELECT 'lit_ok1'; SELECT 1/0; SELECT 'lit_never'", check=False)
    assert "division by zero" in res.stderr
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert len(st) == 1
    assert st[0]["outcome"]["status"] == "error"
    assert st[0]["outcome"]["sqlstate"] == "42P01"
    assert st[0]["statement"]["objects"] == ["no_such_table_x"]
    st2 = evs.statements(pid=pid2)
    assert [e["outcome"]["status"] for e in st2] == ["ok", "error", "skipped"]
    assert st2[1]["outcome"]["sqlstate"] == "22012"
    events.assert_no_literals(evs, ["lit_fail", "lit_ok1", "lit_never"])


def test_one_megabyte_statement_is_truncated_and_counted(pg, agent):
    big = "SELECT length('" + "lit_big_" * (1 << 17) + "')"
    assert len(big) > 1 << 20
    a = agent()
    res, pid = pg.psql(input=big + ";\n")
    res2, pid2 = pg.psql("-c", "SELECT 'lit_after_big'")
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert len(st) == 1
    s = st[0]["statement"]
    assert s["truncated"] is True
    assert s["verb"] == "SELECT"  # read off the part that was captured
    assert s["bytes"] == len(big) + 1  # psql sends the ';' too
    assert st[0]["outcome"]["status"] == "ok" and st[0]["outcome"]["rows"] == 1
    assert len(evs.statements(pid=pid2)) == 1  # the next connection is unaffected
    events.assert_no_literals(evs, ["lit_big_", "lit_after_big"])
    events.assert_no_loss(evs, a)


def test_ipv6_loopback(pg, agent):
    a = agent()
    res, pid = pg.psql("-c", "SELECT 'lit_v6'", host="::1")
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert len(st) == 1
    assert st[0]["connection"]["server"] == f"[::1]:{pg.port}"
    assert st[0]["connection"]["client"].startswith("[::1]:")
    events.assert_no_literals(evs, ["lit_v6"])


def test_actor_is_the_real_client_uid(pg, agent):
    nobody = pwd.getpwnam("nobody")
    a = agent()
    res, pid = pg.psql("-c", "SELECT current_user", run_as="nobody")
    evs = a.stop()
    opens = [e for e in evs.of("connection_open") if e["actor"]["comm"] == "psql"]
    st = [e for e in evs.statements() if e["actor"]["comm"] == "psql"]
    assert len(st) == 1 and len(opens) == 1
    act = st[0]["actor"]
    # runuser forks psql: the pid we know is runuser's, psql is its child
    assert act["uid"] == nobody.pw_uid and act["user"] == "nobody"
    assert act["gid"] == nobody.pw_gid
    assert act["pid"] != pid and act["comm"] == "psql"
    with open(f"/proc/self/cgroup") as f:
        assert act["cgroup"].startswith("/")


def test_connection_lifecycle_and_clean_exit(pg, agent):
    a = agent()
    res, pid = pg.psql("-c", "SELECT 1", "-c", "SELECT 2")
    # the close is seen when the server's FIN arrives, a moment after psql exits
    a.wait_for(lambda evs: any(e["type"] == "connection_close" and e["actor"]["pid"] == pid
                               for e in evs))
    evs = a.stop()
    assert a.rc == 0
    assert len(a.prog_ids) >= 4
    assert events.loaded_progs(a.prog_ids) == [], "BPF programs left loaded after exit"
    mine = [e for e in evs if e.get("actor", {}).get("pid") == pid]
    assert [e["type"] for e in mine] == ["connection_open", "statement", "statement",
                                         "connection_close"]
    close = mine[-1]
    assert close["stats"]["statements"] == 2
    assert close["stats"]["bytes_to_server"] > 0 and close["stats"]["bytes_to_client"] > 0
    err = a.stderr()
    assert "dbwarden: ready: watching" in err and "kernel counters" in err
