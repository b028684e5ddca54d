# SPDX-License-Identifier: GPL-2.0-only
"""
Table-qualified masking columns, end to end: a target's `catalog` lets the
agent read table names in the database's own catalog, so that `users.ssn`
masks users' ssn under any alias, in its partitions, and not another
table's ssn. Without a catalog (or when it cannot be read) the name decides
alone: every table's ssn is masked. Real PostgreSQL, real clients in cgroups.
"""
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import DBW_BIN, free_port
from test_masking import MASKED_CG, OTHER_CG, cgroups, policy_file, stars  # noqa: F401

SSN = {"u": "111-11-1111", "o": "222-22-2222", "a": "333-33-3333", "hr": "444-44-4444",
       "pub": "555-55-5555"}

SETUP = f"""
DROP TABLE IF EXISTS c_users, c_users_old, c_orders, c_accounts, c_emp, hr.c_emp CASCADE;
DROP SCHEMA IF EXISTS hr CASCADE;
CREATE TABLE c_users (id int, ssn text, email text);
CREATE TABLE c_orders (id int, ssn text);
CREATE TABLE c_accounts (id int, ssn text) PARTITION BY RANGE (id);
CREATE TABLE c_accounts_p1 PARTITION OF c_accounts FOR VALUES FROM (0) TO (1000);
CREATE SCHEMA hr;
CREATE TABLE hr.c_emp (id int, ssn text);
CREATE TABLE c_emp (id int, ssn text);
CREATE VIEW c_users_v AS SELECT id, ssn FROM c_users;
INSERT INTO c_users VALUES (1, '{SSN["u"]}', 'u@example.com');
INSERT INTO c_orders VALUES (1, '{SSN["o"]}');
INSERT INTO c_accounts VALUES (1, '{SSN["a"]}');
INSERT INTO hr.c_emp VALUES (1, '{SSN["hr"]}');
INSERT INTO c_emp VALUES (1, '{SSN["pub"]}');
"""

TEARDOWN = "DROP TABLE IF EXISTS c_users, c_users_old, c_orders, c_accounts, c_emp CASCADE; " \
           "DROP SCHEMA IF EXISTS hr CASCADE;"


@pytest.fixture
def tables(pg):
    pg.psql("-c", SETUP, host=pg.dir)
    yield
    pg.psql("-c", TEARDOWN, host=pg.dir)


def policy(tmp_path, pg, catalog):
    target = f"""\
targets:
  - name: main
    protocol: postgres
    address: 127.0.0.1:{pg.port}
"""
    if catalog:
        target += f"    catalog: {{dsn: '{catalog}', refresh: 60s}}\n"
    return policy_file(tmp_path, target + f"""\
masking:
  results:
    - name: qualified
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      columns: [c_users.ssn, c_accounts.ssn, hr.c_emp.ssn]
      style: stars
""")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("dbwarden_mask_catalog"):
            k, v = line.split()
            out[k[len("dbwarden_"):]] = float(v)
    return out


def settled_reads(port):
    """Catalog reads done, once none has been added for half a second (DDL may queue two)."""
    last, since = metrics(port)["mask_catalog_reads_total"], time.time()
    deadline = since + 10
    while time.time() - since < 0.5:
        assert time.time() < deadline, "catalog reads do not settle"
        time.sleep(0.05)
        now = metrics(port)["mask_catalog_reads_total"]
        if now != last:
            last, since = now, time.time()
    return last


def one(c, q):
    res = c.sql(q)
    assert "rows" in res, res
    return res["rows"][0]


def wait_value(c, q, want, timeout=15.0):
    """Poll q until its first row is want (the catalog read lands meanwhile)."""
    start = time.time()
    deadline = start + timeout
    got = None
    while time.time() < deadline:
        got = one(c, q)
        if got == want:
            return time.time() - start
        time.sleep(0.01)  # fine-grained: with -s the test prints how long it took
    raise AssertionError(f"{q}: {got} after {timeout}s, expected {want}")


def test_catalog_masks_the_named_table_under_any_alias(pg, agent, cgroups, tables, tmp_path):
    from workloads import SqlClient
    mport = free_port()
    path = policy(tmp_path, pg, f"host=127.0.0.1 port={pg.port} user=postgres")
    a = agent("--policy", path, "--metrics", f"127.0.0.1:{mport}")
    c = SqlClient(cgroups, MASKED_CG, pg.dsn())
    other = SqlClient(cgroups, OTHER_CG, pg.dsn())
    try:
        # until the first read of the catalog the name decides: c_orders.ssn masked too
        took = wait_value(c, "SELECT ssn FROM c_orders", [SSN["o"]])
        print(f"first catalog read landed after {took:.2f} s")
        m = metrics(mport)
        assert m["mask_catalog_databases"] == 1 and m["mask_catalog_reads_total"] >= 1
        assert m["mask_catalog_columns"] >= 6 and m["mask_catalog_failures_total"] == 0
        assert one(c, "SELECT ssn FROM c_users") == [stars(SSN["u"])]
        # renamed: RowDescription still says c_users, column 2
        assert one(c, "SELECT ssn AS x, id FROM c_users") == [stars(SSN["u"]), 1]
        assert one(c, "SELECT u.ssn AS a, o.ssn AS b FROM c_users u JOIN c_orders o USING (id)") \
            == [stars(SSN["u"]), SSN["o"]]
        # a view's column is not a table's: its name decides (masked)
        assert one(c, "SELECT ssn FROM c_users_v") == [stars(SSN["u"])]
        # a partition is its parent's
        assert one(c, "SELECT ssn FROM c_accounts") == [stars(SSN["a"])]
        assert one(c, "SELECT ssn AS s FROM c_accounts_p1") == [stars(SSN["a"])]
        # a schema-qualified name: that schema's table only
        assert one(c, "SELECT ssn FROM hr.c_emp") == [stars(SSN["hr"])]
        assert one(c, "SELECT ssn FROM public.c_emp") == [SSN["pub"]]
        # an unlisted column keeps its value
        assert one(c, "SELECT email FROM c_users") == ["u@example.com"]
        # the other client reads every real value
        assert one(other, "SELECT ssn AS x FROM c_users") == [SSN["u"]]
        assert one(other, "SELECT ssn FROM c_accounts_p1") == [SSN["a"]]

        # DDL seen on a watched connection has the catalog read again at once:
        # c_orders becomes c_users (its ssn masked), c_users becomes c_users_old (not)
        res = other.sql("ALTER TABLE c_users RENAME TO c_users_old")
        assert "error" not in res, res
        res = other.sql("ALTER TABLE c_orders RENAME TO c_users")
        assert "error" not in res, res
        took = wait_value(c, "SELECT ssn AS y FROM c_users", [stars(SSN["o"])], timeout=10)
        print(f"DDL followed in {took:.2f} s")
        wait_value(c, "SELECT ssn AS y FROM c_users_old", [SSN["u"]], timeout=10)
        assert metrics(mport)["mask_catalog_reads_total"] >= 2

        # a reload that lists the same columns keeps what was read: no moment by name alone
        reads = settled_reads(mport)
        a.proc.send_signal(signal.SIGHUP)
        a.wait_for(lambda evs: sum(e["type"] == "alert" and e["alert"]["kind"] == "policy_loaded"
                                   for e in evs) == 1)
        assert one(c, "SELECT ssn AS z FROM c_users") == [stars(SSN["o"])]
        assert one(c, "SELECT ssn FROM c_users_old") == [SSN["u"]]
        assert metrics(mport)["mask_catalog_reads_total"] == reads
        # one that lists others forgets every database (rule numbers may differ), reads again:
        # meanwhile c_users_old's ssn goes by its name (masked)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("hr.c_emp.ssn]", "hr.c_emp.ssn, c_gone.ssn]"))
        a.proc.send_signal(signal.SIGHUP)
        a.wait_for(lambda evs: sum(e["type"] == "alert" and e["alert"]["kind"] == "policy_loaded"
                                   for e in evs) == 2)
        wait_value(c, "SELECT ssn FROM c_users_old", [SSN["u"]], timeout=10)
        assert one(c, "SELECT ssn AS z FROM c_users") == [stars(SSN["o"])]
        assert metrics(mport)["mask_catalog_reads_total"] > reads
        assert metrics(mport)["mask_catalog_databases"] == 1
    finally:
        c.close()
        other.close()
    evs = a.stop()
    assert a.rc == 0
    # the agent's own catalog reads are watched statements like any other
    assert [e for e in evs.statements()
            if e["connection"].get("application_name") == "dbwarden-catalog"]


def test_without_catalog_every_table_s_column_of_that_name(pg, agent, cgroups, tables, tmp_path):
    from workloads import SqlClient
    a = agent("--policy", policy(tmp_path, pg, None))
    c = SqlClient(cgroups, MASKED_CG, pg.dsn())
    try:
        time.sleep(1)  # nothing to wait for: prove that nothing changes with time
        assert one(c, "SELECT ssn FROM c_orders") == [stars(SSN["o"])]
        assert one(c, "SELECT ssn FROM public.c_emp") == [stars(SSN["pub"])]
        assert one(c, "SELECT ssn FROM c_users") == [stars(SSN["u"])]
        # a rename is not followed without the catalog (value detectors only)
        assert one(c, "SELECT ssn AS x FROM c_users") == [SSN["u"]]
    finally:
        c.close()
    a.stop()


def test_catalog_that_cannot_be_read_falls_back_to_names(pg, agent, cgroups, tables, tmp_path):
    from workloads import SqlClient
    mport = free_port()
    dead = free_port()
    a = agent("--policy", policy(tmp_path, pg, f"host=127.0.0.1 port={dead} user=postgres"),
              "--metrics", f"127.0.0.1:{mport}")
    c = SqlClient(cgroups, MASKED_CG, pg.dsn())
    try:
        deadline = time.time() + 15
        while metrics(mport)["mask_catalog_failures_total"] < 1:
            assert time.time() < deadline, "no catalog failure counted"
            time.sleep(0.1)
        assert one(c, "SELECT ssn FROM c_orders") == [stars(SSN["o"])]
        assert one(c, "SELECT ssn FROM c_users") == [stars(SSN["u"])]
        assert metrics(mport)["mask_catalog_columns"] == 0
    finally:
        c.close()
    a.stop()
    err = a.stderr()
    assert "catalog of main, database postgres:" in err and "go by name alone" in err, err


@pytest.mark.parametrize("body,message", [
    ("targets:\n  - {name: t, protocol: postgres, address: 5432, catalog: 'nonsense'}\n",
     "target 't': catalog: missing \"=\" after \"nonsense\""),
    ("targets:\n  - {name: t, protocol: redis, address: 6379, catalog: 'host=x'}\n",
     "target 't': a catalog is PostgreSQL's"),
    ("targets:\n  - {name: t, protocol: postgres, address: 5432, "
     "catalog: {dsn: 'host=x', refresh: often}}\n",
     "catalog refresh must be a duration"),
    ("masking:\n  results:\n    - {name: r, match: {}, columns: [a..b]}\n",
     "columns: 'a..b' is not a column name"),
    ("masking:\n  results:\n    - {name: r, match: {}, columns: [w.x.y.z]}\n",
     "columns: 'w.x.y.z' is not a column name"),
])
def test_policy_check_refuses_bad_catalogs_and_names(tmp_path, body, message):
    path = policy_file(tmp_path, body)
    r = subprocess.run([DBW_BIN, "policy", "check", path], capture_output=True, text=True)
    assert r.returncode != 0 and message in r.stderr, r.stderr
