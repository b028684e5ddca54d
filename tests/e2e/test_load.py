# SPDX-License-Identifier: GPL-2.0-only
"""
Completeness under load: every statement of several concurrent clients is
one event, agent.seq has no gap, and no loss is reported.
"""
import os
import re
import subprocess

import events


def test_four_connections_thousand_statements_each(pg, agent, tmp_path):
    os.chmod(tmp_path, 0o755)
    scripts = []
    for c in range(4):
        path = tmp_path / f"load{c}.sql"
        path.write_text("".join(f"SELECT 'lit_load_{c}_{i}', {70000000 + i};\n"
                                for i in range(1000)))
        scripts.append(path)
    a = agent()
    procs = [subprocess.Popen(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                               "postgres", "-d", "postgres", "-f", str(p)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for p in scripts]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    pids = {p.pid for p in procs}
    evs = a.wait_for(lambda evs: sum(e["actor"]["pid"] in pids for e in evs.statements())
                     >= 4000)
    evs = a.stop()
    mine = [e for e in evs.statements() if e["actor"]["pid"] in pids]
    assert len(mine) == 4000
    for pid in pids:
        per = [e for e in mine if e["actor"]["pid"] == pid]
        assert len(per) == 1000
        assert len({e["connection"]["id"] for e in per}) == 1
        assert all(e["statement"]["text"] == "SELECT $1, $2" for e in per)
        assert all(e["outcome"]["status"] == "ok" and e["outcome"]["rows"] == 1 for e in per)
    events.assert_no_loss(evs, a)
    events.assert_no_literals(evs, ["lit_load_", "70000999", "70000500"])


def test_pgbench_eight_clients_complete(pg, agent):
    """pgbench -S, 8 clients, a fixed number of transactions: one event each."""
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pg.port), PGUSER="postgres")
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "postgres"], env=env, check=True,
                   capture_output=True)
    a = agent()
    per_client = 1500
    out = subprocess.run(["pgbench", "-n", "-S", "-c", "8", "-j", "2", "-t", str(per_client),
                          "postgres"], env=env, check=True, capture_output=True, text=True).stdout
    done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    assert done == 8 * per_client
    want = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    evs = a.wait_for(lambda evs: sum(e["statement"]["text"] == want
                                     for e in evs.statements()) >= done)
    evs = a.stop()
    got = [e for e in evs.statements() if e["statement"]["text"] == want]
    assert len(got) == done
    assert all(e["outcome"]["status"] == "ok" for e in got)
    assert len({e["connection"]["id"] for e in got}) == 8
    events.assert_no_loss(evs, a)
