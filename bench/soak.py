#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
"""
dbwarden soak: one agent, with the 20-rule policy of the benchmark, under
mixed clients for SOAK_MINUTES (default 30): pgbench -S over plaintext and
over TLS, TPC-B, and a psql every second whose DROP the guard blocks. Every
round it samples the agent's RSS, open fds and counters from its --metrics
endpoint. At the end every statement is accounted for (pgbench's completed
transactions times their statements, plus psql's, against the agent's
statement count by decision) and nothing may have been lost.

    make soak                       30 minutes
    SOAK_MINUTES=5 make soak        a shorter one

Writes bench/results/soak.json. Exit 1 when a check fails.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the benchmark's PostgreSQL, agent and pgbench)

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
ROUND_S = 20
# statements per transaction of pgbench's built-in scripts
PER_TX = {"select": 1, "tpcb": 7}
# and what each pgbench run asks first: the scale (count of pgbench_branches)
# and whether pgbench_accounts is partitioned
PER_RUN = 2


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for name, labels, value in re.findall(r"^dbwarden_(\w+)(\{[^}]*\})? (\S+)$", text, re.M):
        out[name + (labels or "")] = float(value)
    return out


def sample(pid, port):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    m = metrics(port)
    losses = {k: v for k, v in m.items() if k.startswith("kernel_total") and v and any(
        w in k for w in ("full", "lost", "fail", "oversize", "no_buffer"))}
    return {"t": time.time(), "rss_kb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "statements": sum(v for k, v in m.items() if k.startswith("statements_total")),
            "blocked": m.get('statements_total{protocol="postgres",decision="block"}', 0),
            "gaps": m.get("stream_gaps_total", 0), "losses": losses}


def main():
    bench.DBW = os.path.join(bench.ROOT, ".output", "dbwarden")
    os.makedirs(bench.RESULTS, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dbw-soak-")
    shutil.copy2(bench.DBW, os.path.join(work, "dbwarden"))
    bench.DBW = os.path.join(work, "dbwarden")
    policy = os.path.join(work, "policy.yaml")
    with open(policy, "w") as f:
        f.write(bench.POLICY)
    pg = bench.Postgres()
    procs, samples, sent = [], [], {"select": 0, "tpcb": 0, "psql": 0, "pgbench_runs": 0}
    agent = None
    ok = True
    try:
        pg.start()
        subprocess.run(["pgbench", "-i", "-q", "-s", "5"], env=pg.env(), check=True,
                       capture_output=True)
        mport = bench.free_port()
        # events to /dev/null (30 minutes of them would fill the disk): counted by /metrics
        agent = bench.Agent(pg.port, work, ["--policy", policy, "--metrics",
                                            f"127.0.0.1:{mport}",
                                            "--api", os.path.join(work, "api.sock")],
                            keep_events=False)
        end = time.time() + MINUTES * 60
        bench.log(f"soak: {MINUTES:g} min of mixed clients, agent pid {agent.proc.pid}")
        # transactions per client per round, sized from the last round: a fixed count
        # (-t), not a duration, so that no transaction is cut short at the end
        per_client = [2000, 1000, 300]
        while time.time() < end:
            runs = [("select", ["-S", "-c", "4", "-j", "2"], "disable"),
                    ("select", ["-S", "-c", "2", "-j", "1"], "require"),
                    ("tpcb", ["-c", "2", "-j", "1"], "disable")]
            procs = [(kind, subprocess.Popen(
                ["pgbench", "-n", "-t", str(per_client[i])] + args, env=pg.env(ssl),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                for i, (kind, args, ssl) in enumerate(runs)]
            t0 = time.time()
            while time.time() - t0 < ROUND_S:
                r = subprocess.run(["psql", "-X", "-q", "-c", "DROP TABLE soak_never"],
                                   env=pg.env("require"), capture_output=True, text=True)
                sent["psql"] += 1
                time.sleep(1)
            for i, (kind, p) in enumerate(procs):
                out, err = p.communicate(timeout=600)
                m = re.search(r"actually processed: (\d+)", out)
                if p.returncode or not m:
                    raise SystemExit(f"soak: pgbench failed: {err}")
                sent[kind] += int(m.group(1))
                sent["pgbench_runs"] += 1
                # next round sized from this run's own rate (the round's wall time
                # includes the psql loop, so it would only ever shrink the load)
                tps = re.search(r"tps = ([\d.]+)", out)
                clients = int(runs[i][1][runs[i][1].index("-c") + 1])
                if tps and float(tps.group(1)) > 0:
                    per_client[i] = max(100, int(float(tps.group(1)) * ROUND_S / clients))
            procs = []
            s = sample(agent.proc.pid, mport)
            samples.append(s)
            bench.log(f"  {len(samples)}: rss {s['rss_kb'] // 1024} MiB, fds {s['fds']}, "
                      f"statements {s['statements']:.0f}, blocked {s['blocked']:.0f}, "
                      f"losses {s['losses'] or 0}")
        time.sleep(1)  # the agent drains every 10 ms; let the last round's events land
        final = sample(agent.proc.pid, mport)
        fin = agent.stop()
        agent = None
    finally:
        for _, p in procs:
            p.kill()
        if agent:
            agent.proc.kill()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    expected = (sent["select"] * PER_TX["select"] + sent["tpcb"] * PER_TX["tpcb"] + sent["psql"] +
                sent["pgbench_runs"] * PER_RUN)
    warm = samples[min(2, len(samples) - 1)]
    result = {
        "minutes": MINUTES, "sent": sent, "expected_statements": expected,
        "statements": final["statements"], "blocked": final["blocked"],
        "psql_drops": sent["psql"], "rss_kb_after_warmup": warm["rss_kb"],
        "rss_kb_end": final["rss_kb"], "fds_after_warmup": warm["fds"], "fds_end": final["fds"],
        "losses": final["losses"], "gaps": final["gaps"], "agent_rc": fin["rc"],
        "samples": samples,
    }
    checks = {
        "every statement accounted for": final["statements"] == expected,
        "every DROP blocked": final["blocked"] == sent["psql"],
        "no loss counter rose": not final["losses"] and fin["loss_events"] == 0,
        "RSS flat (end <= 1.25 x after warm-up)": final["rss_kb"] <= 1.25 * warm["rss_kb"],
        "fds flat": final["fds"] <= warm["fds"] + 4,
        "agent exited 0": fin["rc"] == 0,
    }
    result["checks"] = checks
    with open(os.path.join(bench.RESULTS, "soak.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"\ndbwarden soak: {MINUTES:g} min; pgbench -S {sent['select']} tx, TPC-B "
          f"{sent['tpcb']} tx, psql {sent['psql']}; statements {final['statements']:.0f} of "
          f"{expected} expected; blocked {final['blocked']:.0f} of {sent['psql']}")
    print(f"RSS {warm['rss_kb'] // 1024} -> {final['rss_kb'] // 1024} MiB, fds {warm['fds']} -> "
          f"{final['fds']}, gaps {final['gaps']:.0f}, losses {final['losses'] or 'none'}")
    for name, good in checks.items():
        print(f"  {'ok  ' if good else 'FAIL'} {name}")
        ok = ok and good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
