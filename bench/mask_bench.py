# SPDX-License-Identifier: GPL-2.0-only
"""
Result masking cost: the wall time of a 100,000-row SELECT (id, email,
card, note; two columns masked by name, the detectors on the others) read
by psql from a cgroup a masking rule selects, against the same SELECT from
a cgroup it does not select (agent running: capture only), and with no
agent at all; and read as a database user a `placement: [server]` rule
selects (masked at the server's egress); and the masked read again under
an agent whose policy names the columns table-qualified (bench_big.email)
and gives the target a catalog, so that the kernel decides each column by
its table OID (mask_rel). Interleaved runs; medians and
every sample printed, and written to bench/results/mask.json.

    make bench-mask        (BENCH_PAIRS=N, default 10)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from conftest import Agent, Postgres  # noqa: E402
from workloads import Cgroups  # noqa: E402

ROWS = 100000
SRV_USER = "bench_srv"
MASKED, OTHER = f"/dbw-bench-mask-{os.getpid()}/agent", f"/dbw-bench-mask-{os.getpid()}/other"
POLICY = f"""\
version: 1
masking:
  results:
    - name: bench
      match: {{actor: {{cgroup: {MASKED}}}}}
      columns: [email, card]
      detectors: [email, credit_card]
    - name: bench-server
      match: {{db_user: [{SRV_USER}]}}
      columns: [email, card]
      detectors: [email, credit_card]
      placement: [server]
"""


# the same rules, the columns table-qualified, resolved in the target's catalog
POLICY_CATALOG = POLICY.replace("version: 1\n", """version: 1
targets:
  - name: bench
    protocol: postgres
    address: 127.0.0.1:PORT
    catalog: "host=127.0.0.1 port=PORT user=postgres"
""").replace("columns: [email, card]\n      detectors: [email, credit_card]\n    - name: bench-server",
             "columns: [bench_big.email, bench_big.card]\n      detectors: [email, credit_card]\n"
             "    - name: bench-server")


def timed_select(pg, cg, rel, user="postgres", masked=False):
    """Seconds for psql to read the whole result, from inside cgroup rel."""
    cmd = ["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(pg.port), "-U", user,
           "-d", "postgres", "-c", "SELECT id, email, card, note FROM bench_big"]
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + cmd, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    cg.move(p.pid, rel)
    t0 = time.monotonic()
    out, err = p.communicate(b"go\n", timeout=300)
    t = time.monotonic() - t0
    assert p.returncode == 0, err
    assert out.count(b"\n") == ROWS
    # a masked read has no address left; an unmasked one has them all
    assert out.count(b"@example.com") == (0 if masked else ROWS)
    return t


def pgbench_tps(pg, cg, rel, seconds=5, user="postgres"):
    """pgbench -S TPS of one client running inside cgroup rel."""
    cmd = ["pgbench", "-n", "-S", "-c", "1", "-T", str(seconds), "-h", "127.0.0.1", "-p",
           str(pg.port), "-U", user, "postgres"]
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + cmd, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", text=True)
    cg.move(p.pid, rel)
    out, err = p.communicate("go\n", timeout=120)
    assert p.returncode == 0, err
    return float(out.split("tps = ")[1].split()[0])


def main():
    pairs = int(os.environ.get("BENCH_PAIRS", "10"))
    work = tempfile.mkdtemp(prefix="dbw-bench-mask-")
    pg, cg, agent = Postgres(), Cgroups(), None
    res = {"none": [], "capture_only": [], "masked": [], "server_masked": [], "catalog_masked": []}
    tps = {"unmasked": [], "masked": [], "server_masked": [], "catalog_masked": []}
    try:
        pg.start()
        pg.psql("-c", "CREATE TABLE bench_big AS SELECT g AS id, 'user' || g || '@example.com' "
                      "AS email, lpad((g * 7919)::text, 16, '4') AS card, 'note ' || g AS note "
                      f"FROM generate_series(1, {ROWS}) g", host=pg.dir)
        subprocess.run(["pgbench", "-i", "-q", "-s", "2", "-h", pg.dir, "-p", str(pg.port), "-U",
                        "postgres", "postgres"], check=True, capture_output=True)
        pg.psql("-c", f"CREATE ROLE {SRV_USER} LOGIN", "-c",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {SRV_USER}", host=pg.dir)
        cg.make(MASKED)
        cg.make(OTHER)
        policy = os.path.join(work, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        policy_cat = os.path.join(work, "policy-catalog.yaml")
        with open(policy_cat, "w") as f:
            f.write(POLICY_CATALOG.replace("PORT", str(pg.port)))
        for _ in range(pairs):
            res["none"].append(timed_select(pg, cg, OTHER))
            agent = Agent(work, pg.port, ("--policy", policy, "--api",
                                          os.path.join(work, "api.sock")))
            res["capture_only"].append(timed_select(pg, cg, OTHER))
            res["masked"].append(timed_select(pg, cg, MASKED, masked=True))
            res["masked"].append(timed_select(pg, cg, MASKED, masked=True))
            res["capture_only"].append(timed_select(pg, cg, OTHER))
            res["server_masked"].append(timed_select(pg, cg, OTHER, SRV_USER, masked=True))
            tps["unmasked"].append(pgbench_tps(pg, cg, OTHER))
            tps["masked"].append(pgbench_tps(pg, cg, MASKED))
            tps["server_masked"].append(pgbench_tps(pg, cg, OTHER, user=SRV_USER))
            agent.stop()
            agent = Agent(work, pg.port, ("--policy", policy_cat))
            # the first read has the catalog read (untimed): the next go by table OID
            timed_select(pg, cg, MASKED, masked=True)
            res["catalog_masked"].append(timed_select(pg, cg, MASKED, masked=True))
            tps["catalog_masked"].append(pgbench_tps(pg, cg, MASKED))
            agent.stop()
            agent = None
    finally:
        if agent:
            agent.kill()
        cg.cleanup()
        pg.stop()
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"100,000-row SELECT, psql, {pairs} rounds (median seconds):")
    print(f"  no agent          {med['none']:.3f}")
    print(f"  agent, unmasked   {med['capture_only']:.3f}")
    print(f"  agent, masked     {med['masked']:.3f}  "
          f"({med['masked'] / med['capture_only']:.2f}x the unmasked client)")
    print(f"  server-side mask  {med['server_masked']:.3f}  "
          f"({med['server_masked'] / med['capture_only']:.2f}x the unmasked client)")
    print(f"  catalog-qualified {med['catalog_masked']:.3f}  "
          f"({med['catalog_masked'] / med['masked']:.2f}x the same rule by names)")
    ratios = [m / u for m, u in zip(tps["masked"], tps["unmasked"])]
    print(f"pgbench -S, 1 client, {pairs} pairs: masked actor {statistics.median(tps['masked']):.0f}"
          f" TPS, unmasked {statistics.median(tps['unmasked']):.0f} TPS, median ratio "
          f"{statistics.median(ratios):.3f} (each pair: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    srv = [m / u for m, u in zip(tps["server_masked"], tps["unmasked"])]
    print(f"pgbench -S, 1 client: user masked at the server "
          f"{statistics.median(tps['server_masked']):.0f} TPS, median ratio to unmasked "
          f"{statistics.median(srv):.3f} (each pair: " + ", ".join(f"{r:.2f}" for r in srv) + ")")
    cat = [m / u for m, u in zip(tps["catalog_masked"], tps["masked"])]
    print(f"pgbench -S, 1 client: the rule table-qualified (catalog) "
          f"{statistics.median(tps['catalog_masked']):.0f} TPS, median ratio to it by names "
          f"{statistics.median(cat):.3f} (each pair: " + ", ".join(f"{r:.2f}" for r in cat)
          + ")")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "mask.json"), "w") as f:
        json.dump({"median_s": med, "samples_s": res, "rows": ROWS, "pgbench_tps": tps,
                   "pgbench_ratio": statistics.median(ratios),
                   "pgbench_ratio_server": statistics.median(srv),
                   "pgbench_ratio_catalog": statistics.median(cat)}, f, indent=1)


if __name__ == "__main__":
    main()
