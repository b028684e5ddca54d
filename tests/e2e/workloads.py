# SPDX-License-Identifier: GPL-2.0-only
"""
Workloads for the identity tests: real cgroups under the cgroup v2 mount
with the names the kubelet and container runtimes give them, real clients
(psql, psycopg2) moved into them before they connect, and a reader of the
agent's workload class map in the kernel. Everything made here is undone
by cleanup(): processes moved back to the root, cgroups removed.
"""
import errno
import json
import os
import subprocess
import sys
import time
import uuid

import events

HERE = os.path.dirname(os.path.abspath(__file__))


def cgroup2_mount():
    """The cgroup v2 mount: /sys/fs/cgroup on unified hosts, .../unified on hybrid ones."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.split()[0] == "cgroup2":
                mnt = left.split()[4]
                if found is None or mnt == "/sys/fs/cgroup":
                    found = mnt
    assert found, "no cgroup v2 hierarchy mounted"
    return found


def new_uid():
    return str(uuid.uuid4())


def new_container_id():
    return uuid.uuid4().hex + uuid.uuid4().hex


def systemd_pod_path(uid, cid, qos="burstable", runtime="cri-containerd"):
    """The kubelet's systemd-driver path of a container (the uid's '-' written '_')."""
    u = uid.replace("-", "_")
    scope = f"{runtime}-{cid}.scope"
    if qos == "guaranteed":
        return f"/kubepods.slice/kubepods-pod{u}.slice/{scope}"
    return f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{u}.slice/{scope}"


def cgroupfs_pod_path(uid, cid, qos="burstable"):
    """The kubelet's cgroupfs-driver path of a container."""
    if qos == "guaranteed":
        return f"/kubepods/pod{uid}/{cid}"
    return f"/kubepods/{qos}/pod{uid}/{cid}"


class Cgroups:
    """The cgroups a test makes, and the processes it moves into them."""

    def __init__(self):
        self.mnt = cgroup2_mount()
        self.made = []  # absolute paths, parents first

    def path(self, rel):
        return self.mnt + rel

    def make(self, rel):
        """mkdir -p under the mount; remembers what it created. Returns the cgroup id."""
        cur = self.mnt
        for part in rel.strip("/").split("/"):
            cur = os.path.join(cur, part)
            try:
                os.mkdir(cur)
                self.made.append(cur)
            except FileExistsError:
                pass
        return os.stat(cur).st_ino

    def cgroup_id(self, rel):
        return os.stat(self.path(rel)).st_ino

    def move(self, pid, rel):
        with open(os.path.join(self.path(rel), "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def _rmdir(self, d):
        """Move d's processes back to the root, then remove it."""
        deadline = time.time() + 10
        while True:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = f.read().split()
            except FileNotFoundError:
                return
            for pid in pids:
                try:
                    with open(os.path.join(self.mnt, "cgroup.procs"), "w") as f:
                        f.write(pid)
                except OSError:
                    pass  # exited meanwhile
            try:
                os.rmdir(d)
                return
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return
                if e.errno != errno.EBUSY or time.time() > deadline:
                    raise
                time.sleep(0.05)  # an exiting process still counted

    def remove(self, rel):
        """Remove the (leaf) cgroup rel now."""
        self._rmdir(self.path(rel))
        self.made.remove(self.path(rel))

    def cleanup(self):
        """Every cgroup made, deepest first."""
        for d in reversed(self.made):
            self._rmdir(d)
        self.made = []


def cgroups_made(*rels):
    """A fixture's body: these cgroups for one test, removed after it."""
    cg = Cgroups()
    for rel in rels:
        cg.make(rel)
    yield cg
    cg.cleanup()


def psql_in(cgroups, rel, pg, *args, check=False, prefix=()):
    """
    Run psql over TCP from inside cgroup rel: a shell waits until it has
    been moved, then execs psql (same pid; prefix must exec too, as
    setpriv does). Returns (CompletedProcess, pid).
    """
    cmd = list(prefix) + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", "-h", "127.0.0.1",
                          "-p", str(pg.port), "-U", "postgres", "-d", "postgres"] + list(args)
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + cmd,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd="/")
    try:
        cgroups.move(p.pid, rel)
        out, err = p.communicate("go\n", timeout=60)
    except BaseException:
        p.kill()
        p.wait()
        raise
    res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and p.returncode != 0:
        raise AssertionError(f"psql failed ({p.returncode}): {err}")
    return res, p.pid


class SqlClient:
    """
    A psycopg2 client in its own process (sql_client.py), moved into a
    cgroup before it connects, that keeps its connection across requests.
    """

    def __init__(self, cgroups, rel, dsn):
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "sql_client.py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd="/")
        self.pid = self.p.pid
        cgroups.move(self.pid, rel)
        self.request({"connect": dsn})

    def request(self, cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "sql client died"
        out = json.loads(line)
        if "connect" in cmd:
            assert out["ok"], out
        return out

    def sql(self, text):
        return self.request({"sql": text})

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def agent_map_id(pid, name):
    """The id of the BPF map called name that process pid holds open."""
    for i in events.bpf_ids_of(pid, "map"):
        out = subprocess.run(["bpftool", "-j", "map", "show", "id", str(i)],
                             capture_output=True, text=True)
        if out.returncode == 0 and json.loads(out.stdout).get("name") == name:
            return i
    raise AssertionError(f"process {pid} holds no map {name}")


def workload_classes(pid):
    """The agent's workload_class map in the kernel: {cgroup id: rule bits}."""
    mid = agent_map_id(pid, "workload_class")
    out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)], capture_output=True,
                         text=True, check=True)
    return {e["formatted"]["key"]: e["formatted"]["value"]["rules"]
            for e in json.loads(out.stdout)}


def wait_until(pred, timeout=15.0, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)
