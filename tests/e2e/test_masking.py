# SPDX-License-Identifier: GPL-2.0-only
"""
Masking end to end. Audit side: no value a detector flags reaches an event
in any statement_text mode but raw (statement text, server error messages
and details). Result side: a client whose actor a masking rule selects
reads masked values from a real PostgreSQL, masked in the kernel; any other
client reads the real ones, byte for byte.
"""
import os

import psycopg2
import pytest

import events

# Realistic PII, each caught by a built-in detector.
EMAIL = "jane.doe+lit@example.com"
CARD = "4111 1111 1111 1111"
SSN = "123-45-6789"
PHONE = "+1 415 555 0142"
IBAN = "DE89370400440532013000"
AWS = "AKIAIOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlX2xpdA"
PII = [EMAIL, CARD, SSN, PHONE, IBAN, AWS, JWT]


def policy_file(tmp_path, body):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n" + body)
    return str(path)


@pytest.fixture
def pii_table(pg):
    """A table with a unique email column: its violation echoes the value."""
    name = "m_people"
    pg.psql("-c", f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} "
                  "(id int primary key, email text unique, card text, note text)",
            host=pg.dir)
    pg.psql("-c", f"INSERT INTO {name} VALUES (1, '{EMAIL}', '{CARD}', 'first')", host=pg.dir)
    yield name
    pg.psql("-c", f"DROP TABLE IF EXISTS {name}", host=pg.dir)


def run_pii_statements(pg, table):
    """Statements carrying every kind of PII, and errors that echo it. Returns psql's pid."""
    sql = [
        f"SELECT '{EMAIL}' AS e, '{CARD}' AS c, '{SSN}' AS s, 'lit_keep_me' AS k",
        f"SELECT '{PHONE}', '{IBAN}', '{AWS}', '{JWT}'",
        # the unique violation's detail quotes the email
        f"INSERT INTO {table} VALUES (2, '{EMAIL}', 'x', 'dup')",
        # the error message quotes the value
        f"SELECT '{SSN}'::int",
        "ALTER ROLE postgres PASSWORD 'lit_hunter2_pw'",
    ]
    res, pid = pg.psql(*[a for s in sql for a in ("-c", s)], check=False)
    assert "duplicate key" in res.stderr and "invalid input syntax" in res.stderr, res.stderr
    return pid


def test_normalized_default_errors_exported_without_values(pg, agent, pii_table, tmp_path):
    a = agent()
    pid = run_pii_statements(pg, pii_table)
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert len(st) == 5
    assert st[0]["statement"]["text"] == "SELECT $1 AS e, $2 AS c, $3 AS s, $4 AS k"
    dup = st[2]["outcome"]
    assert dup["sqlstate"] == "23505"
    assert dup["message"] == 'duplicate key value violates unique constraint "?"'
    assert dup["detail"] == "Key (email)=(?) already exists."
    assert st[3]["outcome"]["message"] == 'invalid input syntax for type integer: "?"'
    assert st[0]["outcome"]["message"] is None and st[0]["outcome"]["detail"] is None
    events.assert_no_literals(evs, PII + ["lit_keep_me", "lit_hunter2_pw", "jane.doe"])


def test_masked_mode_keeps_literals_masks_detected(pg, agent, pii_table, tmp_path):
    pol = policy_file(tmp_path, """\
masking:
  statement_text: masked
  custom:
    - {name: employee_id, regex: 'EMP-[0-9]{6}'}
""")
    a = agent("--policy", pol)
    pid = run_pii_statements(pg, pii_table)
    res, pid2 = pg.psql("-c", "SELECT 'EMP-123456' AS emp, 'EMP-12' AS short")
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert [e["statement"]["text"] for e in st] == [
        "SELECT '<email>' AS e, '<credit_card>' AS c, '<ssn>' AS s, 'lit_keep_me' AS k",
        "SELECT '<phone>', '<iban>', '<aws_key>', '<jwt>'",
        f"INSERT INTO {pii_table} VALUES (2, '<email>', 'x', 'dup')",
        "SELECT '<ssn>'::int",
        "ALTER ROLE postgres PASSWORD '<password>'",
    ]
    assert st[2]["outcome"]["detail"] == "Key (email)=(<email>) already exists."
    assert st[3]["outcome"]["message"] == 'invalid input syntax for type integer: "<ssn>"'
    assert evs.statements(pid=pid2)[0]["statement"]["text"] == \
        "SELECT '<employee_id>' AS emp, 'EMP-12' AS short"
    events.assert_no_literals(evs, PII + ["lit_hunter2_pw", "EMP-123456"])
    assert b"lit_keep_me" in evs.raw


def test_raw_mode_is_an_explicit_opt_in(pg, agent, pii_table, tmp_path):
    pol = policy_file(tmp_path, "masking: {statement_text: raw}\n")
    a = agent("--policy", pol)
    pid = run_pii_statements(pg, pii_table)
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert st[0]["statement"]["text"] == \
        f"SELECT '{EMAIL}' AS e, '{CARD}' AS c, '{SSN}' AS s, 'lit_keep_me' AS k"
    assert st[2]["outcome"]["detail"] == f"Key (email)=({EMAIL}) already exists."


def test_extended_protocol_error_detail_masked(pg, agent, pii_table, tmp_path):
    a = agent()
    conn = psycopg2.connect(pg.dsn())
    cur = conn.cursor()
    with pytest.raises(psycopg2.errors.UniqueViolation):
        cur.execute(f"INSERT INTO {pii_table} VALUES (%s, %s, %s, %s)", (3, EMAIL, CARD, "n"))
    conn.rollback()
    conn.close()
    evs = a.stop()
    err = [e for e in evs.statements(pid=os.getpid()) if e["outcome"]["status"] == "error"]
    assert err and err[0]["outcome"]["detail"] == "Key (email)=(?) already exists."
    events.assert_no_literals(evs, PII)


# ---- result masking -------------------------------------------------------------------

# per run: another checkout's suite may run at the same time, and its cleanup
# moves the processes of cgroups it made back to the root
_RUN = f"/dbw-mask-{os.getpid()}"
MASKED_CG = f"{_RUN}/agent"
OTHER_CG = f"{_RUN}/other"

RESULT_POLICY = f"""\
masking:
  results:
    - name: pii-for-agents
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [email, card, people.ssn]
      detectors: [email, credit_card]
      style: stars
      on_unmaskable: UNMASKABLE
"""


@pytest.fixture
def cgroups():
    from workloads import cgroups_made
    yield from cgroups_made(MASKED_CG, OTHER_CG)


@pytest.fixture
def people(pg):
    """Realistic PII: 20 people, one of each kind per row."""
    name = "m_people_r"
    rows = []
    for i in range(1, 21):
        card = ["4111111111111111", "5555555555554444", "378282246310005"][i % 3]
        rows.append((i, f"user{i}.name@example{i % 4}.com", card, f"{100 + i:03d}-45-{6789 + i}",
                     f"+1 415 555 {1000 + i}", f"note {i}: call back"))
    vals = ", ".join("(%d, '%s', '%s', '%s', '%s', '%s')" % r for r in rows)
    pg.psql("-c", f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int, email text, "
                  f"card text, ssn text, phone text, note text); INSERT INTO {name} VALUES {vals}",
            host=pg.dir)
    yield name, rows
    pg.psql("-c", f"DROP TABLE IF EXISTS {name}", host=pg.dir)


def stars(v):
    return "*" * len(v)


def masked_row(r):
    """What a masked client must see of a people row: email, card, ssn by name."""
    i, email, card, ssn, phone, note = r
    return (str(i), stars(email), stars(card), stars(ssn), phone, note)


def psql_rows(res):
    return [tuple(line.split("|")) for line in res.stdout.splitlines() if line]


def test_psql_masked_by_column_name_other_client_untouched(pg, agent, cgroups, people, tmp_path):
    from workloads import psql_in
    name, rows = people
    a = agent("--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block")))
    q = f"SELECT id, email, card, ssn, phone, note FROM {name} ORDER BY id"
    res, _ = psql_in(cgroups, MASKED_CG, pg, "-At", "-c", q, "-c", "SELECT 'alive'")
    assert res.returncode == 0, res.stderr
    out = psql_rows(res)
    assert out[:-1] == [masked_row(r) for r in rows]
    assert out[-1] == ("alive",)
    res, _ = psql_in(cgroups, OTHER_CG, pg, "-At", "-c", q)
    assert psql_rows(res) == [tuple(str(x) for x in r) for r in rows]
    evs = a.stop()
    assert a.rc == 0
    events.assert_no_loss(evs, a)
    sel = [e for e in evs.statements() if e["statement"]["text"].startswith("SELECT id, email")]
    assert len(sel) == 2
    masked = [e for e in sel if "masking" in e]
    assert len(masked) == 1 and masked[0]["actor"]["cgroup"] == MASKED_CG
    m = masked[0]["masking"]
    assert m["applied"] and m["rows"] == 20 and m["fields_masked"] == 60
    assert m["fields_unmasked"] == 0
    closes = [e for e in evs.of("connection_close") if "masking" in e["stats"]]
    assert [e["stats"]["masking"]["fields_masked"] for e in closes] == [60]
    # the other client's connection never carried the masking program
    assert not [e for e in evs.statements() if e["actor"]["cgroup"] == OTHER_CG and "masking" in e]


def py_in(cgroups, rel, code):
    """Run /usr/bin/python3 -c code inside cgroup rel (moved before it starts). Returns stdout."""
    import subprocess
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh", "/usr/bin/python3", "-c", code],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd="/")
    try:
        cgroups.move(p.pid, rel)
        out, err = p.communicate("go\n", timeout=300)
    except BaseException:
        p.kill()
        p.wait()
        raise
    assert p.returncode == 0, err
    return out


PSYCOPG2 = """
import json, psycopg2
conn = psycopg2.connect(%r)
cur = conn.cursor()
out = {}
cur.execute("SELECT id, email, card, ssn, phone, note FROM %s ORDER BY id")
out["rows"] = cur.fetchall()
# a renamed column and an aggregate: the column names do not say email; the values do
cur.execute("SELECT max(email), min(card), email AS contact FROM %s GROUP BY email ORDER BY 3 LIMIT 2")
out["renamed"] = cur.fetchall()
cur.execute("SELECT 'someone@example.org' AS note, '4111-1111-1111-1111' AS ref, 'x@y' AS notmail, "
            "'4111111111111112' AS badluhn")
out["literals"] = cur.fetchall()
# parameters through the extended protocol of psycopg2's server-side cursors
cur2 = conn.cursor(name="srv")
cur2.execute("SELECT email FROM %s WHERE id <= %%s ORDER BY id", (3,))
out["server_cursor"] = cur2.fetchall()
cur2.close()
conn.commit()
cur.execute("SELECT count(*) FROM %s")
out["count"] = cur.fetchall()
print(json.dumps(out))
"""


def test_psycopg2_names_renamed_and_aggregates(pg, agent, cgroups, people, tmp_path):
    import json
    name, rows = people
    a = agent("--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block")))
    code = PSYCOPG2 % (pg.dsn(), name, name, name, name)
    got = json.loads(py_in(cgroups, MASKED_CG, code))
    assert [tuple(r) for r in got["rows"]] == \
        [(r[0], stars(r[1]), stars(r[2]), stars(r[3]), r[4], r[5]) for r in rows]
    for mx, mn, contact in got["renamed"]:
        assert set(mx) == {"*"} and set(mn) == {"*"} and set(contact) == {"*"}
    assert got["literals"] == [["*" * 19, "*" * 19, "x@y", "4111111111111112"]]
    assert got["server_cursor"] == [[stars(r[1])] for r in rows[:3]]
    assert got["count"] == [[20]]
    plain = json.loads(py_in(cgroups, OTHER_CG, code))
    assert [tuple(r) for r in plain["rows"]] == [tuple(r) for r in rows]
    assert plain["literals"] == [["someone@example.org", "4111-1111-1111-1111", "x@y",
                                  "4111111111111112"]]
    evs = a.stop()
    events.assert_no_loss(evs, a)


SQLALCHEMY = """
import json
import sqlalchemy as sa
eng = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:%d/postgres")
meta = sa.MetaData()
t = sa.Table(%r, meta, autoload_with=eng)
with eng.connect() as c:
    rows = c.execute(sa.select(t.c.id, t.c.email, t.c.phone, t.c.card).order_by(t.c.id)).all()
    agg = c.execute(sa.select(sa.func.max(t.c.email).label("top"))).scalar()
print(json.dumps({"rows": [list(r) for r in rows], "agg": agg}))
"""


def test_sqlalchemy_orm_reads_masked(pg, agent, cgroups, people, tmp_path):
    import json
    name, rows = people
    a = agent("--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block")))
    got = json.loads(py_in(cgroups, MASKED_CG, SQLALCHEMY % (pg.port, name)))
    assert got["rows"] == [[r[0], stars(r[1]), r[4], stars(r[2])] for r in rows]
    assert set(got["agg"]) == {"*"}
    plain = json.loads(py_in(cgroups, OTHER_CG, SQLALCHEMY % (pg.port, name)))
    assert plain["rows"] == [[r[0], r[1], r[4], r[2]] for r in rows]
    a.stop()


def test_styles_keep_last4_and_token(pg, agent, cgroups, people, tmp_path):
    from workloads import psql_in
    name, rows = people
    pol = f"""\
masking:
  results:
    - name: cards
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [card]
      style: keep_last4
    - name: mails
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [email]
      style: token
"""
    a = agent("--policy", policy_file(tmp_path, pol))
    res, _ = psql_in(cgroups, MASKED_CG, pg, "-At", "-c",
                     f"SELECT card, email, ssn FROM {name} ORDER BY id")
    assert psql_rows(res) == [("*" * (len(r[2]) - 4) + r[2][-4:], "X" * len(r[1]), r[3])
                              for r in rows]
    a.stop()


def test_100k_rows_byte_exact(pg, agent, cgroups, tmp_path):
    from workloads import psql_in
    name = "m_big"
    pg.psql("-c", f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} AS SELECT g AS id, "
                  "'user' || g || '@example.com' AS email, "
                  "lpad((g * 7919)::text, 16, '4') AS card, 'note ' || g AS note "
                  "FROM generate_series(1, 100000) g", host=pg.dir)
    try:
        a = agent("--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block")))
        q = f"SELECT id, email, card, note FROM {name} ORDER BY id"
        res, _ = psql_in(cgroups, MASKED_CG, pg, "-At", "-c", q)
        assert res.returncode == 0, res.stderr
        out = res.stdout.splitlines()
        assert len(out) == 100000
        overmasked = 0
        for g, line in zip(range(1, 100001), out):
            email = f"user{g}@example.com"
            card = str(g * 7919).rjust(16, "4")
            want = f"{g}|{stars(email)}|{stars(card)}|"
            assert line.startswith(want), (g, line, want)
            note, got = f"note {g}", line[len(want):]
            if got != note:
                # a text value cut by an skb boundary while it could still be an email:
                # its first part was masked before the rest arrived (counted below)
                k = len(got) - len(got.lstrip("*"))
                assert 0 < k < len(note) and got == "*" * k + note[k:], (g, got)
                overmasked += 1
        res, _ = psql_in(cgroups, OTHER_CG, pg, "-At", "-c", q)
        out = res.stdout.splitlines()
        assert len(out) == 100000
        assert out[0] == "1|user1@example.com|4444444444447919|note 1"
        assert out[-1] == f"100000|user100000@example.com|{str(791900000).rjust(16, '4')}|note 100000"
        evs = a.stop()
        events.assert_no_loss(evs, a)
        m = [e["masking"] for e in evs.statements() if "masking" in e]
        assert m and m[0]["rows"] == 100000 and m[0]["fields_masked"] == 200000
        assert m[0]["overmasked"] == overmasked and m[0]["fields_unmasked"] == 0
        print(f"100k rows: {overmasked} values overmasked at skb boundaries")
    finally:
        pg.psql("-c", f"DROP TABLE IF EXISTS {name}", host=pg.dir)


@pytest.fixture(scope="module")
def tpg():
    from conftest import Postgres, serve
    yield from serve(Postgres(ssl=True))


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_tls_connection_of_masked_actor(tpg, tmp_path, cgroups, unmaskable):
    from conftest import agents
    from workloads import psql_in
    start = agents(tmp_path, tpg.port)
    a = next(start)(
        "--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", unmaskable)))
    try:
        q = f"SELECT '{EMAIL}' AS email, 'lit_tls_plain' AS note"
        env = ("env", "PGSSLMODE=require")
        res, _ = psql_in(cgroups, MASKED_CG, tpg, "-At", "-c", q, prefix=env)
        if unmaskable == "block":
            assert res.returncode != 0
            # libpq 15.8+ no longer prints what a server says during the SSL exchange
            assert ("results are masked for this client; an encrypted connection cannot be "
                    "masked" in res.stderr or
                    "server sent an error response during SSL exchange" in res.stderr), \
                res.stderr
            # libpq's default, prefer, does not fall back to plaintext after an error
            res, _ = psql_in(cgroups, MASKED_CG, tpg, "-At", "-c", q,
                             prefix=("env", "PGSSLMODE=prefer"))
            assert res.returncode != 0 and EMAIL not in res.stdout
        else:
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == f"{EMAIL}|lit_tls_plain"
        # a client no rule selects: TLS as usual
        res, _ = psql_in(cgroups, OTHER_CG, tpg, "-At", "-c", q, prefix=env)
        assert res.returncode == 0 and res.stdout.strip() == f"{EMAIL}|lit_tls_plain"
        # plaintext from the masked actor still works, masked
        res, _ = psql_in(cgroups, MASKED_CG, tpg, "-At", "-c", q,
                         prefix=("env", "PGSSLMODE=disable"))
        assert res.stdout.strip() == f"{stars(EMAIL)}|lit_tls_plain", res.stderr
        evs = a.stop()
    finally:
        a.kill()
    alerts = [e["alert"]["detail"] for e in evs.of("alert")
              if e["alert"]["kind"] == "mask_unmaskable"]
    assert len(alerts) == (2 if unmaskable == "block" else 1)
    assert all(("refused" if unmaskable == "block" else "let through") in d for d in alerts)
    if unmaskable == "allow":
        m = [e["masking"] for e in evs.statements() if e.get("masking", {}).get("reason")]
        assert m == [{"applied": False, "reason": "encrypted", "rows_unmasked": 1}]
    events.assert_no_literals(evs, PII)


def test_agent_stop_resets_masked_sessions(pg, agent, cgroups, people, tmp_path):
    """Once the verdict is gone a masked session could read unmasked rows: it is reset."""
    from workloads import SqlClient
    name, rows = people
    a = agent("--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block")))
    masked = SqlClient(cgroups, MASKED_CG, pg.dsn())
    other = SqlClient(cgroups, OTHER_CG, pg.dsn())
    try:
        q = f"SELECT email FROM {name} WHERE id = 1"
        assert masked.sql(q)["rows"] == [[stars(rows[0][1])]]
        assert other.sql(q)["rows"] == [[rows[0][1]]]
        evs = a.stop()
        out = masked.sql(q)
        assert not out["ok"], out  # never the real value
        assert other.sql(q)["rows"] == [[rows[0][1]]]
    finally:
        masked.close()
        other.close()
    resets = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
    assert len(resets) == 1 and resets[0]["actor"]["cgroup"] == MASKED_CG


def test_uid_selector_decided_at_connect(pg, agent, cgroups, people, tmp_path):
    """A uid rule selects in the kernel at connect(): other users never carry the verdict."""
    import pwd
    from workloads import psql_in
    name, rows = people
    uid = pwd.getpwnam("postgres").pw_uid
    pol = f"""\
masking:
  results:
    - name: by-uid
      match: {{actor: {{uid: {uid}}}}}
      columns: [email]
"""
    a = agent("--policy", policy_file(tmp_path, pol))
    q = f"SELECT email FROM {name} WHERE id = 1"
    as_pg = ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups")
    res, _ = psql_in(cgroups, OTHER_CG, pg, "-At", "-c", q, prefix=as_pg)
    assert res.stdout.strip() == stars(rows[0][1]), res.stderr
    res, _ = psql_in(cgroups, OTHER_CG, pg, "-At", "-c", q)
    assert res.stdout.strip() == rows[0][1]
    evs = a.stop()
    st = [e for e in evs.statements() if e["statement"]["text"].startswith("SELECT email")]
    assert [("masking" in e, e["actor"]["uid"]) for e in st] == [(True, uid), (False, 0)]
    assert " mask_conns=1 " in a.stderr()


def test_reload_changes_the_style_of_a_live_session(pg, agent, cgroups, people, tmp_path):
    import signal
    from workloads import SqlClient
    name, rows = people
    path = policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block"))
    a = agent("--policy", path)
    c = SqlClient(cgroups, MASKED_CG, pg.dsn())
    try:
        q = f"SELECT card FROM {name} WHERE id = 1"
        assert c.sql(q)["rows"] == [[stars(rows[0][2])]]
        with open(path, "w") as f:
            f.write("version: 1\n" + RESULT_POLICY.replace("UNMASKABLE", "block")
                    .replace("style: stars", "style: keep_last4"))
        a.proc.send_signal(signal.SIGHUP)
        a.wait_for(lambda evs: any(e["type"] == "alert" and
                                   e["alert"]["kind"] == "policy_loaded" for e in evs))
        card = rows[0][2]
        assert c.sql(q)["rows"] == [["*" * (len(card) - 4) + card[-4:]]]
    finally:
        c.close()
    a.stop()


def test_guard_and_masking_on_one_connection(pg, agent, cgroups, people, tmp_path):
    """The masked sockhash carries the guard's sk_msg too: a blocked DROP, then masked rows."""
    from workloads import psql_in
    name, rows = people
    pol = "rules:\n  - {name: no-drop, match: {verb: DROP}, action: block}\n" + \
        RESULT_POLICY.replace("UNMASKABLE", "block")
    a = agent("--policy", policy_file(tmp_path, pol))
    res, _ = psql_in(cgroups, MASKED_CG, pg, "-At", "-c", f"DROP TABLE {name}", "-c",
                     f"SELECT email FROM {name} WHERE id = 2")
    assert "blocked by dbwarden rule no-drop" in res.stderr
    assert res.stdout.strip() == stars(rows[1][1])
    evs = a.stop()
    st = evs.statements()
    assert st[0]["decision"]["action"] == "block" and st[0]["decision"]["enforced_by"] == "kernel"
    assert st[1]["masking"]["fields_masked"] == 1


def test_pod_selector_masks_one_pod_with_the_daemon_frozen(pg, agent, cgroups, people, tmp_path):
    """
    A rule on a pod's namespace and labels: one pod reads masked values, the
    other the real ones, also while the daemon is stopped (SIGSTOP), when
    only the kernel's per-cgroup classes can tell them apart.
    """
    import signal
    from kube_api import FakeKubeApi
    from test_identity import Pod, k8s_args, wait_synced
    from workloads import psql_in
    name, rows = people
    kube = FakeKubeApi(tmp_path / "kube")
    try:
        agent_pod = Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent"})
        other = Pod("report-5d8f7", "ai", "sql-agent", {"app": "report"})
        for p in (agent_pod, other):
            kube.add(p.obj)
            cgroups.make(p.cgroup)
        kube.start()
        pol = """\
masking:
  results:
    - name: ai-agents
      match: {actor: {pod_namespace: ai, labels: {app: agent}}}
      columns: [email]
"""
        a = agent("--policy", policy_file(tmp_path, pol), *k8s_args(kube))
        wait_synced(a, 2)
        q = f"SELECT email FROM {name} WHERE id = 3"
        res, _ = psql_in(cgroups, agent_pod.cgroup, pg, "-At", "-c", q)
        assert res.stdout.strip() == stars(rows[2][1]), res.stderr
        res, _ = psql_in(cgroups, other.cgroup, pg, "-At", "-c", q)
        assert res.stdout.strip() == rows[2][1]
        a.proc.send_signal(signal.SIGSTOP)
        try:
            res, _ = psql_in(cgroups, agent_pod.cgroup, pg, "-At", "-c", q)
            assert res.stdout.strip() == stars(rows[2][1]), res.stderr
            res, _ = psql_in(cgroups, other.cgroup, pg, "-At", "-c", q)
            assert res.stdout.strip() == rows[2][1]
        finally:
            a.proc.send_signal(signal.SIGCONT)
        evs = a.stop()
        masked = [e for e in evs.statements() if "masking" in e]
        assert len(masked) == 2
        assert all(e["actor"]["pod"]["labels"] == {"app": "agent"} for e in masked)
    finally:
        kube.stop()


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_copy_out_follows_on_unmaskable(pg, agent, cgroups, people, tmp_path, unmaskable):
    """COPY TO STDOUT rows have no column names: block masks them whole, allow counts them."""
    from workloads import psql_in
    name, rows = people
    a = agent("--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", unmaskable)))
    res, _ = psql_in(cgroups, MASKED_CG, pg, "-c",
                     f"COPY (SELECT id, email FROM {name} ORDER BY id) TO STDOUT", "-c",
                     "SELECT 'after'", "-At")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "after"
    plain = [f"{r[0]}\t{r[1]}" for r in rows]
    if unmaskable == "block":
        assert lines[:-1] == ["*" * len(str(r[0])) + "\t" + stars(r[1]) for r in rows]
    else:
        assert lines[:-1] == plain
    evs = a.stop()
    unm = [e["alert"]["detail"] for e in evs.of("alert") if e["alert"]["kind"] == "mask_unmasked"]
    if unmaskable == "allow":
        assert len(unm) == 1 and unm[0].startswith("20 values"), unm
    else:
        assert unm == []


def test_pinned_masking_outlives_the_agent(pg, agent, cgroups, people, tmp_path):
    """Pinned (the default), the masking programs stay: a masked session stays masked, not reset."""
    import uuid
    from workloads import SqlClient
    name, rows = people
    pin = f"/sys/fs/bpf/dbw-test-{uuid.uuid4().hex[:8]}"
    a = agent("--pin-dir", pin,
              "--policy", policy_file(tmp_path, RESULT_POLICY.replace("UNMASKABLE", "block")))
    masked = SqlClient(cgroups, MASKED_CG, pg.dsn())
    try:
        q = f"SELECT email FROM {name} WHERE id = 1"
        assert masked.sql(q)["rows"] == [[stars(rows[0][1])]]
        evs = a.stop()
        assert a.rc == 0
        # no daemon now: the kernel still masks, and the session was not reset
        assert masked.sql(q)["rows"] == [[stars(rows[0][1])]]
        assert masked.sql(f"SELECT email FROM {name} WHERE id = 2")["rows"] == \
            [[stars(rows[1][1])]]
    finally:
        masked.close()
        a.unpin()
    assert not [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
    assert not os.path.exists(pin)
