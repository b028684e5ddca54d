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
its table OID (mask_rel). Then Redis: redis-benchmark GET from a cgroup
whose rule masks every reply by key (`key:*`) against one no rule
selects, one by one and pipelined. Interleaved runs; medians and every
sample printed, and written to bench/results/mask.json.

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

from conftest import Agent, Postgres, Redis  # noqa: E402
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


def run_in(cg, rel, cmd, timeout=300):
    """Run cmd inside cgroup rel (moved there before it starts): (seconds, stdout bytes)."""
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + cmd, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    cg.move(p.pid, rel)
    t0 = time.monotonic()
    out, err = p.communicate(b"go\n", timeout=timeout)
    t = time.monotonic() - t0
    assert p.returncode == 0, err
    return t, out


def timed_select(pg, cg, rel, user="postgres", masked=False):
    """Seconds for psql to read the whole result, from inside cgroup rel."""
    t, out = run_in(cg, rel, ["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(pg.port),
                              "-U", user, "-d", "postgres", "-c",
                              "SELECT id, email, card, note FROM bench_big"])
    assert out.count(b"\n") == ROWS
    # a masked read has no address left; an unmasked one has them all
    assert out.count(b"@example.com") == (0 if masked else ROWS)
    return t


def pgbench_tps(pg, cg, rel, seconds=5, user="postgres"):
    """pgbench -S TPS of one client running inside cgroup rel."""
    _, out = run_in(cg, rel, ["pgbench", "-n", "-S", "-c", "1", "-T", str(seconds), "-h",
                              "127.0.0.1", "-p", str(pg.port), "-U", user, "postgres"], 120)
    return float(out.decode().split("tps = ")[1].split()[0])


REDIS_KEYS = 100000
REDIS_POLICY = f"""\
version: 1
masking:
  results:
    - name: bench-keys
      match: {{actor: {{cgroup: {MASKED}}}}}
      keys: ["key:*"]
"""


def redis_rps(rd, cg, rel, pipeline):
    """redis-benchmark GET requests/s (4 clients, random keys of the key:* set) from cgroup rel."""
    _, out = run_in(cg, rel, ["redis-benchmark", "-h", "127.0.0.1", "-p", str(rd.port), "-t",
                              "get", "-r", str(REDIS_KEYS), "-n", "40000", "-c", "4", "-P",
                              str(pipeline), "--csv"], 120)
    last = out.decode().strip().splitlines()[-1].split(",")
    return float(last[1].strip('"'))


def redis_rounds(pairs, work, cg):
    """Masked by key against unmasked, GET one by one and pipelined 16 deep, interleaved."""
    rd, agent = Redis(), None
    rps = {"p1_unmasked": [], "p1_masked": [], "p16_unmasked": [], "p16_masked": []}
    try:
        rd.start()
        subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(rd.port), "-t", "set",
                        "-r", str(REDIS_KEYS), "-n", str(2 * REDIS_KEYS), "-d", "32", "-q"],
                       check=True, capture_output=True)
        subprocess.run(["redis-cli", "-p", str(rd.port), "SET", "key:000000000001", "v" * 32],
                       check=True, capture_output=True)
        policy = os.path.join(work, "policy-redis.yaml")
        with open(policy, "w") as f:
            f.write(REDIS_POLICY)
        agent = Agent(work, rd.port, ("--policy", policy), proto="redis")
        # the rule is in force: a masked client reads stars, the other the value
        _, v = run_in(cg, MASKED, ["redis-cli", "-p", str(rd.port), "GET", "key:000000000001"])
        assert v.strip() == b"*" * 32, v
        _, v = run_in(cg, OTHER, ["redis-cli", "-p", str(rd.port), "GET", "key:000000000001"])
        assert v.strip() == b"v" * 32, v
        for _ in range(pairs):
            for p in (1, 16):
                rps[f"p{p}_unmasked"].append(redis_rps(rd, cg, OTHER, p))
                rps[f"p{p}_masked"].append(redis_rps(rd, cg, MASKED, p))
        agent.stop()
        agent = None
    finally:
        if agent:
            agent.kill()
        rd.stop()
    out = {}
    for p in (1, 16):
        r = [m / u for m, u in zip(rps[f"p{p}_masked"], rps[f"p{p}_unmasked"])]
        out[f"p{p}_ratio"] = statistics.median(r)
        print(f"redis-benchmark GET -P {p}, 4 clients, {pairs} pairs: masked by key "
              f"{statistics.median(rps[f'p{p}_masked']):.0f} req/s, unmasked "
              f"{statistics.median(rps[f'p{p}_unmasked']):.0f} req/s, median ratio "
              f"{out[f'p{p}_ratio']:.3f} (each pair: " + ", ".join(f"{x:.2f}" for x in r) + ")")
    out["samples_rps"] = rps
    return out


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
    cg = Cgroups()
    try:
        cg.make(MASKED)
        cg.make(OTHER)
        redis = redis_rounds(pairs, work, cg)
    finally:
        cg.cleanup()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "mask.json"), "w") as f:
        json.dump({"median_s": med, "samples_s": res, "rows": ROWS, "pgbench_tps": tps,
                   "pgbench_ratio": statistics.median(ratios),
                   "pgbench_ratio_server": statistics.median(srv),
                   "pgbench_ratio_catalog": statistics.median(cat),
                   "redis_by_key": redis}, f, indent=1)


if __name__ == "__main__":
    main()
