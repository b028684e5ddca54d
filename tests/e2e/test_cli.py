# SPDX-License-Identifier: GPL-2.0-only
"""The command line: clear errors for bad input, privilege checks, --cgroup."""
import os
import subprocess
import uuid

import pytest

import events
from conftest import DBW_BIN


def run(*args, user=None, timeout=30):
    cmd = [DBW_BIN] + list(args)
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,needle", [
    (["run", "--port", "0"], "--port 0"),
    (["run", "--port", "abc"], "--port abc"),
    (["run", "--port", "5432=oracle"], "unknown protocol 'oracle'"),
    (["run", "--ringbuf-mb", "3"], "power of two"),
    (["run", "--max-conns", "1"], "--max-conns 1"),
    (["run", "--bogus"], "usage"),
    (["run", "extra"], "unexpected argument 'extra'"),
    (["run", "--output", "kafka-please"], "expected stdout or file:PATH"),
    (["run", "--output", "file:"], "expected stdout or file:PATH"),
    (["frobnicate"], "usage"),
    (["replay"], "expected one recording file"),
    (["run", "--log-level", "loud"], "--log-level loud: expected error, warning, info or debug"),
])
def test_bad_arguments_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2, r
    assert needle in r.stderr
    assert r.stdout == ""


def test_version_and_help():
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("dbwarden ")
    r = run("help")
    assert r.returncode == 0 and "dbwarden run" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["run", "--cgroup", "/no/such/cgroup"], "not a cgroup v2 directory"),
    (["run", "--output", "file:/no/such/dir/x.jsonl"], "/no/such/dir/x.jsonl"),
    (["replay", "/no/such/file"], "cannot open /no/such/file"),
])
def test_runtime_errors_exit_1_with_one_line(args, needle):
    r = run(*args)
    assert r.returncode == 1, r
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_unprivileged_run_is_refused_clearly():
    r = run("run", "--port", "5999", user="nobody")
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "privilege" in lines[0] or "CAP_BPF" in lines[0] or "root" in lines[0]


def cgroup2_mount():
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return mnt
    raise AssertionError("no cgroup2 mount on this machine")


def test_cgroup_filter_watches_only_that_subtree(pg, agent):
    root = cgroup2_mount()
    cg = os.path.join(root, f"dbw-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(cg)
    try:
        rel = "/" + os.path.relpath(cg, root)
        a = agent("--cgroup", cg)
        # psql inside the cgroup: a shell moves itself there, then execs psql
        inside = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec psql -X -q -h 127.0.0.1 '
                         f'-p {pg.port} -U postgres -d postgres -c "SELECT 11"'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = inside.communicate(timeout=60)
        assert inside.returncode == 0, err
        res, outside_pid = pg.psql("-c", "SELECT 22")
        evs = a.wait_for(lambda evs: any(e["type"] == "connection_close" for e in evs))
        evs = a.stop()
        st = evs.statements()
        assert len(st) == 1, [(e["actor"], e["statement"]) for e in st]
        assert st[0]["actor"]["pid"] == inside.pid  # sh exec'd psql: same pid
        assert st[0]["actor"]["comm"] == "psql" and st[0]["actor"]["cgroup"] == rel
        assert evs.statements(pid=outside_pid) == []
    finally:
        os.rmdir(cg)
