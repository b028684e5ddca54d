# SPDX-License-Identifier: GPL-2.0-only
"""Reading and checking the agent's audit events (dbwarden.audit/v1)."""
import json
import os
import subprocess
import time

SCHEMA = "dbwarden.audit/v1"
TYPES = {"statement", "connection_open", "connection_close", "loss", "alert"}


class Events(list):
    """The parsed events of one agent run, plus the raw bytes for leak checks."""

    raw = b""

    def of(self, type_):
        return [e for e in self if e["type"] == type_]

    def statements(self, pid=None, conn=None):
        out = self.of("statement")
        if pid is not None:
            out = [e for e in out if e["actor"]["pid"] == pid]
        if conn is not None:
            out = [e for e in out if e["connection"]["id"] == conn]
        return out

    def texts(self, pid=None):
        return [e["statement"]["text"] for e in self.statements(pid)]

    def losses(self):
        return self.of("loss")


def load(path, growing=False, unclean=False):
    """
    Parse the agent's output. growing: the agent is still writing, so a
    last line without its newline is not there yet.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raw = b""
    if growing and not raw.endswith(b"\n"):
        raw = raw[:raw.rfind(b"\n") + 1]
    evs = Events()
    evs.raw = raw
    for i, line in enumerate(raw.split(b"\n")):
        if not line:
            continue
        try:
            evs.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(f"line {i + 1} is not JSON ({e}): {line[:200]!r}")
    check_envelope(evs, unclean)
    return evs


def check_envelope(evs, unclean=False):
    """
    Every event has the v1 envelope; agent.seq runs 1, 2, 3, ... with no gap.
    unclean: the agent was killed and restarted; seq may jump forward only to
    an unclean_restart alert (the events the killed run had numbered but not
    written out), never back.
    """
    skipped = 0
    for i, e in enumerate(evs):
        assert e.get("schema") == SCHEMA, e
        assert e.get("type") in TYPES, e
        assert isinstance(e.get("time"), str) and e["time"].endswith("Z"), e
        agent = e["agent"]
        assert agent["id"] and agent["node"], e
        if unclean and agent["seq"] > i + 1 + skipped and e["type"] == "alert" and \
                e["alert"]["kind"] == "unclean_restart":
            skipped = agent["seq"] - i - 1
        assert agent["seq"] == i + 1 + skipped, f"agent.seq gap at line {i + 1}: {agent['seq']}"
        if e["type"] in ("statement", "connection_open", "connection_close"):
            c = e["connection"]
            assert c["protocol"] in ("postgres", "mysql", "redis") and c["id"], e
            assert c["client"] and c["server"], e
            a = e["actor"]
            for k in ("pid", "uid", "gid", "comm", "cgroup"):
                assert k in a, (k, e)
        if e["type"] == "statement":
            s, o = e["statement"], e["outcome"]
            assert isinstance(s["text"], str), e
            assert s["verb"], e
            assert o["status"] in ("ok", "error", "skipped", "unknown", "blocked"), e
            assert e["decision"]["action"] in ("allow", "alert", "block", "require_approval"), e
        if e["type"] == "loss":
            assert e["loss"]["count"] > 0, e


def assert_no_literals(evs, literals):
    """None of the given literal values appears anywhere in the output bytes."""
    for lit in literals:
        b = lit.encode() if isinstance(lit, str) else lit
        assert b not in evs.raw, f"literal {lit!r} leaked into the audit output"


def assert_no_loss(evs, agent=None):
    assert evs.losses() == [], evs.losses()
    if agent is not None:
        err = agent.stderr()
        assert "dbwarden: warning: loss:" not in err, err


def bpf_ids_of(pid, kind):
    """IDs of the BPF objects of kind ("prog", "map") process pid holds open (its fdinfo)."""
    ids = set()
    fddir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fddir):
        try:
            with open(os.path.join(fddir, fd)) as f:
                for line in f:
                    if line.startswith(f"{kind}_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            continue
    return sorted(ids)


def progs_of(pid):
    """IDs of the BPF programs process pid holds open."""
    return bpf_ids_of(pid, "prog")


def loaded_progs(ids, wait=5.0):
    """
    Which of the given BPF program IDs are still loaded after up to wait
    seconds: the kernel frees a program whose last user was a sockmap psock
    from a deferred work item, a moment after the agent exits.
    """
    deadline = time.time() + wait
    while True:
        out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                             check=True).stdout
        left = [p["id"] for p in json.loads(out) if p["id"] in ids]
        if not left or time.time() > deadline:
            return left
        time.sleep(0.1)
