# SPDX-License-Identifier: GPL-2.0-only
"""
Operations: the --metrics endpoint (Prometheus text, probes, /status) and
`dbwarden status`, against a running agent with a policy and real traffic.
"""
import hashlib
import json
import re
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import DBW_BIN, free_port
from test_guard import POLICY


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.read().decode()


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = rf"^dbwarden_{name}{{{re.escape(want)}}} (\S+)$" if labels else \
        rf"^dbwarden_{name} (\S+)$"
    m = re.search(pat, text, re.M)
    assert m, (name, labels)
    return float(m.group(1))


def test_metrics_probes_and_status(pg, agent, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    a = agent("--policy", str(policy), "--metrics", f"127.0.0.1:{port}")
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/readyz") == (200, "ready\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        get(port, "/nothing")
    assert e.value.code == 404

    pg.psql("-c", "SELECT 1", "-c", "SELECT 'metric_lit_77'")
    pg.psql("-c", "DROP TABLE no_such_table_m", check=False)
    a.wait_for(lambda evs: len(evs.statements()) == 3)

    status, text = get(port, "/metrics")
    assert status == 200
    assert metric(text, "statements_total", protocol="postgres", decision="allow") == 2
    assert metric(text, "statements_total", protocol="postgres", decision="block") == 1
    assert metric(text, "connections_total") == 2
    assert metric(text, "kernel_total", counter="guard_blocked") == 1
    assert metric(text, "kernel_total", counter="ringbuf_full_data") == 0
    assert metric(text, "policy_rules") == 2
    assert metric(text, "bpf_runs_total", program="dbw_msg") >= 0
    assert "metric_lit_77" not in text

    sha = hashlib.sha256(policy.read_bytes()).hexdigest()[:16]
    out = subprocess.run([DBW_BIN, "status", "--metrics", f"127.0.0.1:{port}", "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["policy"]["version"] == sha and st["policy"]["rules"] == 2
    assert st["ports"] == [{"port": pg.port, "protocol": "postgres"}]
    assert st["connections"]["total"] == 2
    assert "dbw_msg" in {p["name"] for p in st["programs"]}
    human = subprocess.run([DBW_BIN, "status", "--metrics", f"127.0.0.1:{port}"],
                           capture_output=True, text=True)
    assert human.returncode == 0
    assert f"ports: {pg.port}/postgres" in human.stdout
    assert f"version {sha}, 2 rules" in human.stdout
    assert "guard_blocked=1" in human.stdout
    a.stop()


def test_status_errors(tmp_path):
    port = free_port()
    r = subprocess.run([DBW_BIN, "status", "--metrics", f"127.0.0.1:{port}"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot reach the agent" in r.stderr
    r = subprocess.run([DBW_BIN, "status", "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([DBW_BIN, "run", "--metrics", "nonsense"], capture_output=True, text=True)
    assert r.returncode == 1 and "expected HOST:PORT" in r.stderr


def log_lines(agent):
    lines = agent.stderr().splitlines()
    # every line of the agent's own log says who wrote it
    assert lines and all(l.startswith("dbwarden: ") for l in lines), lines
    return lines


def test_log_levels(pg, agent, tmp_path):
    """
    --log-level warning: only what needs a look (here a refused policy
    reload); -v: what the agent looked at, never a statement or a value.
    """
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    a = agent("--policy", str(policy), "--log-level", "warning",
              "--metrics", f"127.0.0.1:{port}")
    pg.psql("-c", "SELECT 'log_lit_31'")
    policy.write_text("version: 1\nrules: [{name: x, match: {verb: [NOPE]}}]\n")
    a.proc.send_signal(signal.SIGHUP)
    a.wait_for(lambda evs: any(e["alert"]["kind"] == "policy_rejected" for e in evs.of("alert")))
    a.stop()
    lines = log_lines(a)
    assert any(l.startswith("dbwarden: warning: alert policy_rejected: reload refused")
               for l in lines), lines
    # info (ready, summaries) and debug (connections) are below the threshold
    assert all(l.startswith(("dbwarden: warning: ", "dbwarden: error: ")) for l in lines), lines

    policy.write_text(POLICY)
    b = agent("--policy", str(policy), "-v")
    res, pid = pg.psql("-c", "SELECT 'log_lit_32'", "-c", "DROP TABLE log_no_such", check=False)
    b.wait_for(lambda evs: len(evs.statements(pid)) == 2)
    b.stop()
    lines = log_lines(b)
    assert any(l.startswith("dbwarden: ready: watching") for l in lines), lines
    assert any(re.match(rf"dbwarden: debug: connection \d+ opened: pid {pid} \(psql\)", l)
               for l in lines), lines
    assert any(re.match(r"dbwarden: debug: connection \d+ closed: 2 statements", l)
               for l in lines), lines
    text = "\n".join(lines)
    for secret in ("log_lit_31", "log_lit_32", "log_no_such", "SELECT"):
        assert secret not in text, secret
