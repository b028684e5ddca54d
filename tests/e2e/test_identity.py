# SPDX-License-Identifier: GPL-2.0-only
"""
Workload identity end to end: real cgroups named as the kubelet names them
(systemd and cgroupfs drivers, containerd, CRI-O, docker), real clients
moved into them, the real agent, and a Kubernetes API stand-in over real
TLS (kube_api.py): events name the pod, policies select pods and the
kernel enforces them alone, the API going away degrades identity without
stopping capture, and pod fields fill in when it comes back.
"""
import os
import shutil
import signal
import subprocess
import uuid

import pytest

import events
from conftest import DBW_BIN, Agent
from kube_api import FakeKubeApi, make_pod
from workloads import (Cgroups, SqlClient, cgroupfs_pod_path, new_container_id, new_uid,
                       psql_in, systemd_pod_path, wait_until, workload_classes)

BLOCKED = "blocked by dbwarden rule"

POLICY = """\
version: 1
rules:
  - name: agents-no-ddl
    match:
      verb: [DROP, TRUNCATE]
      actor: {pod_namespace: ai, service_account: sql-agent, labels: {app: agent}}
    action: block
    message: AI agents may not drop tables
"""


@pytest.fixture
def kube(tmp_path):
    api = FakeKubeApi(tmp_path / "kube")
    yield api
    api.stop()


@pytest.fixture
def cgroups():
    cg = Cgroups()
    yield cg
    cg.cleanup()


def k8s_args(kube, ca=None, token_file=None):
    return ("--k8s-api", kube.url, "--k8s-ca", ca or kube.ca,
            "--k8s-token-file", token_file or kube.token_file, "--node-name", kube.node)


class Pod:
    """A pod of the test: its API object and its container's cgroup."""

    def __init__(self, name, namespace, sa, labels, layout="systemd", qos="burstable",
                 runtime="cri-containerd", container="app", node="node-1"):
        self.uid, self.cid = new_uid(), new_container_id()
        self.name, self.namespace, self.sa = name, namespace, sa
        self.labels, self.container = dict(labels), container
        if layout == "systemd":
            self.cgroup = systemd_pod_path(self.uid, self.cid, qos, runtime)
        else:
            self.cgroup = cgroupfs_pod_path(self.uid, self.cid, qos)
        scheme = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}[runtime]
        self.obj = make_pod(name, namespace, self.uid, sa, labels, node,
                            {container: self.cid, "sidecar": new_container_id()}, scheme)

    def expected(self, labels=None):
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                "service_account": self.sa,
                "labels": self.labels if labels is None else labels,
                "container": self.container}

    def degraded(self):
        return {"namespace": None, "name": None, "uid": self.uid, "service_account": None,
                "labels": None, "container": None}


def wait_synced(agent, pods):
    wait_until(lambda: f"answers: {pods} pods" in agent.stderr(), what="API listed")


def summary(agent):
    """The agent's identity counters, from its exit summary."""
    line = next(l for l in agent.stderr().splitlines() if l.startswith("dbwarden: identity:"))
    return {k: int(v) for k, v in (f.split("=") for f in line.split()[2:])}


def table(pg, name):
    pg.psql("-c", f"CREATE TABLE {name} (id int)", host=pg.dir)
    return name


def exists(pg, name):
    res, _ = pg.psql("-At", "-c", f"SELECT to_regclass('{name}') IS NOT NULL", host=pg.dir)
    return res.stdout.strip() == "t"


def actor_of(evs, pid):
    st = evs.statements(pid=pid)
    assert st, f"no statement event of pid {pid}"
    return st[-1]["actor"]


def test_events_name_the_pod_both_drivers(pg, agent, kube, cgroups):
    """systemd and cgroupfs layouts, three runtimes, a lone docker container, a host process."""
    pods = [
        Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent", "team": "data"}),
        Pod("shop-0", "shop", "web", {"app": "shop"}, layout="cgroupfs", qos="besteffort",
            container="web"),
        Pod("batch-x2k9q", "batch", "default", {}, qos="guaranteed", runtime="crio",
            container="job"),
        Pod("report-5d8f7", "ai", "reporting", {"app": "report"}, layout="cgroupfs",
            qos="guaranteed"),
    ]
    elsewhere = Pod("other-node-pod", "ai", "sql-agent", {"app": "agent"}, node="node-2")
    for p in pods + [elsewhere]:
        kube.add(p.obj)
        cgroups.make(p.cgroup)
    docker_cid = new_container_id()
    docker = f"/system.slice/docker-{docker_cid}.scope"
    cgroups.make(docker)
    kube.start()
    a = agent(*k8s_args(kube))
    wait_synced(a, len(pods))
    pids = {}
    for p in pods:
        res, pids[p.name] = psql_in(cgroups, p.cgroup, pg, "-c", "SELECT 1", check=True)
    _, docker_pid = psql_in(cgroups, docker, pg, "-c", "SELECT 1", check=True)
    _, host_pid = pg.psql("-c", "SELECT 1")
    evs = a.stop()
    for p in pods:
        act = actor_of(evs, pids[p.name])
        assert act["cgroup"] == p.cgroup
        assert act["container_id"] == p.cid
        assert act["pod"] == p.expected(), act
        opens = [e for e in evs.of("connection_open") if e["actor"]["pid"] == pids[p.name]]
        assert opens and opens[0]["actor"]["pod"] == p.expected()
    act = actor_of(evs, docker_pid)
    assert act["container_id"] == docker_cid and act["pod"] is None
    act = actor_of(evs, host_pid)
    assert act["container_id"] is None and act["pod"] is None
    # only this node's pods were asked for, with the token
    assert kube.lists() and kube.watches()
    for r in kube.requests:
        assert r["query"]["fieldSelector"] == "spec.nodeName=node-1"
        assert r["auth"] == f"Bearer {kube.token}"
    # two pods per page here: the list followed the continue token
    assert len(kube.lists()) >= 2
    assert summary(a)["identity_degraded"] == 0
    events.assert_no_loss(evs, a)


def test_policy_on_pods_enforced_by_the_kernel_alone(pg, agent, kube, cgroups, tmp_path):
    """
    A rule on namespace, service account and label blocks one pod and not
    another; with the daemon stopped (SIGSTOP) the kernel still tells them
    apart by its per-cgroup classes: without them it could only block both.
    """
    agent_pod = Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent"})
    other = Pod("report-5d8f7", "ai", "sql-agent", {"app": "report"}, layout="cgroupfs")
    for p in (agent_pod, other):
        kube.add(p.obj)
        cgroups.make(p.cgroup)
    kube.start()
    policy = tmp_path / "pods.yaml"
    policy.write_text(POLICY)
    t = [table(pg, f"idp_{uuid.uuid4().hex[:8]}") for _ in range(4)]
    a = agent("--policy", str(policy), *k8s_args(kube))
    wait_synced(a, 2)
    ids = {p.name: cgroups.cgroup_id(p.cgroup) for p in (agent_pod, other)}
    classes = wait_until(lambda: (lambda c: c if all(i in c for i in ids.values()) else None)(
        workload_classes(a.proc.pid)), what="workload classes in the kernel")
    assert classes[ids["agent-7f9c4"]] == 1 and classes[ids["report-5d8f7"]] == 0
    assert classes[0] == 1  # a cgroup not classified yet: the stricter set
    res, pid_a1 = psql_in(cgroups, agent_pod.cgroup, pg, "-c", f"DROP TABLE {t[0]}")
    assert f"{BLOCKED} agents-no-ddl: AI agents may not drop tables" in res.stderr, res.stderr
    res, pid_b1 = psql_in(cgroups, other.cgroup, pg, "-c", f"DROP TABLE {t[1]}")
    assert res.returncode == 0 and BLOCKED not in res.stderr, res.stderr
    # the daemon frozen: no userspace decision can reach the kernel now
    a.proc.send_signal(signal.SIGSTOP)
    try:
        res, pid_a2 = psql_in(cgroups, agent_pod.cgroup, pg, "-c", f"DROP TABLE {t[2]}")
        assert f"{BLOCKED} agents-no-ddl" in res.stderr, res.stderr
        res, pid_b2 = psql_in(cgroups, other.cgroup, pg, "-c", f"DROP TABLE {t[3]}")
        assert res.returncode == 0 and BLOCKED not in res.stderr, res.stderr
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert exists(pg, t[0]) and exists(pg, t[2])
    assert not exists(pg, t[1]) and not exists(pg, t[3])
    evs = a.stop()
    for pid in (pid_a1, pid_a2):
        st = evs.statements(pid=pid)
        assert len(st) == 1 and st[0]["decision"]["action"] == "block"
        assert st[0]["decision"]["rule"] == "agents-no-ddl"
        assert st[0]["decision"]["enforced_by"] == "kernel"
        assert st[0]["actor"]["pod"]["labels"] == {"app": "agent"}
    for pid in (pid_b1, pid_b2):
        st = evs.statements(pid=pid)
        assert len(st) == 1 and st[0]["decision"]["action"] == "allow"
        assert st[0]["outcome"]["status"] == "ok"
    assert "guard_early=" in a.stderr() and "guard_early=0 " not in a.stderr()
    assert [e for e in evs.of("alert") if e["alert"]["kind"] == "guard_mismatch"] == []
    for name in t:
        pg.psql("-c", f"DROP TABLE IF EXISTS {name}", host=pg.dir)


def test_workload_classes_follow_cgroups_as_they_come_and_go(agent, kube, cgroups, tmp_path):
    """One walk at start; afterwards inotify: new cgroups classified, removed ones forgotten."""
    kube.start()
    policy = tmp_path / "pods.yaml"
    policy.write_text(POLICY)
    a = agent("--policy", str(policy), *k8s_args(kube))
    wait_synced(a, 0)
    pod = Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent"}, layout="cgroupfs")
    kube.add(pod.obj)
    svc = "/system.slice/backup.service"
    ids = {cgroups.make(pod.cgroup): 1, cgroups.make(svc): 0}

    def classes_are(want):
        return lambda: (lambda c: all(c.get(i) == r for i, r in want.items()))(
            workload_classes(a.proc.pid))

    wait_until(classes_are(ids), what="new cgroups classified")
    # the pod slice above the container is the pod's too (no container: still its pod)
    slice_id = cgroups.cgroup_id(os.path.dirname(pod.cgroup))
    assert workload_classes(a.proc.pid)[slice_id] == 1
    cgroups.remove(pod.cgroup)
    gone = next(iter(ids))
    wait_until(lambda: gone not in workload_classes(a.proc.pid), what="a removed cgroup forgotten")
    a.stop()
    line = next(l for l in a.stderr().splitlines() if "workload classes:" in l)
    assert "inotify=1 walks=1 " in line, line  # no periodic walk was needed


def test_watch_added_modified_deleted_and_gone(pg, agent, kube, cgroups, tmp_path):
    """
    Pods and cgroups that appear after the agent started, a label change
    that lifts a block, a deleted pod (identity degraded, stricter), and a
    410 Gone, in the stream and as an HTTP status, that forces a re-list.
    """
    first = Pod("agent-aaaa1", "ai", "sql-agent", {"app": "agent"})
    kube.add(first.obj)
    cgroups.make(first.cgroup)
    kube.start()
    policy = tmp_path / "pods.yaml"
    policy.write_text(POLICY)
    t = table(pg, f"idw_{uuid.uuid4().hex[:8]}")
    a = agent("--policy", str(policy), *k8s_args(kube))
    wait_synced(a, 1)
    # ADDED: a new pod, its cgroup made after the agent started
    late = Pod("agent-bbbb2", "ai", "sql-agent", {"app": "agent"}, layout="cgroupfs")
    kube.add(late.obj)
    cgroups.make(late.cgroup)

    def attempt(pod, ok):
        """A DROP from pod's cgroup until its event's pod and its verdict are as ok wants."""
        def check():
            res, pid = psql_in(cgroups, pod.cgroup, pg, "-c", f"DROP TABLE IF EXISTS {t}_x")
            evs = a.wait_for(lambda evs: evs.statements(pid=pid))
            return ok(res, actor_of(evs, pid)["pod"]) and (pid, res)
        return check

    pid_added, _ = wait_until(attempt(late, lambda res, pod: BLOCKED in res.stderr and
                                      pod["name"] == late.name), what="the added pod's block")
    # MODIFIED: not app=agent any more, so the rule no longer holds
    kube.modify(late.uid, labels={"app": "reporting"})
    pid_modified, _ = wait_until(attempt(late, lambda res, pod: res.returncode == 0 and
                                         BLOCKED not in res.stderr),
                                 what="the relabelled pod allowed")
    # 410 Gone inside the watch stream: the agent lists again, and goes on watching
    lists = len(kube.lists())
    kube.expire()
    wait_until(lambda: len(kube.lists()) > lists, what="a re-list after ERROR 410")
    after = Pod("shop-cccc3", "shop", "web", {"app": "shop"})
    kube.add(after.obj)
    cgroups.make(after.cgroup)
    wait_until(attempt(after, lambda res, pod: pod["name"] == after.name),
               what="a pod added after the re-list")
    # and a 410 as the watch request's HTTP status
    lists = len(kube.lists())
    kube.expire(http_status=True)
    wait_until(lambda: len(kube.lists()) > lists, what="a re-list after HTTP 410")
    # DELETED: the pod's metadata is gone, its cgroup still runs a client
    kube.delete(late.uid)
    pid_deleted, res = wait_until(attempt(late, lambda res, pod: pod["name"] is None),
                                  what="the deleted pod forgotten")
    # an unknown pod may be one the rule means: blocked, stricter never looser
    assert BLOCKED in res.stderr
    evs = a.stop()
    assert actor_of(evs, pid_added)["pod"] == late.expected()
    assert actor_of(evs, pid_modified)["pod"] == late.expected(labels={"app": "reporting"})
    assert actor_of(evs, pid_deleted)["pod"] == late.degraded()
    assert actor_of(evs, pid_deleted)["container_id"] == late.cid
    counters = summary(a)
    assert counters["k8s_relists"] == 2, counters  # one per 410
    assert counters["identity_degraded"] >= 1, counters  # the deleted pod's client
    assert exists(pg, t)
    pg.psql("-c", f"DROP TABLE IF EXISTS {t}", host=pg.dir)


def test_api_down_capture_goes_on_and_pods_fill_in(pg, agent, kube, cgroups):
    pod = Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent"})
    kube.add(pod.obj)
    cgroups.make(pod.cgroup)
    # the API is not there when the agent starts
    a = agent(*k8s_args(kube))
    a.wait_for(lambda evs: any(e["type"] == "alert" and e["alert"]["kind"] == "identity_degraded"
                               for e in evs))
    client = SqlClient(cgroups, pod.cgroup, pg.dsn())
    try:
        assert client.sql("SELECT 'before'")["ok"]
        evs = a.wait_for(lambda evs: evs.statements(pid=client.pid))
        act = actor_of(evs, client.pid)
        assert act["container_id"] == pod.cid and act["cgroup"] == pod.cgroup
        assert act["pod"] == pod.degraded()
        # the API comes back: the same connection's next events name the pod
        kube.start()
        a.wait_for(lambda evs: any(e["type"] == "alert" and
                                   e["alert"]["kind"] == "identity_restored" for e in evs),
                   timeout=20)
        assert client.sql("SELECT 'after'")["ok"]
        evs = a.wait_for(lambda evs: len(evs.statements(pid=client.pid)) == 2)
        assert actor_of(evs, client.pid)["pod"] == pod.expected()
        # it goes away again mid-watch: capture goes on, pods already known stay known
        kube.stop()
        a.wait_for(lambda evs: len([e for e in evs.of("alert")
                                    if e["alert"]["kind"] == "identity_degraded"]) == 2,
                   timeout=20)
        assert client.sql("SELECT 'during'")["ok"]
        res, pid = psql_in(cgroups, pod.cgroup, pg, "-c", "SELECT 1", check=True)
    finally:
        client.close()
    evs = a.stop()
    assert [e["actor"]["pod"]["name"] for e in evs.statements(pid=client.pid)] == [
        None, pod.name, pod.name]
    assert actor_of(evs, pid)["pod"] == pod.expected()
    restored = [e for e in evs.of("alert") if e["alert"]["kind"] == "identity_restored"]
    assert "identity_degraded=1" in restored[0]["alert"]["detail"]
    degraded = [e for e in evs.of("alert") if e["alert"]["kind"] == "identity_degraded"]
    assert "Couldn't connect to server" in degraded[0]["alert"]["detail"], degraded
    assert summary(a)["identity_degraded"] == 1
    events.assert_no_loss(evs, a)


def test_api_certificate_and_token_are_checked(pg, agent, kube, cgroups, tmp_path):
    pod = Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent"})
    kube.add(pod.obj)
    cgroups.make(pod.cgroup)
    kube.start()
    # a certificate that does not chain to the CA given: no pod metadata from it
    a = agent(*k8s_args(kube, ca=kube.other_ca))
    evs = a.wait_for(lambda evs: [e for e in evs.of("alert")
                                  if e["alert"]["kind"] == "identity_degraded"])
    detail = evs.of("alert")[0]["alert"]["detail"]
    assert "certificate" in detail.lower(), detail
    _, pid = psql_in(cgroups, pod.cgroup, pg, "-c", "SELECT 1", check=True)
    evs = a.stop()
    assert actor_of(evs, pid)["pod"] == pod.degraded()
    assert not kube.requests  # the TLS handshake failed before any request
    # a wrong token: the API refuses, and the agent says so
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    os.mkdir(tmp_path / "second")
    a = Agent(str(tmp_path / "second"), pg.port, k8s_args(kube, token_file=str(bad)))
    try:
        evs = a.wait_for(lambda evs: [e for e in evs.of("alert")
                                      if e["alert"]["kind"] == "identity_degraded"])
        assert "HTTP 401: Unauthorized" in evs.of("alert")[0]["alert"]["detail"]
        a.stop()
    finally:
        a.kill()
    assert kube.requests and all(r["auth"] == "Bearer not-the-token" for r in kube.requests)


SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
def in_cluster(kube, monkeypatch):
    """What the kubelet gives a pod: the API's service address, a service account, the node."""
    if os.path.exists("/var/run/secrets"):
        pytest.skip("this host has /var/run/secrets of its own")
    os.makedirs(SA_DIR)
    try:
        for src, name in ((kube.ca, "ca.crt"), (kube.token_file, "token")):
            with open(src) as f, open(os.path.join(SA_DIR, name), "w") as g:
                g.write(f.read())
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(kube.port))
        monkeypatch.setenv("NODE_NAME", kube.node)
        yield
    finally:
        shutil.rmtree("/var/run/secrets")


def test_in_cluster_configuration(pg, agent, kube, cgroups, in_cluster):
    """No flags: the API, CA, token and node come from what a pod is given."""
    pod = Pod("agent-7f9c4", "ai", "sql-agent", {"app": "agent"})
    kube.add(pod.obj)
    cgroups.make(pod.cgroup)
    kube.start()
    a = agent()
    wait_synced(a, 1)
    assert (f"pods of node {kube.node} from https://127.0.0.1:{kube.port} "
            f"(CA {SA_DIR}/ca.crt)") in a.stderr()
    _, pid = psql_in(cgroups, pod.cgroup, pg, "-c", "SELECT 1", check=True)
    evs = a.stop()
    assert actor_of(evs, pid)["pod"] == pod.expected()
    # the node's name, not the host's, names the agent's node in every event
    assert {e["agent"]["node"] for e in evs} == {kube.node}
    assert all(r["query"]["fieldSelector"] == f"spec.nodeName={kube.node}"
               for r in kube.requests)


def test_bad_k8s_flags_are_usage_errors(tmp_path):
    r = subprocess.run([DBW_BIN, "run", "--k8s-api", "http://127.0.0.1:8001"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "https://" in r.stderr


def test_policy_check_and_test_with_pod_selectors(tmp_path):
    path = tmp_path / "pods.yaml"
    path.write_text(POLICY)
    r = subprocess.run([DBW_BIN, "policy", "check", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pod_namespace=ai service_account=sql-agent label.app=agent" in r.stdout

    def verdict(*actor):
        args = [DBW_BIN, "policy", "test", str(path), "--sql", "DROP TABLE t"]
        for kv in actor:
            args += ["--actor", kv]
        r = subprocess.run(args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()[1]

    assert verdict("pod_namespace=ai", "service_account=sql-agent", "label:app=agent") == "block"
    assert verdict("pod_namespace=ai", "service_account=sql-agent", "label:app=x") == "allow"
    assert verdict("user=root") == "allow"  # a host process is no pod
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("pod_namespace: ai", "pod_namespace: AI_Team"))
    r = subprocess.run([DBW_BIN, "policy", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{bad}:6:30: actor.pod_namespace: 'AI_Team' is not a Kubernetes name" in r.stderr
