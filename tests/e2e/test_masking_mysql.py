# SPDX-License-Identifier: GPL-2.0-only
"""
Result masking of MySQL/MariaDB in the kernel, end to end, against a real
MariaDB: a client whose actor a masking rule selects (the mariadb client,
PyMySQL) reads masked values in text result sets; any other client reads the
real ones, byte for byte. TLS and binary result sets (prepared statements)
of a masked actor follow on_unmaskable and never pass unmasked silently.
"""
import json
import os
import subprocess

import pytest

import events
from conftest import MariaDB, agents, serve

_RUN = f"/dbw-mymask-{os.getpid()}"
MASKED_CG = f"{_RUN}/agent"
OTHER_CG = f"{_RUN}/other"

POLICY = f"""\
version: 1
masking:
  results:
    - name: pii-for-agents
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [email, card, people.ssn]
      detectors: [email, credit_card]
      style: stars
      on_unmaskable: UNMASKABLE
"""

CARDS = ["4111111111111111", "5555555555554444", "378282246310005"]


def policy(tmp_path, unmaskable="block", body=None):
    path = tmp_path / "policy.yaml"
    path.write_text(body if body is not None else POLICY.replace("UNMASKABLE", unmaskable))
    return str(path)


@pytest.fixture(scope="module")
def my():
    yield from serve(MariaDB())


@pytest.fixture
def agent(tmp_path, my):
    yield from agents(tmp_path, my.port, proto="mysql")


@pytest.fixture
def cgroups():
    from workloads import cgroups_made
    yield from cgroups_made(MASKED_CG, OTHER_CG)


PEOPLE = [(i, f"user{i}.name@example{i % 4}.com", CARDS[i % 3], f"{100 + i:03d}-45-{6789 + i}",
           f"+1 415 555 {1000 + i}", f"note {i}: call back") for i in range(1, 21)]


@pytest.fixture(scope="module")
def people(my):
    """Realistic PII: 20 people; the column names are mixed case (MySQL ignores it)."""
    vals = ", ".join("(%d, '%s', '%s', '%s', '%s', '%s')" % r for r in PEOPLE)
    my.sql_socket("DROP TABLE IF EXISTS shop.people; CREATE TABLE shop.people (id int primary "
                  "key, Email varchar(64), card varchar(32), ssn char(11), phone text, "
                  f"note varchar(64)); INSERT INTO shop.people VALUES {vals}")
    yield "people", PEOPLE


def stars(v):
    return "*" * len(v)


def masked_row(r):
    """What a masked client sees of a people row: email, card, ssn by name."""
    i, email, card, ssn, phone, note = r
    return (str(i), stars(email), stars(card), stars(ssn), phone, note)


def run_in(cgroups, rel, cmd, input=None, timeout=300):
    """Run cmd inside cgroup rel (moved before it execs). Returns (CompletedProcess, pid)."""
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + list(cmd),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd="/")
    try:
        cgroups.move(p.pid, rel)
        out, err = p.communicate(b"go\n" + (input.encode() if input else b""), timeout=timeout)
    except BaseException:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err), p.pid


def mariadb_in(cgroups, rel, my, *args, ssl=False, input=None):
    """The mariadb client (-N --batch) over TCP from inside cgroup rel; stdout as text."""
    cmd = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(my.port), "-u", "root",
           "-D", "shop", "--batch", "-N", "--ssl" if ssl else "--skip-ssl"] + list(args)
    res, pid = run_in(cgroups, rel, cmd, input=input)
    res.stdout = res.stdout.decode(errors="replace")
    res.stderr = res.stderr.decode(errors="replace")
    return res, pid


def rows_of(text):
    return [tuple(line.split("\t")) for line in text.splitlines()]


def py_in(cgroups, rel, code):
    """/usr/bin/python3 -c code inside cgroup rel; its stdout parsed as JSON."""
    res, _ = run_in(cgroups, rel, ["/usr/bin/python3", "-c", code])
    assert res.returncode == 0, res.stderr.decode()
    return json.loads(res.stdout)


def masking_of(evs, prefix):
    return [e.get("masking") for e in evs.statements()
            if e["statement"]["text"].startswith(prefix)]


def test_mariadb_client_masked_by_column_name_other_untouched(my, agent, cgroups, people,
                                                              tmp_path):
    name, rows = people
    a = agent("--policy", policy(tmp_path))
    q = f"SELECT id, email, card, ssn, phone, note FROM {name} ORDER BY id"
    res, _ = mariadb_in(cgroups, MASKED_CG, my, "-e", q + "; SELECT 'alive'")
    assert res.returncode == 0, res.stderr
    out = rows_of(res.stdout)
    assert out[:-1] == [masked_row(r) for r in rows]
    assert out[-1] == ("alive",)
    res, _ = mariadb_in(cgroups, OTHER_CG, my, "-e", q)
    assert rows_of(res.stdout) == [tuple(str(x) for x in r) for r in rows]
    evs = a.stop()
    assert a.rc == 0
    events.assert_no_loss(evs, a)
    m = masking_of(evs, "SELECT id, email")
    assert len(m) == 2 and m[1] is None, m
    assert m[0]["applied"] and m[0]["rows"] == 20 and m[0]["fields_masked"] == 60
    assert m[0]["fields_unmasked"] == 0
    assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]


PYMYSQL = """
import json, pymysql
conn = pymysql.connect(host="127.0.0.1", port=%d, user="root", password="", database="shop",
                       autocommit=True, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
cur = conn.cursor()
out = {}
cur.execute("SELECT id, email, card, ssn, phone, note FROM people ORDER BY id")
out["rows"] = cur.fetchall()
# a renamed column and an aggregate: the column names do not say email; the values do
cur.execute("SELECT max(email), min(card), email AS contact, card AS ref FROM people "
            "GROUP BY email, card ORDER BY 3 LIMIT 2")
out["renamed"] = cur.fetchall()
cur.execute("SELECT 'someone@example.org' AS note, '4111-1111-1111-1111' AS ref, 'x@y' AS notmail, "
            "'4111111111111112' AS badluhn, NULL AS n, '' AS e, 42 AS num")
out["literals"] = cur.fetchall()
# several results in one response (multi-statements)
cur.execute("SELECT email FROM people WHERE id = 1; SELECT 'plain' AS note; "
            "UPDATE people SET note = note WHERE id = 1; SELECT card FROM people WHERE id = 2")
multi = [cur.fetchall()]
while cur.nextset():
    multi.append(cur.fetchall())
out["multi"] = multi
# a procedure: two result sets and a final OK
cur.execute("CALL two_results()")
call = [cur.fetchall()]
while cur.nextset():
    call.append(cur.fetchall())
out["call"] = call
cur.execute("SELECT count(*) FROM people")
out["count"] = cur.fetchall()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def proc(my, people):
    body = ("DROP PROCEDURE IF EXISTS shop.two_results;\nDELIMITER //\nCREATE PROCEDURE "
            "shop.two_results() BEGIN SELECT id, email FROM people WHERE id <= 2 "
            "ORDER BY id; SELECT phone, card AS c FROM people WHERE id = 3; END//\n")
    subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={my.sock}", "shop"],
                   input=body, check=True, capture_output=True, text=True)


def test_pymysql_names_renamed_aggregates_multi_results(my, agent, cgroups, people, proc,
                                                        tmp_path):
    name, rows = people
    a = agent("--policy", policy(tmp_path))
    code = PYMYSQL % my.port
    got = py_in(cgroups, MASKED_CG, code)
    assert [tuple(r) for r in got["rows"]] == \
        [(r[0], stars(r[1]), stars(r[2]), stars(r[3]), r[4], r[5]) for r in rows]
    assert len(got["renamed"]) == 2
    for mx, mn, contact, ref in got["renamed"]:
        assert set(mx) == set(mn) == set(contact) == set(ref) == {"*"}, (mx, mn, contact, ref)
    assert got["literals"] == [["*" * 19, "*" * 19, "x@y", "4111111111111112", None, "", 42]]
    assert got["multi"] == [[[stars(rows[0][1])]], [["plain"]], [], [[stars(rows[1][2])]]]
    assert got["call"] == [[[1, stars(rows[0][1])], [2, stars(rows[1][1])]],
                           [[rows[2][4], stars(rows[2][2])]], []]
    assert got["count"] == [[20]]
    plain = py_in(cgroups, OTHER_CG, code)
    assert [tuple(r) for r in plain["rows"]] == list(rows)
    assert plain["literals"] == [["someone@example.org", "4111-1111-1111-1111", "x@y",
                                  "4111111111111112", None, "", 42]]
    assert plain["multi"] == [[[rows[0][1]]], [["plain"]], [], [[rows[1][2]]]]
    assert plain["call"] == [[[1, rows[0][1]], [2, rows[1][1]]], [[rows[2][4], rows[2][2]]], []]
    evs = a.stop()
    assert a.rc == 0
    events.assert_no_loss(evs, a)
    m = masking_of(evs, "SELECT id, email, card")
    assert len(m) == 2 and m[0]["rows"] == 20 and m[0]["fields_masked"] == 60 and m[1] is None
    assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]


def test_styles_keep_last4_and_token_case_insensitive_names(my, agent, cgroups, people,
                                                            tmp_path):
    name, rows = people
    pol = f"""\
version: 1
masking:
  results:
    - name: cards
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [CARD]
      style: keep_last4
    - name: mails
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [email]
      style: token
"""
    a = agent("--policy", policy(tmp_path, body=pol))
    res, _ = mariadb_in(cgroups, MASKED_CG, my, "-e",
                        f"SELECT card, EMAIL, ssn, email AS e2 FROM {name} ORDER BY id")
    assert res.returncode == 0, res.stderr
    # e2 is an alias: MySQL still names its origin column (Email), which the rule lists
    assert rows_of(res.stdout) == [("*" * (len(r[2]) - 4) + r[2][-4:], "X" * len(r[1]), r[3],
                                    "X" * len(r[1])) for r in rows]
    a.stop()


def test_aliases_followed_to_their_origin_column(my, agent, cgroups, people, tmp_path):
    """
    A ColumnDefinition names the column's origin (org_table, org_name): an
    alias of a listed column is masked, whether the rule names it bare,
    table.column or schema.table.column, and an alias of another table's
    column is not. A qualified name still masks a column that a result
    calls by that name, in any table (a view's columns name the view).
    """
    name, rows = people
    my.sql_socket("DROP TABLE IF EXISTS shop.vendors; CREATE TABLE shop.vendors (id int, "
                  "ssn char(11), phone text); INSERT INTO shop.vendors VALUES "
                  "(1, '999-99-9999', '+1 415 555 9999')")
    pol = f"""\
version: 1
masking:
  results:
    - name: origins
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [people.ssn, shop.people.phone, email, other.people.note]
      style: stars
"""
    a = agent("--policy", policy(tmp_path, body=pol))
    q = f"SELECT ssn AS a, phone AS b, Email AS c, card AS d, note AS e FROM {name} ORDER BY id"
    res, _ = mariadb_in(cgroups, MASKED_CG, my, "-e",
                        q + "; SELECT v.ssn AS x, v.phone AS y, ssn FROM vendors v")
    assert res.returncode == 0, res.stderr
    out = rows_of(res.stdout)
    # note: other.people is not shop.people
    assert out[:-1] == [(stars(r[3]), stars(r[4]), stars(r[1]), r[2], r[5]) for r in rows]
    # aliases of vendors' columns are vendors'; called ssn, a column is masked in any table
    assert out[-1] == ("999-99-9999", "+1 415 555 9999", stars("999-99-9999"))
    res, _ = mariadb_in(cgroups, OTHER_CG, my, "-e", q)
    assert rows_of(res.stdout) == [(r[3], r[4], r[1], r[2], r[5]) for r in rows]
    a.stop()
    my.sql_socket("DROP TABLE IF EXISTS shop.vendors")


def test_large_results_byte_exact(my, agent, cgroups, tmp_path):
    """100,000 rows over many skbs, and rows past 16 MiB (packets continued): byte for byte."""
    my.sql_socket("USE shop; SET GLOBAL max_allowed_packet = 67108864; DROP TABLE IF EXISTS big; "
                  "CREATE TABLE big AS SELECT seq AS id, "
                  "concat('user', seq, '@example.com') AS email, "
                  "lpad(seq * 7919, 16, '4') AS card, concat('note ', seq) AS note "
                  "FROM seq_1_to_100000")
    try:
        a = agent("--policy", policy(tmp_path))
        q = "SELECT id, email, card, note FROM big ORDER BY id"
        res, _ = mariadb_in(cgroups, MASKED_CG, my, "-e", q)
        assert res.returncode == 0, res.stderr
        out = res.stdout.splitlines()
        assert len(out) == 100000
        overmasked = 0
        for g, line in zip(range(1, 100001), out):
            email = f"user{g}@example.com"
            card = str(g * 7919).rjust(16, "4")
            want = f"{g}\t{stars(email)}\t{stars(card)}\t"
            assert line.startswith(want), (g, line, want)
            note, got = f"note {g}", line[len(want):]
            if got != note:
                # a value cut by an skb boundary while it could still be an email
                k = len(got) - len(got.lstrip("*"))
                assert 0 < k < len(note) and got == "*" * k + note[k:], (g, got)
                overmasked += 1
        res, _ = mariadb_in(cgroups, OTHER_CG, my, "-e", q)
        out = res.stdout.splitlines()
        assert len(out) == 100000
        assert out[0] == "1\tuser1@example.com\t4444444444447919\tnote 1"
        assert out[-1] == f"100000\tuser100000@example.com\t{str(791900000).rjust(16, '4')}" \
                          "\tnote 100000"
        # the same through a prepared statement: binary rows over many skbs
        rc, bout, err = binary_read(cgroups, MASKED_CG, my,
                                    "SELECT id, email, card, note FROM big WHERE id <= 30000 "
                                    "ORDER BY id")
        assert rc == 0, err
        bout = bout.splitlines()
        assert len(bout) == 30001 and bout[-1] == "after"
        for g, line in zip(range(1, 30001), bout):
            email = f"user{g}@example.com"
            card = str(g * 7919).rjust(16, "4")
            want = f"{g}\t{stars(email)}\t{stars(card)}\t"
            assert line.startswith(want), (g, line, want)
            note, got = f"note {g}", line[len(want):]
            if got != note:
                k = len(got) - len(got.lstrip("*"))
                assert 0 < k < len(note) and got == "*" * k + note[k:], (g, got)
        # rows past 0xffffff bytes: values and length words cut by packet headers
        big = 17000000
        q2 = (f"SELECT id, repeat('a', {big}) AS filler, email, "
              f"concat(repeat('x', {big}), '@example.com') AS EMAIL FROM big WHERE id <= 2 "
              "ORDER BY id")
        res, _ = mariadb_in(cgroups, MASKED_CG, my, "--max-allowed-packet=64M", "-e",
                            q2 + "; SELECT 'alive'")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[-1] == "alive"
        for g, line in zip((1, 2), lines[:-1]):
            f = line.split("\t")
            email = f"user{g}@example.com"
            assert f == [str(g), "a" * big, stars(email), "*" * (big + 12)], (g, len(line))
        evs = a.stop()
        events.assert_no_loss(evs, a)
        m = [x for x in masking_of(evs, "SELECT id, email, card, note FROM big") if x]
        assert len(m) == 2 and m[0]["rows"] == 100000 and m[0]["fields_masked"] == 200000
        assert m[0]["overmasked"] == overmasked and m[0]["fields_unmasked"] == 0
        assert m[1]["rows"] == 30000 and m[1]["fields_masked"] == 60000  # binary
        m2 = [x for x in masking_of(evs, "SELECT id, repeat") if x]
        assert len(m2) == 1 and m2[0]["rows"] == 2 and m2[0]["fields_masked"] == 4
        print(f"100k rows: {overmasked} values overmasked at skb boundaries")
    finally:
        my.sql_socket("DROP TABLE IF EXISTS shop.big")


@pytest.fixture(scope="module")
def tmy():
    yield from serve(MariaDB(ssl=True))


def stop_when_closed(agent, n):
    """
    Stop the agent once the kernel has closed the test's n connections: a
    masked connection still open when the agent stops is reset then
    (on_unmaskable: block), a reset the test would count as its own.
    """
    agent.wait_for(lambda evs: len(evs.of("connection_close")) >= n, timeout=30)
    return agent.stop()


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_tls_connection_of_masked_actor(tmy, tmp_path, cgroups, unmaskable):
    start = agents(tmp_path, tmy.port, proto="mysql")
    a = next(start)("--policy", policy(tmp_path, unmaskable))
    q = "SELECT 'jane.doe@example.com' AS email, 'lit_tls_plain' AS note"
    try:
        res, _ = mariadb_in(cgroups, MASKED_CG, tmy, "-e", q, ssl=True)
        if unmaskable == "block":
            # the server's TLS reply is dropped and the connection reset
            assert res.returncode != 0
            assert "jane.doe" not in res.stdout
        else:
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == "jane.doe@example.com\tlit_tls_plain"
        # a client no rule selects: TLS as usual
        res, _ = mariadb_in(cgroups, OTHER_CG, tmy, "-e", q, ssl=True)
        assert res.returncode == 0 and res.stdout.strip() == "jane.doe@example.com\tlit_tls_plain"
        # plaintext from the masked actor still works, masked
        res, _ = mariadb_in(cgroups, MASKED_CG, tmy, "-e", q)
        assert res.stdout.strip() == f"{stars('jane.doe@example.com')}\tlit_tls_plain", \
            res.stderr
        evs = stop_when_closed(a, 3)
    finally:
        a.kill()
        try:
            next(start)
        except StopIteration:
            pass
    alerts = [e["alert"]["detail"] for e in evs.of("alert")
              if e["alert"]["kind"] == "mask_unmaskable"]
    assert len(alerts) == 1, alerts
    if unmaskable == "block":
        assert "refused" in alerts[0] and "reset" in alerts[0]
        resets = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
        assert len(resets) == 1 and resets[0]["actor"]["cgroup"] == MASKED_CG
    else:
        assert "let through" in alerts[0]


def binary_read(cgroups, rel, my, sql, cursor=False):
    from conftest import helper
    env = ["env", "DBW_CURSOR=1"] if cursor else []
    res, _ = run_in(cgroups, rel, env + [helper("mysql_binary_read"), "127.0.0.1", str(my.port),
                                         "root", "shop", sql])
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def test_binary_protocol_masked(my, agent, cgroups, people, tmp_path):
    """
    Prepared statements (libmariadb: COM_STMT_PREPARE then EXECUTE, binary
    rows, MariaDB's cached metadata): string values masked by name and by the
    detectors as in text results; a binary number or date in a named column is
    zeroed; the rest passes as it is.
    """
    name, rows = people
    a = agent("--policy", policy(tmp_path))
    rc, out, err = binary_read(cgroups, MASKED_CG, my,
                               f"SELECT id, email, phone, card, NULL AS ssn FROM {name} "
                               "WHERE id <= 3 ORDER BY id")
    assert rc == 0, err
    assert out.splitlines() == [f"{r[0]}\t{stars(r[1])}\t{r[4]}\t{stars(r[2])}\tNULL"
                                for r in rows[:3]] + ["after"]
    # renamed: the detectors; a number and a date in named columns: zeroed
    rc, out, err = binary_read(cgroups, MASKED_CG, my,
                               f"SELECT email AS contact, card AS ref, note, id AS card, "
                               f"id * 2 AS n, CAST('1990-01-02' AS DATE) AS ssn, "
                               f"CAST('2020-01-01 10:00:00' AS DATETIME) AS t FROM {name} "
                               "WHERE id = 1")
    assert rc == 0, err
    r = rows[0]
    assert out.splitlines() == [f"{stars(r[1])}\t{stars(r[2])}\t{r[5]}\t0\t2\t0000-00-00\t"
                                "2020-01-01 10:00:00", "after"]
    # a cursor: the rows come in COM_STMT_FETCH answers, two at a time, without definitions
    rc, out, err = binary_read(cgroups, MASKED_CG, my,
                               f"SELECT id, email, phone FROM {name} WHERE id <= 5 ORDER BY id",
                               cursor=True)
    assert rc == 0, err
    assert out.splitlines() == [f"{r[0]}\t{stars(r[1])}\t{r[4]}" for r in rows[:5]] + ["after"]
    # a client no rule selects reads the values
    rc, out, err = binary_read(cgroups, OTHER_CG, my,
                               f"SELECT id, email, card FROM {name} WHERE id = 1")
    assert rc == 0 and out.splitlines() == [f"1\t{r[1]}\t{r[2]}", "after"], err
    rc, out, err = binary_read(cgroups, OTHER_CG, my,
                               f"SELECT id, email FROM {name} WHERE id <= 3 ORDER BY id",
                               cursor=True)
    assert rc == 0 and out.splitlines() == [f"{r[0]}\t{r[1]}" for r in rows[:3]] + ["after"]
    evs = a.stop()
    events.assert_no_loss(evs, a)
    assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]
    assert " mask_desync=0 " in a.stderr()
    m = [e.get("masking") for e in evs.statements()
         if e["actor"]["cgroup"] == MASKED_CG and e["statement"]["mode"] == "extended"]
    assert [x["fields_masked"] for x in m[:2]] == [6, 4], m
    # the cursor's rows are counted per FETCH answer: the connection's totals have them all
    closes = [e["stats"]["masking"]["fields_masked"] for e in evs.of("connection_close")
              if "masking" in e["stats"]]
    assert closes == [6, 4, 5], closes


WIDE = "SELECT email, " + ", ".join(str(i) for i in range(1, 65)) + " FROM people WHERE id <= 3"


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_binary_result_unmaskable_never_passes_silently(my, agent, cgroups, people, tmp_path,
                                                        unmaskable):
    """
    A binary result of more columns than the kernel keeps types of (64),
    with a named one: block resets the connection before its first row reaches
    the client; allow passes it, counted, with an alert.
    """
    name, rows = people
    a = agent("--policy", policy(tmp_path, unmaskable))
    rc, out, err = binary_read(cgroups, MASKED_CG, my, WIDE)
    if unmaskable == "block":
        assert rc != 0, out
        assert "Lost connection" in err or "reset" in err, err
        for r in rows:
            assert r[1] not in out
    else:
        assert rc == 0, err
        assert [line.split("\t")[0] for line in out.splitlines()] == \
            [r[1] for r in rows[:3]] + ["after"]
    # the same columns as text: masked
    res, _ = mariadb_in(cgroups, MASKED_CG, my, "-e", WIDE)
    assert [line.split("\t")[0] for line in res.stdout.splitlines()] == \
        [stars(r[1]) for r in rows[:3]], res.stderr
    evs = stop_when_closed(a, 2)
    unm = [e["alert"]["detail"] for e in evs.of("alert") if e["alert"]["kind"] == "mask_unmasked"]
    lost = [e["alert"]["detail"] for e in evs.of("alert")
            if e["alert"]["kind"] == "mask_unmaskable"]
    if unmaskable == "block":
        assert len(lost) == 1 and "binary result set" in lost[0], lost
        resets = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
        assert len(resets) == 1 and resets[0]["actor"]["cgroup"] == MASKED_CG
        assert unm == []
    else:
        assert lost == []
        assert len(unm) == 1 and unm[0].startswith("3 values") and "binary" in unm[0], unm


def test_guard_and_masking_on_one_connection(my, agent, cgroups, people, tmp_path):
    """The masked sockhash carries the guard's sk_msg too: a blocked DROP, then masked rows."""
    name, rows = people
    pol = POLICY.replace("UNMASKABLE", "block") + \
        "rules:\n  - {name: no-drop, match: {verb: DROP}, action: block}\n"
    a = agent("--policy", policy(tmp_path, body=pol))
    sql = f"DROP TABLE {name};\nSELECT email, phone FROM {name} WHERE id = 2;\n"
    res, _ = mariadb_in(cgroups, MASKED_CG, my, "--force", input=sql)
    assert "blocked by dbwarden rule no-drop" in res.stderr, res.stderr
    assert rows_of(res.stdout) == [(stars(rows[1][1]), rows[1][4])], (res.stdout, res.stderr)
    evs = a.stop()
    st = [e for e in evs.statements() if e["actor"]["cgroup"] == MASKED_CG]
    assert st[0]["decision"]["action"] == "block"
    assert st[1]["masking"]["fields_masked"] == 1
    my.sql_socket(f"SELECT count(*) FROM shop.{name}")  # still there


# A raw client that asks for CLIENT_DEPRECATE_EOF (neither libmariadb 3.3 nor PyMySQL does):
# results end with an OK whose header is 0xfe, and no EOF follows the column definitions.
RAW_DEPRECATE_EOF = r"""
import json, socket, struct
s = socket.create_connection(("127.0.0.1", %d))
raw = bytearray()

def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        assert c, "connection closed"
        b += c
    return b

def packet():
    h = recv_exact(4)
    body = recv_exact(h[0] | h[1] << 8 | h[2] << 16)
    raw.extend(h + body)
    return h[3], body

def send(seq, payload):
    s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

def lenenc(p, i):
    c = p[i]
    if c < 0xfb:
        return c, i + 1
    if c == 0xfb:
        return None, i + 1
    n = {0xfc: 2, 0xfd: 3, 0xfe: 8}[c]
    return int.from_bytes(p[i + 1:i + 1 + n], "little"), i + 1 + n

def ok_status(p):
    _, i = lenenc(p, 1)
    _, i = lenenc(p, i)
    return p[i] | p[i + 1] << 8

_, greet = packet()
i = greet.index(b"\0", 1) + 1 + 4 + 8 + 1
caps = greet[i] | greet[i + 1] << 8
caps |= (greet[i + 5] | greet[i + 6] << 8) << 16
DEPRECATE_EOF = 1 << 24
mine = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000 | 0x80000 | DEPRECATE_EOF
send(1, struct.pack("<IIB", mine, 1 << 24, 33) + b"\0" * 23 + b"root\0" + b"\0" + b"shop\0" +
     b"mysql_native_password\0")
seq, p = packet()
if p[0] == 0xfe:
    send(seq + 1, b"")
    seq, p = packet()
assert p[0] == 0, p

def query(q):
    send(0, b"\x03" + q.encode())
    out = []
    while True:
        _, p = packet()
        if p[0] == 0xff:
            out.append({"err": p[9:].decode()})
            return out
        if p[0] == 0:
            out.append({"ok": True})
            if ok_status(p) & 8:
                continue
            return out
        n, _ = lenenc(p, 0)
        for _ in range(n):
            packet()
        rows = []
        while True:
            _, p = packet()
            if p[0] == 0xfe and len(p) < 0xffffff:
                break
            row, i = [], 0
            for _ in range(n):
                ln, i = lenenc(p, i)
                row.append(None if ln is None else p[i:i + ln].decode())
                i += ln or 0
            rows.append(row)
        out.append({"rows": rows, "end_len": len(p)})
        if not ok_status(p) & 8:
            return out

res = {"deprecate_eof": bool(caps & DEPRECATE_EOF)}
res["multi"] = query("SELECT id, email, card FROM people WHERE id <= 2 ORDER BY id; "
                     "SELECT 'plain' AS note; SELECT email FROM people WHERE id = 0; "
                     "DO 1")
res["next"] = query("SELECT email AS contact FROM people WHERE id = 3")
res["raw_has_email"] = b"@example" in raw
print(json.dumps(res))
"""


def test_deprecate_eof_raw_client(my, agent, cgroups, people, tmp_path):
    """CLIENT_DEPRECATE_EOF: no EOF after the definitions, results end with an OK (0xfe)."""
    name, rows = people
    a = agent("--policy", policy(tmp_path))
    got = py_in(cgroups, MASKED_CG, RAW_DEPRECATE_EOF % my.port)
    assert got["deprecate_eof"]
    r1, r2, r3 = rows[0], rows[1], rows[2]
    assert got["multi"] == [
        {"rows": [["1", stars(r1[1]), stars(r1[2])], ["2", stars(r2[1]), stars(r2[2])]],
         "end_len": got["multi"][0]["end_len"]},
        {"rows": [["plain"]], "end_len": got["multi"][1]["end_len"]},
        {"rows": [], "end_len": got["multi"][2]["end_len"]},
        {"ok": True}]
    assert all(x["end_len"] >= 7 for x in got["multi"][:3])  # OKs, not 5-byte EOFs
    assert got["next"][0]["rows"] == [[stars(r3[1])]]
    assert not got["raw_has_email"]
    plain = py_in(cgroups, OTHER_CG, RAW_DEPRECATE_EOF % my.port)
    assert plain["multi"][0]["rows"] == [["1", r1[1], r1[2]], ["2", r2[1], r2[2]]]
    assert plain["next"][0]["rows"] == [[r3[1]]] and plain["raw_has_email"]
    evs = a.stop()
    assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_compressed_protocol_follows_on_unmaskable(my, agent, cgroups, people, tmp_path,
                                                   unmaskable):
    """The compressed protocol cannot be read: its framing counts as lost, never silent."""
    name, rows = people
    a = agent("--policy", policy(tmp_path, unmaskable))
    res, _ = mariadb_in(cgroups, MASKED_CG, my, "--compress", "-e",
                        f"SELECT email FROM {name} WHERE id = 1")
    if unmaskable == "block":
        assert res.returncode != 0 and rows[0][1] not in res.stdout, res.stdout
    else:
        assert res.returncode == 0 and res.stdout.strip() == rows[0][1], res.stderr
    evs = a.stop()
    lost = [e["alert"]["detail"] for e in evs.of("alert")
            if e["alert"]["kind"] == "mask_unmaskable"]
    assert len(lost) == 1 and "framing lost" in lost[0], lost
    resets = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
    assert len(resets) == (1 if unmaskable == "block" else 0)


LOCAL_INFILE = """
import json, pymysql
conn = pymysql.connect(host="127.0.0.1", port=%d, user="root", password="", database="shop",
                       autocommit=True, local_infile=True)
cur = conn.cursor()
cur.execute("LOAD DATA LOCAL INFILE %%s INTO TABLE m_loaded FIELDS TERMINATED BY ','", (%r,))
n = cur.rowcount
cur.execute("SELECT id, email FROM m_loaded ORDER BY id")
print(json.dumps({"loaded": n, "rows": cur.fetchall()}))
"""


def test_load_data_local_then_masked_reads(my, agent, cgroups, tmp_path):
    """LOAD DATA LOCAL: the client sends the file inside the command's answer; then rows."""
    data = tmp_path / "people.csv"
    data.write_text("".join(f"{i},loaded{i}@example.com\n" for i in range(1, 4)))
    os.chmod(tmp_path, 0o755)
    my.sql_socket("DROP TABLE IF EXISTS shop.m_loaded; "
                  "CREATE TABLE shop.m_loaded (id int, email varchar(64))")
    try:
        a = agent("--policy", policy(tmp_path))
        got = py_in(cgroups, MASKED_CG, LOCAL_INFILE % (my.port, str(data)))
        assert got["loaded"] == 3
        assert got["rows"] == [[i, stars(f"loaded{i}@example.com")] for i in range(1, 4)]
        evs = a.stop()
        assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]
    finally:
        my.sql_socket("DROP TABLE IF EXISTS shop.m_loaded")
