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
    from workloads import Cgroups
    cg = Cgroups()
    cg.make(MASKED_CG)
    cg.make(OTHER_CG)
    yield cg
    cg.cleanup()


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
