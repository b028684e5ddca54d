#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
"""
make bench: what governing every statement costs, as ratios of agent-on to
agent-off measured in one interleaved run on this machine.

It starts its own PostgreSQL (temporary data dir and port, loopback only),
loads pgbench data, then runs pgbench in pairs in alternating order
(off, on, on, off, ...) for each case, and reports median TPS ratios with a
bootstrap 95% interval, added latency, completeness (statements sent vs
statement events), every loss counter, the agent's CPU and BPF time per
statement, its peak RSS, and the userspace pipeline's throughput on a
recorded capture. BENCH_QUICK=1 gives a run of a few minutes.

Writes bench/results/latest.json and bench/results/tps.png.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DBW = os.path.join(ROOT, ".output", "dbwarden")
PG_BIN = "/usr/lib/postgresql/15/bin"
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "bench", "results"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
# BENCH_SMOKE=1: one short pair per case, to check that the harness works (the tests)
SMOKE = os.environ.get("BENCH_SMOKE") == "1"

PAIRS = 1 if SMOKE else 3 if QUICK else 8
SECONDS = 1 if SMOKE else 3 if QUICK else 10
CLIENTS = [4] if SMOKE else [1, 4] if QUICK else [1, 4, 16]
# explicit overrides, for a run between quick and full: BENCH_PAIRS=5 BENCH_CLIENTS=1,4
PAIRS = int(os.environ.get("BENCH_PAIRS", PAIRS))
SECONDS = int(os.environ.get("BENCH_SECONDS", SECONDS))
if os.environ.get("BENCH_CLIENTS"):
    CLIENTS = [int(c) for c in os.environ["BENCH_CLIENTS"].split(",")]
if 4 not in CLIENTS:
    raise SystemExit("bench: BENCH_CLIENTS must include 4 (the headline figures use it)")
SCALE = 1 if SMOKE else 5 if QUICK else 10
COMPLETENESS_TX = 500 if SMOKE else 2000 if QUICK else 10000  # per client, 8 clients

# Statements pgbench's scripts send, as the agent normalizes them.
SELECT_TEXTS = {"SELECT abalance FROM pgbench_accounts WHERE aid = $1"}
TPCB_TEXTS = {
    "BEGIN", "END",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
    "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
}

# A 20-rule policy of the kind DBAs write: it puts the guard in the path of
# every statement (the kernel lexes each one) without blocking pgbench's.
POLICY = "version: 1\ndefaults: {action: allow, unparsed: block}\nrules:\n" + "".join(
    f"  - name: r{i}\n    match: {{verb: [{v}], objects: [{o}]}}\n    action: block\n"
    for i, (v, o) in enumerate(
        [(v, f"audit_{k}") for k in range(4) for v in ("DROP", "TRUNCATE", "ALTER", "DELETE")]))
POLICY += ("  - name: no-drop\n    match: {verb: [DROP]}\n    action: block\n"
           "  - name: no-truncate\n    match: {verb: [TRUNCATE]}\n    action: block\n"
           "  - name: wipe\n    match: {verb: [DELETE, UPDATE], without_where: true}\n"
           "    action: block\n"
           "  - name: grants\n    match: {verb: [GRANT, REVOKE]}\n    action: block\n")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    for _ in range(200):
        port = random.randint(56000, 56999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit("bench: no free port in 56000-56999")


class Postgres:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dbw-bench-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.up = False

    def pg(self, *cmd):
        return subprocess.run(["runuser", "-u", "postgres", "--"] + list(cmd), check=True,
                              capture_output=True, text=True)

    def start(self):
        self.pg(f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nmax_connections = 100\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 256MB\nssl = on\n")
        # TLS cases: a self-signed certificate, as the tests make one
        key, crt = os.path.join(self.data, "server.key"), os.path.join(self.data, "server.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", crt], check=True,
                       capture_output=True)
        for f in (key, crt):
            shutil.chown(f, "postgres", "postgres")
        os.chmod(key, 0o600)
        self.pg(f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                "start")
        self.up = True

    def stop(self):
        if self.up:
            subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D",
                            self.data, "-m", "fast", "-w", "stop"], capture_output=True)
            self.up = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self, sslmode="disable"):
        return dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres",
                    PGDATABASE="postgres", PGSSLMODE=sslmode)


def prog_ids(pid):
    """BPF programs the agent holds (from its fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def bpf_run_ns(ids):
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return sum(p.get("run_time_ns", 0) for p in json.loads(out) if p["id"] in ids)


class Agent:
    def __init__(self, port, workdir, extra=(), env=None, keep_events=True):
        """keep_events=False: events to /dev/null (the soak), only counters kept."""
        self.out = os.path.join(workdir, "events.jsonl") if keep_events else os.devnull
        self.err = os.path.join(workdir, "agent.err")
        if keep_events and os.path.exists(self.out):
            os.unlink(self.out)
        self.errf = open(self.err, "w")
        # its own state: the host's default would lock out any other agent running
        self.proc = subprocess.Popen([DBW, "run", "--no-pin", "--port", f"{port}=postgres",
                                      "--state-dir", os.path.join(workdir, "state"),
                                      "--output", f"file:{self.out}"] + list(extra),
                                     stdout=subprocess.DEVNULL, stderr=self.errf,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.time() + 30
        while "dbwarden: ready:" not in open(self.err).read():
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                raise SystemExit(f"bench: agent did not start: {open(self.err).read()}")
            time.sleep(0.05)
        self.ids = prog_ids(self.proc.pid)

    def stop(self):
        """Stop it; returns its figures."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        bpf_ns = bpf_run_ns(self.ids)
        self.proc.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.errf.close()
        err = open(self.err).read()
        counters = dict(re.findall(r"(\w+)=(\d+)", err.split("kernel counters:")[-1]))
        counters = {k: int(v) for k, v in counters.items()}
        texts = {}
        events = losses = 0
        with open(self.out) as f:  # /dev/null: no events kept
            for line in f:
                e = json.loads(line)
                if e["type"] == "statement":
                    t = e["statement"]["text"]
                    texts[t] = texts.get(t, 0) + 1
                elif e["type"] == "loss":
                    losses += e["loss"]["count"]
                events += 1
        if self.out != os.devnull:
            os.unlink(self.out)
        return {"rc": self.proc.returncode, "cpu_s": ru.ru_utime + ru.ru_stime,
                "rss_kb": hwm, "bpf_ns": bpf_ns, "texts": texts, "loss_events": losses,
                "counters": counters, "events": events}


def pgbench(pg, args, workdir, sslmode="disable"):
    """Run pgbench; returns tps, transactions and latency percentiles (µs)."""
    for f in os.listdir(workdir):
        if f.startswith("pgbench_log"):
            os.unlink(os.path.join(workdir, f))
    r = subprocess.run(["pgbench", "-n", "-l", "--sampling-rate", "0.2"] + args,
                       env=pg.env(sslmode), capture_output=True, text=True, cwd=workdir)
    if r.returncode:
        raise SystemExit(f"bench: pgbench failed: {r.stderr}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", r.stdout).group(1))
    done = int(re.search(r"actually processed: (\d+)", r.stdout).group(1))
    lat = []
    for f in os.listdir(workdir):
        if f.startswith("pgbench_log"):
            with open(os.path.join(workdir, f)) as fh:
                lat += [int(l.split()[2]) for l in fh if l.strip()]
            os.unlink(os.path.join(workdir, f))
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None)
    return {"tps": tps, "tx": done, "p50_us": pct(0.5), "p99_us": pct(0.99)}


def probe_cost(pg, workdir):
    """
    What the TLS probes cost a process that uses OpenSSL (any process, the
    database server included): tests/helpers/tls_loop times SSL_write +
    SSL_read pairs over memory BIOs with no agent, with the agent's chosen
    (emulated) sites, and with the exported entry points (single-stepped),
    interleaved. Each pair of calls hits 4 probes (entry and return of both).
    """
    loop = os.path.join(ROOT, ".output", "tests", "tls_loop")
    n = "20000" if SMOKE else "200000"
    modes = {"off": None, "emulated": {}, "exported": {"DBWARDEN_TLS_PROBE": "exported"}}
    runs = {m: [] for m in modes}
    for i in range(PAIRS):
        for m in (list(modes) if i % 2 == 0 else list(modes)[::-1]):
            agent = Agent(pg.port, workdir, env=modes[m]) if modes[m] is not None else None
            out = subprocess.run([loop, n], capture_output=True, text=True, check=True).stdout
            if agent:
                agent.stop()
            runs[m].append(float(out.split()[1]))
    med = {m: statistics.median(v) for m, v in runs.items()}
    return {"ns_per_pair": med, "runs": runs,
            "added_ns_per_call": {m: (med[m] - med["off"]) / 2 for m in ("emulated", "exported")}}


def bootstrap(ratios, n=2000, seed=7):
    rnd = random.Random(seed)
    meds = sorted(statistics.median(rnd.choice(ratios) for _ in ratios) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n)]


def run_case(pg, name, script_args, clients, workdir, raw, agent_extra=(), base_extra=None,
             sslmode="disable"):
    """
    Interleaved pairs for one case. "off" is no agent, unless base_extra
    is given (then both sides run an agent and only the arguments differ).
    """
    ratios, lat_on, lat_off, on_runs = [], [], [], []
    args = script_args + ["-c", str(clients), "-j", str(min(clients, 2)), "-T", str(SECONDS)]
    for i in range(PAIRS):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        res = {}
        for side in order:
            extra = agent_extra if side == "on" else base_extra
            agent = Agent(pg.port, workdir, extra) if extra is not None else None
            r = pgbench(pg, args, workdir, sslmode)
            if agent:
                r["agent"] = agent.stop()
                on_runs.append(r) if side == "on" else None
            res[side] = r
            raw.append({"case": name, "clients": clients, "pair": i, "side": side,
                        "tps": r["tps"], "tx": r["tx"], "p50_us": r["p50_us"],
                        "p99_us": r["p99_us"],
                        "agent": {k: v for k, v in r.get("agent", {}).items() if k != "texts"}})
        ratios.append(res["on"]["tps"] / res["off"]["tps"])
        lat_on.append(res["on"]), lat_off.append(res["off"])
        log(f"  {name} c={clients} pair {i + 1}/{PAIRS}: off {res['off']['tps']:.0f} "
            f"on {res['on']['tps']:.0f} ratio {ratios[-1]:.3f}")
    lo, hi = bootstrap(ratios)
    med = lambda k, rs: statistics.median(r[k] for r in rs if r[k] is not None)
    return {"case": name, "clients": clients, "ratio": statistics.median(ratios),
            "ci95": [lo, hi], "tps_on": med("tps", lat_on), "tps_off": med("tps", lat_off),
            "tps_on_all": [r["tps"] for r in lat_on], "tps_off_all": [r["tps"] for r in lat_off],
            "p50_added_us": med("p50_us", lat_on) - med("p50_us", lat_off),
            "p99_added_us": med("p99_us", lat_on) - med("p99_us", lat_off), "on_runs": on_runs}


def agent_cost(on_runs, texts):
    """CPU µs (user + sys + BPF) per statement and the peak RSS over the agent-on runs."""
    stmts = sum(sum(n for t, n in r["agent"]["texts"].items() if t in texts) for r in on_runs)
    cpu = sum(r["agent"]["cpu_s"] for r in on_runs) * 1e6
    bpf = sum(r["agent"]["bpf_ns"] for r in on_runs) / 1e3
    rss = max(r["agent"]["rss_kb"] for r in on_runs) / 1024
    return {"statements": stmts, "user_sys_us_per_stmt": cpu / stmts if stmts else None,
            "bpf_us_per_stmt": bpf / stmts if stmts else None,
            "us_per_stmt": (cpu + bpf) / stmts if stmts else None, "rss_mb": rss}


LOSS_COUNTERS = ("ringbuf_full_open", "ringbuf_full_data", "ringbuf_full_close", "msg_pull_fail",
                 "load_bytes_fail", "storage_fail", "sockhash_fail", "recv_no_buffer",
                 "guard_failed")


def completeness(pg, workdir):
    """pgbench -S, 8 clients, a fixed number of transactions: one event each?"""
    agent = Agent(pg.port, workdir)
    r = pgbench(pg, ["-S", "-c", "8", "-j", "2", "-t", str(COMPLETENESS_TX)], workdir)
    a = agent.stop()
    got = sum(n for t, n in a["texts"].items() if t in SELECT_TEXTS)
    lost = a["loss_events"] + sum(a["counters"].get(k, 0) for k in LOSS_COUNTERS)
    return {"sent": r["tx"], "events": got, "completeness": got / r["tx"], "lost": lost,
            "counters": {k: a["counters"].get(k, 0) for k in LOSS_COUNTERS}}


def pipeline(pg, workdir, policy):
    """
    Record a capture under pgbench, replay it through the userspace pipeline:
    reassembly, parse, stitch, analysis, the policy (20 rules), serialisation.
    """
    rec = os.path.join(workdir, "capture.rec")
    agent = Agent(pg.port, workdir, ["--record", rec])
    pgbench(pg, ["-S", "-c", "4", "-j", "2", "-T", str(SECONDS)], workdir)
    agent.stop()
    best = 0.0
    for _ in range(3):
        r = subprocess.run([DBW, "replay", rec, "--repeat", "5", "--output", "file:/dev/null",
                            "--policy", policy], capture_output=True, text=True)
        m = re.search(r"stmts_per_s (\d+)", r.stderr)
        if r.returncode or not m:
            raise SystemExit(f"bench: replay failed: {r.stderr}")
        best = max(best, float(m.group(1)))
    os.unlink(rec)
    return best


def plot(summary, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("bench: matplotlib missing, no plot")
        return
    titles = {"select": "pgbench -S (plaintext)", "tpcb": "pgbench TPC-B (plaintext)",
              "tls_select": "pgbench -S (TLS)"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, case in zip(axes, titles):
        rows = [s for s in summary if s["case"] == case]
        xs = [s["clients"] for s in rows]
        for side, color in (("off", "tab:gray"), ("on", "tab:blue")):
            meds = [s[f"tps_{side}"] for s in rows]
            errs = [[m - min(s[f"tps_{side}_all"]) for m, s in zip(meds, rows)],
                    [max(s[f"tps_{side}_all"]) - m for m, s in zip(meds, rows)]]
            ax.errorbar(xs, meds, yerr=errs, marker="o", capsize=3, color=color,
                        label=f"agent {side}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_title(titles[case])
        ax.set_xlabel("clients")
        ax.set_ylabel("TPS (median, min-max)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    global DBW
    if not os.access(DBW, os.X_OK):
        raise SystemExit(f"bench: {DBW} is not built (make all)")
    os.makedirs(RESULTS, exist_ok=True)
    t0 = time.time()
    workdir = tempfile.mkdtemp(prefix="dbw-bench-run-")
    # one binary for the whole run, whatever is rebuilt meanwhile
    shutil.copy2(DBW, os.path.join(workdir, "dbwarden"))
    DBW = os.path.join(workdir, "dbwarden")
    stats_path = "/proc/sys/kernel/bpf_stats_enabled"
    old_stats = open(stats_path).read().strip()
    pg = Postgres()
    try:
        with open(stats_path, "w") as f:
            f.write("1")
        pg.start()
        log(f"bench: PostgreSQL on 127.0.0.1:{pg.port}, pgbench -i -s {SCALE}")
        subprocess.run(["pgbench", "-i", "-q", "-s", str(SCALE)], env=pg.env(), check=True,
                       capture_output=True)
        raw, summary = [], []
        for case, args in (("select", ["-S"]), ("tpcb", [])):
            for c in CLIENTS:
                summary.append(run_case(pg, case, args, c, workdir, raw))
        log("bench: pgbench -S over TLS (sslmode=require), the agent probing libssl")
        for c in CLIENTS:
            summary.append(run_case(pg, "tls_select", ["-S"], c, workdir, raw,
                                    sslmode="require"))
        log("bench: TLS probe cost per call (memory BIOs), emulated vs single-stepped sites")
        probes = probe_cost(pg, workdir)
        policy_path = os.path.join(workdir, "policy.yaml")
        with open(policy_path, "w") as f:
            f.write(POLICY)
        log("bench: 20-rule policy vs none, both with the agent")
        pol = run_case(pg, "policy_select", ["-S"], 4, workdir, raw,
                       agent_extra=["--policy", policy_path], base_extra=[])
        log("bench: completeness, pgbench -S 8 clients")
        comp = completeness(pg, workdir)
        log("bench: userspace pipeline (record, replay)")
        pipe = pipeline(pg, workdir, policy_path)
    finally:
        pg.stop()
        with open(stats_path, "w") as f:
            f.write(old_stats)
        shutil.rmtree(workdir, ignore_errors=True)

    sel = next(s for s in summary if s["case"] == "select" and s["clients"] == 4)
    tls = next(s for s in summary if s["case"] == "tls_select" and s["clients"] == 4)
    tls_runs = [r for s in summary if s["case"] == "tls_select" for r in s["on_runs"]]
    tls_cost = agent_cost(tls_runs, SELECT_TEXTS)
    # every TLS transaction's statement seen in plaintext (pgbench counts what completed)
    tls_sent = sum(r["tx"] for r in tls_runs)
    tpcb = next(s for s in summary if s["case"] == "tpcb" and s["clients"] == 4)
    cost = agent_cost([r for s in summary if s["case"] == "select" for r in s["on_runs"]],
                      SELECT_TEXTS)
    tpcb_cost = agent_cost([r for s in summary if s["case"] == "tpcb" for r in s["on_runs"]],
                           TPCB_TEXTS)
    lost = sum(r["agent"]["loss_events"] for s in summary + [pol] for r in s["on_runs"])
    result = {
        "quick": QUICK, "pairs": PAIRS, "seconds": SECONDS, "scale": SCALE,
        "tps_ratio_plain_select": sel["ratio"],
        "tps_ratio_plain_tpcb": tpcb["ratio"],
        "tps_ratio_tls_select": tls["ratio"],
        "tls_statements_seen": [tls_cost["statements"], tls_sent],
        "tls_probe_added_ns_per_call": probes["added_ns_per_call"],
        "tps_ratio_policy_select": pol["ratio"],
        "p99_added_us": sel["p99_added_us"],
        "completeness": comp["completeness"],
        "lost_events": lost + comp["lost"],
        "agent_cpu_us_per_stmt": cost["us_per_stmt"],
        "agent_rss_mb": max(cost["rss_mb"], tpcb_cost["rss_mb"]),
        "pipeline_stmts_per_s": pipe,
        "kafka_events_per_s": None,
        "detail": {
            "cases": [{k: v for k, v in s.items() if k != "on_runs"} for s in summary + [pol]],
            "completeness": comp, "agent_cost_select": cost, "agent_cost_tpcb": tpcb_cost,
            "agent_cost_tls_select": tls_cost, "tls_probe_cost": probes,
            "wall_s": time.time() - t0,
        },
        "raw": raw,
    }
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(summary, os.path.join(RESULTS, "tps.png"))

    print(f"\ndbwarden bench ({'quick' if QUICK else 'full'}: {PAIRS} pairs x {SECONDS} s, "
          f"scale {SCALE}, {time.time() - t0:.0f} s)")
    print(f"{'case':<14}{'clients':>8}{'off tps':>10}{'on tps':>10}{'ratio':>8}"
          f"{'95% CI':>16}{'p50 +us':>9}{'p99 +us':>9}")
    for s in summary + [pol]:
        print(f"{s['case']:<14}{s['clients']:>8}{s['tps_off']:>10.0f}{s['tps_on']:>10.0f}"
              f"{s['ratio']:>8.3f}   [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
              f"{s['p50_added_us']:>9.0f}{s['p99_added_us']:>9.0f}")
    print(f"completeness (pgbench -S, 8 clients): {comp['events']}/{comp['sent']} = "
          f"{comp['completeness']:.5f}; lost (counted): {result['lost_events']}")
    print(f"agent cost, select: {cost['user_sys_us_per_stmt']:.2f} us user+sys + "
          f"{cost['bpf_us_per_stmt']:.2f} us BPF per statement; peak RSS "
          f"{result['agent_rss_mb']:.1f} MiB")
    print(f"TLS: {tls_cost['statements']} of {tls_sent} pgbench -S statements seen in plaintext; "
          f"agent {tls_cost['user_sys_us_per_stmt']:.2f} us user+sys + "
          f"{tls_cost['bpf_us_per_stmt']:.2f} us BPF per statement")
    pc = probes["added_ns_per_call"]
    print(f"TLS probe cost per SSL_write/SSL_read call: emulated sites +{pc['emulated']:.0f} ns, "
          f"exported entry points +{pc['exported']:.0f} ns "
          f"(no agent: {probes['ns_per_pair']['off'] / 2:.0f} ns per call)")
    print(f"userspace pipeline: {pipe:.0f} statements/s on one core")
    print(f"written: {RESULTS}/latest.json, {RESULTS}/tps.png")


if __name__ == "__main__":
    main()
