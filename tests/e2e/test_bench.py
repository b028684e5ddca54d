# SPDX-License-Identifier: GPL-2.0-only
"""The benchmark harness works end to end (a smoke run: it asserts no speed)."""
import json
import os
import subprocess

from conftest import DBW_BIN, ROOT

KEYS = ["tps_ratio_plain_select", "tps_ratio_plain_tpcb", "tps_ratio_tls_select",
        "tps_ratio_policy_select", "p99_added_us", "completeness", "lost_events",
        "agent_cpu_us_per_stmt", "agent_rss_mb", "pipeline_stmts_per_s", "kafka_events_per_s"]


def test_bench_smoke(tmp_path):
    env = dict(os.environ, BENCH_SMOKE="1", BENCH_RESULTS=str(tmp_path))
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "run.py")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "latest.json").read_text())
    for k in KEYS:
        assert k in res, k
    # what does not exist yet is null; what does is measured
    assert res["kafka_events_per_s"] is None
    assert res["tps_ratio_plain_select"] > 0 and res["pipeline_stmts_per_s"] > 0
    assert res["tps_ratio_tls_select"] > 0
    # completeness is a fact, not a speed: every statement pgbench sent is an event
    assert res["completeness"] == 1.0 and res["lost_events"] == 0
    seen, sent = res["tls_statements_seen"]
    assert seen == sent > 0
    # the probe cost per TLS call was measured for both kinds of sites
    assert set(res["tls_probe_added_ns_per_call"]) == {"emulated", "exported"}
    assert {r["case"] for r in res["raw"]} == {"select", "tpcb", "tls_select", "policy_select"}
    assert (tmp_path / "tps.png").stat().st_size > 1000
    assert "ratio" in r.stdout
