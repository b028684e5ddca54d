# SPDX-License-Identifier: GPL-2.0-only
"""
MySQL / MariaDB capture with real clients (the mariadb command-line client,
PyMySQL text and executemany, libmariadb's binary protocol): one event per
statement, verbs, objects, outcomes (rows, errno, SQLSTATE), the session's
user and database, and no literal value in any event.
"""
import os
import subprocess
import uuid

import pymysql
import pytest

import events
from conftest import MariaDB, agents, helper, serve


@pytest.fixture(scope="module")
def my():
    yield from serve(MariaDB())


@pytest.fixture
def agent(tmp_path, my):
    yield from agents(tmp_path, my.port, proto="mysql")


@pytest.fixture
def table(my):
    name = f"m_{uuid.uuid4().hex[:8]}"
    my.sql_socket(f"CREATE TABLE shop.{name} (id int primary key, v varchar(64)); "
                  f"INSERT INTO shop.{name} VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e')")
    yield name
    my.sql_socket(f"DROP TABLE IF EXISTS shop.{name}")


def connect(my, **kw):
    args = dict(host="127.0.0.1", port=my.port, user="app", password="app-secret-pw",
                database="shop", autocommit=True)
    args.update(kw)
    return pymysql.connect(**args)


def test_mariadb_client_statements_one_event_each(my, agent, table):
    a = agent()
    sql = (f"SELECT v FROM {table} WHERE id = 4242001;\n"
           f"INSERT INTO {table} VALUES (77, 'lit_my_alice@example.com');\n"
           f"UPDATE `{table}` SET v = \"lit_my_dq\" WHERE id = 77;\n"
           f"SELECT * FROM {table} t JOIN {table} u ON t.id = u.id WHERE t.v <> 'lit_my_x';\n"
           f"DELETE FROM {table} WHERE id = 77;\n"
           f"SELECT * FROM no_such_table_here;\n")
    res, pid = my.client(input=sql, check=False)
    evs = a.stop()
    assert a.rc == 0
    st = [e for e in evs.statements(pid=pid) if "version_comment" not in e["statement"]["text"]]
    texts = [e["statement"]["text"] for e in st]
    assert texts == [
        f"SELECT v FROM {table} WHERE id = ?",
        f"INSERT INTO {table} VALUES (?, ?)",
        f"UPDATE `{table}` SET v = ? WHERE id = ?",
        f"SELECT * FROM {table} t JOIN {table} u ON t.id = u.id WHERE t.v <> ?",
        f"DELETE FROM {table} WHERE id = ?",
        "SELECT * FROM no_such_table_here",
    ], texts
    assert [e["statement"]["verb"] for e in st] == ["SELECT", "INSERT", "UPDATE", "SELECT",
                                                    "DELETE", "SELECT"]
    assert st[0]["statement"]["objects"] == [table]
    assert st[0]["outcome"]["status"] == "ok" and st[0]["outcome"]["rows"] == 0
    assert st[1]["outcome"]["rows"] == 1 and st[1]["outcome"]["tag"] == "OK"
    assert st[3]["outcome"]["rows"] == 6 and st[3]["outcome"]["tag"] == "ROWS"
    assert st[4]["outcome"]["rows"] == 1
    err = st[5]["outcome"]
    assert err["status"] == "error" and err["sqlstate"] == "42S02" and err["tag"] == "ERR 1146"
    for e in st:
        c = e["connection"]
        assert c["protocol"] == "mysql" and c["db_user"] == "root" and c["database"] == "shop"
        assert e["actor"]["pid"] == pid
        assert len(e["statement"]["fingerprint"]) == 16
    events.assert_no_literals(evs, ["4242001", "lit_my_alice", "example.com", "lit_my_dq",
                                    "lit_my_x"])
    events.assert_no_loss(evs, a)


def test_pymysql_text_executemany_and_multi_statements(my, agent, table):
    a = agent()
    conn = connect(my, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    cur = conn.cursor()
    cur.execute(f"SELECT id, v FROM {table} WHERE v IN (%s, %s) ORDER BY id",
                ("lit_py_in1", "e"))
    assert cur.fetchall() == ((5, "e"),)
    rows = [(100 + i, f"lit_many_{i:02d}") for i in range(10)]
    cur.executemany(f"INSERT INTO {table} (id, v) VALUES (%s, %s)", rows)
    cur.execute(f"SELECT 1; SELECT count(*) FROM {table}; UPDATE {table} SET v = 'lit_multi_u' "
                f"WHERE id > 100")
    while cur.nextset():
        pass
    with pytest.raises(pymysql.err.ProgrammingError):
        cur.execute(f"SELECT 1; SELEKT 'lit_bad_syntax'; SELECT 2")
        while cur.nextset():  # the error comes with the second result
            pass
    cur.execute("USE information_schema")
    cur.execute("SELECT 1")
    conn.close()
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    texts = [e["statement"]["text"] for e in st]
    assert f"SELECT id, v FROM {table} WHERE v IN (?, ?) ORDER BY id" in texts
    # executemany: one multi-row INSERT built by the client
    ins = [e for e in st if e["statement"]["verb"] == "INSERT"]
    assert len(ins) == 1 and ins[0]["outcome"]["rows"] == 10
    assert ins[0]["statement"]["text"].startswith(f"INSERT INTO {table} (id, v) VALUES (?, ?)")
    i = texts.index("SELECT ?")
    assert texts[i:i + 3] == ["SELECT ?", f"SELECT count(*) FROM {table}",
                              f"UPDATE {table} SET v = ? WHERE id > ?"]
    assert st[i + 1]["outcome"]["rows"] == 1 and st[i + 2]["outcome"]["rows"] == 9
    j = texts.index("SELEKT ?")
    assert st[j]["outcome"]["status"] == "error" and st[j]["outcome"]["sqlstate"] == "42000"
    assert st[j + 1]["outcome"]["status"] == "skipped"
    assert st[j - 1]["outcome"]["status"] == "ok"
    assert st[-1]["connection"]["database"] == "information_schema"
    assert st[0]["connection"]["db_user"] == "app"
    lits = [v for _, v in rows] + ["lit_py_in1", "lit_multi_u", "lit_bad_syntax",
                                   "app-secret-pw"]
    events.assert_no_literals(evs, lits)
    events.assert_no_loss(evs, a)


def test_prepared_statements_binary_protocol(my, agent, table):
    a = agent()
    r = subprocess.run([helper("mysql_prepared"), "127.0.0.1", str(my.port), "app",
                        "app-secret-pw", "shop", table], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    evs = a.stop()
    st = [e for e in evs.statements() if e["actor"]["comm"] == "mysql_prepared"]
    ex = [e for e in st if e["statement"]["mode"] == "extended"]
    assert [e["statement"]["text"] for e in ex] == [
        f"SELECT v FROM {table} WHERE id = ?",
        f"SELECT v FROM {table} WHERE id = ?",
        f"INSERT INTO {table} VALUES (?, ?)",
    ]
    assert ex[0]["statement"]["params"]["count"] == 1
    assert ex[0]["outcome"]["rows"] == 1 and ex[1]["outcome"]["rows"] == 0
    assert ex[2]["outcome"]["rows"] == 1
    assert ex[0]["statement"]["prepared"] == ex[1]["statement"]["prepared"]
    bad = [e for e in st if e["outcome"]["status"] == "error"]
    assert len(bad) == 1 and bad[0]["outcome"]["tag"] == "ERR 1146"
    events.assert_no_literals(evs, ["lit_prep_secret", "31337001"])
    events.assert_no_loss(evs, a)


def test_mysql_comments_and_quoting_normalized(my, agent, table):
    a = agent()
    conn = connect(my)
    cur = conn.cursor()
    cur.execute(f"SELECT /* lit_c1 */ id FROM {table} # lit_c2\n WHERE v = 'it''s lit_q1' "
                f"OR v = \"lit_q2 \\\" x\" -- lit_c3\n")
    cur.execute(f"SELECT /*!40001 SQL_NO_CACHE */ id, x'4142', _utf8mb4'lit_q3', 0x1F, "
                f"1.5e3 FROM `{table}` WHERE id = 1")
    conn.close()
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    texts = [e["statement"]["text"] for e in st]
    assert f"SELECT id FROM {table} WHERE v = ? OR v = ?" in texts
    assert f"SELECT SQL_NO_CACHE id, ?, ?, ?, ? FROM `{table}` WHERE id = ?" in texts
    events.assert_no_literals(evs, ["lit_c1", "lit_c2", "lit_c3", "lit_q1", "lit_q2",
                                    "lit_q3", "4142"])


MY_POLICY = """\
version: 1
defaults: {action: allow, unparsed: block}
targets:
  - {name: maria, protocol: mariadb, address: "127.0.0.1:%d", labels: {env: test}}
rules:
  - name: no-destructive-ddl
    match: {target: {env: test}, verb: [DROP, TRUNCATE]}
    action: block
    message: "destructive DDL is not allowed here"
  - name: delete-without-where
    match: {verb: [DELETE, UPDATE], without_where: true}
    action: block
  - name: no-flushall
    match: {verb: [FLUSHALL]}
    action: block
"""

BLOCKED = "blocked by dbwarden rule"

# MySQL spellings that must be blocked.
MY_EVASIONS = [
    ("DROP TABLE {t}", "no-destructive-ddl"),
    ("drop table `{t}`", "no-destructive-ddl"),
    ("dRoP\t\n TaBlE {t}", "no-destructive-ddl"),
    ("/* x */DROP/* y */TABLE {t}", "no-destructive-ddl"),
    ("DROP # comment\nTABLE {t}", "no-destructive-ddl"),
    ("DROP -- comment\nTABLE {t}", "no-destructive-ddl"),
    ("/*! DROP TABLE {t} */", "no-destructive-ddl"),
    ("/*!50000 DROP */ TABLE {t}", "no-destructive-ddl"),
    ("/*M! DROP TABLE {t} */", "no-destructive-ddl"),
    ("/* /* not nested in MySQL */ DROP TABLE {t}", "no-destructive-ddl"),
    ("SELECT 1--1\n; DROP TABLE {t}", "no-destructive-ddl"),
    ("SELECT 'a\\\\'; DROP TABLE {t}", "no-destructive-ddl"),
    ("SELECT \"x\"; TRUNCATE {t}", "no-destructive-ddl"),
    ("TRUNCATE TABLE shop.{t}", "no-destructive-ddl"),
    ("DELETE FROM {t}", "delete-without-where"),
    ("UPDATE {t} SET v = 'x'", "delete-without-where"),
    ("delete from `{t}` limit 1", "delete-without-where"),
]

MY_ALLOWED = [
    "SELECT 'DROP TABLE {t}'",
    "SELECT \"DROP TABLE {t}\"",
    "SELECT 1 AS `drop`",
    "SELECT 1 # DROP TABLE {t}",
    "SELECT 1 -- DROP TABLE {t}",
    "SELECT /* DROP TABLE {t} */ 1",
    "SELECT 'it\\'s; DROP TABLE {t}'",
    "SELECT 'a\\' ; DROP TABLE {t}; -- '",
    "DELETE FROM {t} WHERE id = 42",
    "UPDATE {t} SET v = 'y' WHERE id = 7",
    "INSERT INTO {t} VALUES (1000, 'drop table')",
    "SELECT count(*) FROM {t} WHERE v <> 'delete from x'",
    "SELECT $$DROP",
]


@pytest.fixture
def mpolicy(tmp_path, my):
    path = tmp_path / "policy.yaml"
    path.write_text(MY_POLICY % my.port)
    return str(path)


def test_guard_blocks_mysql_corpus_session_alive(my, agent, table, mpolicy):
    a = agent("--policy", mpolicy)
    conn = connect(my, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    cur = conn.cursor()
    for sql, rule in MY_EVASIONS:
        q = sql.format(t=table)
        with pytest.raises(pymysql.err.MySQLError) as ei:
            cur.execute(q)
            while cur.nextset():
                pass
        code, msg = ei.value.args[0], ei.value.args[1]
        assert code == 1142 and f"{BLOCKED} {rule}" in msg, (q, ei.value.args)
        # the session goes on, the table is still there
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone()[0] == 5, q
    for sql in MY_ALLOWED:
        q = sql.format(t=table)
        try:
            cur.execute(q)
            while cur.nextset():
                pass
        except pymysql.err.MySQLError as e:
            assert BLOCKED not in str(e), (q, e)
    conn.close()
    # the mariadb client reports the error and goes on with the next statement
    res, pid = my.client("--force", input=f"SELECT 1;\nDROP TABLE {table};\nSELECT 'still here';\n",
                         check=False)
    assert "ERROR 1142 (42000)" in res.stderr and BLOCKED in res.stderr, res.stderr
    assert "still here" in res.stdout
    evs = a.stop()
    st = evs.statements(pid=os.getpid())
    blocked = [e for e in st if e["decision"]["action"] == "block"]
    assert len(blocked) >= len(MY_EVASIONS)
    assert all(e["decision"]["enforced_by"] == "kernel" for e in blocked)
    # the message's first statement carries the error, the rest of it was never run
    assert all(e["outcome"]["status"] in ("error", "skipped") for e in blocked)
    counts = [e for e in st if e["statement"]["text"].startswith("SELECT count(*) FROM")]
    assert counts and all(e["decision"]["action"] == "allow" for e in counts)
    assert not [e for e in evs.of("alert") if e["alert"]["kind"] == "guard_mismatch"], \
        evs.of("alert")
    my.sql_socket(f"SELECT count(*) FROM shop.{table}")


def test_guard_blocks_prepare(my, agent, table, mpolicy):
    a = agent("--policy", mpolicy)
    r = subprocess.run([helper("mysql_prepared"), "127.0.0.1", str(my.port), "app",
                        "app-secret-pw", "shop", table], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr  # nothing of it is blocked
    r = subprocess.run([helper("mysql_prepared"), "127.0.0.1", str(my.port), "app",
                        "app-secret-pw", "shop", table, f"DELETE FROM {table}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"1142 42000 {BLOCKED} delete-without-where"), r.stdout
    evs = a.stop()
    st = [e for e in evs.statements() if e["actor"]["comm"] == "mysql_prepared"]
    # the prepare was rewritten: the statement prepared raises the rule's error when run
    ex = [e for e in st if e["statement"]["mode"] == "extended"]
    assert [e["decision"]["action"] for e in ex[:3]] == ["allow"] * 3
    assert ex[3]["statement"]["text"] == f"DELETE FROM {table}"
    assert ex[3]["outcome"]["status"] == "error" and ex[3]["outcome"]["tag"] == "ERR 1142"
    assert ex[3]["decision"]["action"] == "block"
    assert ex[3]["decision"]["rule"] == "delete-without-where"
    assert not [e for e in evs.of("alert") if e["alert"]["kind"] == "guard_mismatch"]
    my.sql_socket(f"SELECT count(*) FROM shop.{table}")


def test_policy_test_cli_reads_mysql(mpolicy):
    from conftest import DBW_BIN
    r = subprocess.run([DBW_BIN, "policy", "test", mpolicy, "--protocol", "mysql", "--sql",
                        "/*!50000 DELETE */ FROM `t` # where x"], capture_output=True, text=True)
    assert r.returncode == 0, r
    assert "verdict: block rule: delete-without-where" in r.stdout, r.stdout
    assert "statement: DELETE FROM `t` verb: DELETE" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def my_tls():
    yield from serve(MariaDB(ssl=True))


def test_tls_pymysql_captured_and_guarded(my_tls, tmp_path):
    """PyMySQL over TLS (Python's ssl: OpenSSL): plaintext from the probes, DROP refused."""
    import ssl
    path = tmp_path / "policy.yaml"
    path.write_text(MY_POLICY % my_tls.port)
    my_tls.sql_socket("CREATE TABLE IF NOT EXISTS shop.tls1 (id int primary key, v text); "
                      "INSERT IGNORE INTO shop.tls1 VALUES (1, 'a')")
    gen = agents(tmp_path, my_tls.port, proto="mysql")
    start = next(gen)
    try:
        a = start("--policy", str(path))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = connect(my_tls, ssl=ctx)
        cur = conn.cursor()
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]
        cur.execute("SELECT v FROM tls1 WHERE v = 'lit_tls_secret'")
        # a blocked write cannot be rewritten under TLS: dropped, the connection reset
        with pytest.raises(pymysql.err.MySQLError):
            cur.execute("DROP TABLE tls1")
        conn.close()
        evs = a.stop()
    finally:
        for _ in gen:
            pass
    st = evs.statements(pid=os.getpid())
    assert [e["statement"]["text"] for e in st] == [
        "SHOW STATUS LIKE ?", "SELECT v FROM tls1 WHERE v = ?", "DROP TABLE tls1"]
    assert all(e["connection"]["tls"] for e in st)
    assert st[2]["decision"]["action"] == "block" and st[2]["outcome"]["status"] == "blocked"
    assert st[0]["connection"]["db_user"] == "app"
    events.assert_no_literals(evs, ["lit_tls_secret"])
    my_tls.sql_socket("SELECT count(*) FROM shop.tls1")


def test_require_approval_for_mysql(my, agent, table, tmp_path):
    import re
    from conftest import DBW_BIN
    policy = tmp_path / "approval.yaml"
    policy.write_text("version: 1\nrules:\n  - name: wipe-needs-approval\n"
                      "    match: {verb: [DELETE], without_where: true}\n"
                      "    action: require_approval\n    message: ask a DBA\n")
    a = agent("--policy", str(policy))
    api = str(tmp_path / "api.sock")
    conn = connect(my)
    cur = conn.cursor()
    with pytest.raises(pymysql.err.MySQLError) as ei:
        cur.execute(f"DELETE FROM {table}")
    code, msg = ei.value.args
    m = re.search(r"approval id ([0-9a-f]{12}): blocked by dbwarden rule wipe-needs-approval: "
                  r"ask a DBA", msg)
    assert code == 1142 and m, ei.value.args
    ok = subprocess.run([DBW_BIN, "approve", m.group(1), "--socket", api], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    cur.execute(f"DELETE FROM {table}")
    assert cur.rowcount == 5
    conn.close()
    evs = a.stop()
    d = [e for e in evs.statements(pid=os.getpid()) if e["statement"]["verb"] == "DELETE"]
    assert [e["decision"]["action"] for e in d] == ["require_approval", "allow"]


def test_tls_mariadb_client_captured(my_tls, tmp_path):
    """The mariadb client over TLS (libmariadb on OpenSSL here)."""
    gen = agents(tmp_path, my_tls.port, proto="mysql")
    start = next(gen)
    try:
        a = start()
        cmd = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(my_tls.port), "-u",
               "app", "-papp-secret-pw", "-D", "shop", "--ssl", "--batch",
               "-e", "SHOW STATUS LIKE 'Ssl_version'; SELECT 'lit_tls_cli' AS x"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "TLS" in out
        evs = a.stop()
    finally:
        for _ in gen:
            pass
    st = evs.statements(pid=p.pid)
    texts = [e["statement"]["text"] for e in st]
    assert "SHOW STATUS LIKE ?" in texts and "SELECT ? AS x" in texts, texts
    assert all(e["connection"]["tls"] for e in st)
    events.assert_no_literals(evs, ["lit_tls_cli", "app-secret-pw"])
