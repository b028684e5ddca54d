# SPDX-License-Identifier: GPL-2.0-only
"""
Packaging: the Kubernetes manifests, the container image recipe and the
systemd unit parse and carry what the agent needs (mounts, capabilities,
environment, RBAC, probes, flags it knows), and the capability set they
grant is enough: the real agent, run with exactly those capabilities,
captures and names a pod's statements; without one of them it cannot.
"""
import os
import re
import subprocess
import urllib.request

import pytest
import yaml

import events
from conftest import DBW_BIN, ROOT, Agent, free_port
from workloads import Cgroups, new_container_id, new_uid, psql_in, systemd_pod_path

K8S = os.path.join(ROOT, "deploy", "kubernetes")
UNIT = os.path.join(ROOT, "deploy", "systemd", "dbwarden.service")
CAPS = {"BPF", "PERFMON", "NET_ADMIN", "DAC_READ_SEARCH", "SYS_PTRACE", "SYS_RESOURCE"}


def load_kustomization(d):
    """Every object of a kustomization's resources (files, or directories holding one)."""
    with open(os.path.join(d, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    docs = []
    for r in k["resources"]:
        path = os.path.normpath(os.path.join(d, r))
        if os.path.isdir(path):
            docs += load_kustomization(path)
        else:
            with open(path) as f:
                docs += [doc for doc in yaml.safe_load_all(f) if doc]
    for p in k.get("patches", []):
        with open(os.path.join(d, p["path"])) as f:
            ops = yaml.safe_load(f)
        for doc in docs:
            if doc["kind"] == p["target"]["kind"] and doc["metadata"]["name"] == p["target"]["name"]:
                json_patch(doc, ops)
    return docs


def json_patch(doc, ops):
    """The RFC 6902 operations the overlays use: add (with '-') and replace."""
    for op in ops:
        *parents, last = op["path"].strip("/").split("/")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if op["op"] == "add" and last == "-":
            node.append(op["value"])
        elif op["op"] in ("add", "replace"):
            node[int(last) if isinstance(node, list) else last] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {op}")


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, (kind, found)
    return found[0]


def agent_container(docs):
    ds = one(docs, "DaemonSet")
    return ds["spec"]["template"]["spec"], ds["spec"]["template"]["spec"]["containers"][0]


def run_flags():
    """The long options `dbwarden run` knows, from its own usage text."""
    out = subprocess.run([DBW_BIN, "run", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z0-9-]+)", out))


def test_manifests_parse_and_carry_what_the_agent_needs():
    docs = load_kustomization(K8S)
    ns = one(docs, "Namespace")["metadata"]["name"]
    sa, role, binding = one(docs, "ServiceAccount"), one(docs, "ClusterRole"), one(
        docs, "ClusterRoleBinding")
    ds, cm = one(docs, "DaemonSet"), one(docs, "ConfigMap")
    for d in (sa, ds, cm):
        assert d["metadata"]["namespace"] == ns
    # RBAC: get, list and watch on pods, nothing else, bound to the agent's account
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": ns}]
    spec, c = agent_container(docs)
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert spec["hostPID"] is True
    assert spec["automountServiceAccountToken"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    sel = ds["spec"]["selector"]["matchLabels"]
    assert all(ds["spec"]["template"]["metadata"]["labels"][k] == v for k, v in sel.items())
    # capabilities, not privileged; seccomp and AppArmor out of the way of bpf()
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == CAPS
    assert sc["seccompProfile"]["type"] == "Unconfined"
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    assert ann[f"container.apparmor.security.beta.kubernetes.io/{c['name']}"] == "unconfined"
    # host mounts: each path the agent opens, from the host
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: vols[m["name"]] for m in c["volumeMounts"]}
    for inside, host in (("/sys/fs/bpf", "/sys/fs/bpf"), ("/sys/kernel/btf", "/sys/kernel/btf"),
                         ("/sys/fs/cgroup", "/sys/fs/cgroup"), ("/host/proc", "/proc"),
                         ("/etc/machine-id", "/etc/machine-id"),
                         ("/var/lib/dbwarden", "/var/lib/dbwarden")):
        assert mounts[inside]["hostPath"]["path"] == host, inside
    # environment: whose pods, and where the host's /proc is
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["DBW_PROC_ROOT"]["value"] == "/host/proc"
    # arguments: flags the agent knows; the policy file and API socket where mounted
    args = c["args"]
    assert args[0] == "run"
    known = run_flags()
    for a in args[1:]:
        assert a.split("=")[0] in known, a
    opts = dict(a.split("=", 1) for a in args[1:])
    policy_dir, policy_file = os.path.split(opts["--policy"])
    assert mounts[policy_dir]["configMap"]["name"] == cm["metadata"]["name"]
    assert policy_file in cm["data"]
    sock = opts["--api"]
    assert "emptyDir" in mounts[os.path.dirname(sock)]
    # probes: the daemon's loop answering on its --metrics port
    port = int(opts["--metrics"].rsplit(":", 1)[1])
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_configmap_policy_is_valid(tmp_path):
    cm = one(load_kustomization(K8S), "ConfigMap")
    path = tmp_path / "policy.yaml"
    path.write_text(cm["data"]["policy.yaml"])
    r = subprocess.run([DBW_BIN, "policy", "check", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pod_namespace=ai" in r.stdout


def test_kafka_overlay_points_the_agent_at_kafka():
    docs = load_kustomization(os.path.join(K8S, "kafka"))
    _, c = agent_container(docs)
    args = c["args"]
    assert "--output=kafka" in args and "--output=stdout" not in args
    assert "--kafka-brokers=$(KAFKA_BROKERS)" in args
    assert "--kafka-topic=$(KAFKA_TOPIC)" in args
    env = {e["name"]: e for e in c["env"]}
    for var, key in (("KAFKA_BROKERS", "brokers"), ("KAFKA_TOPIC", "topic")):
        assert env[var]["valueFrom"]["configMapKeyRef"] == {"name": "dbwarden-kafka", "key": key}
    assert "NODE_NAME" in env  # the base is still there


def dockerfile_stages():
    """[(FROM line, [packages apt-get installs], [COPY lines])] of the Dockerfile."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            stages.append((line, [], []))
        elif line.startswith("RUN ") and "apt-get install" in line:
            pkgs = line.split("apt-get install", 1)[1].split("&&")[0].split()
            stages[-1][1].extend(p for p in pkgs if not p.startswith("-"))
        elif line.startswith("COPY "):
            stages[-1][2].append(line)
    return stages


def build_group():
    """The build group of scripts/install-deps: what `make` needs here."""
    with open(os.path.join(ROOT, "scripts", "install-deps")) as f:
        text = f.read()
    group = text.split("# build", 1)[1].split("# unit tests", 1)[0]
    return group.split()


def needed_packages():
    """The Debian packages of the shared libraries the binary links directly."""
    out = subprocess.run(["readelf", "-d", DBW_BIN], capture_output=True, text=True,
                         check=True).stdout
    libs = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+)\]", out)
    ldd = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", DBW_BIN], capture_output=True, text=True).stdout, re.M))
    pkgs = set()
    for lib in libs:
        real = os.path.realpath(ldd[lib])
        for cand in (real, real.replace("/usr/lib/", "/lib/", 1)):
            r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs.add(r.stdout.split(":")[0])
                break
        else:
            raise AssertionError(f"no package owns {lib} ({real})")
    return pkgs


def test_dockerfile_builds_the_same_binary():
    (build_from, build_pkgs, build_copies), (run_from, run_pkgs, run_copies) = dockerfile_stages()
    assert build_from == "FROM debian:12 AS build" and run_from == "FROM debian:12-slim"
    # the build stage has exactly what the host build has
    assert sorted(build_pkgs) == sorted(build_group())
    for line in build_copies:
        src = line.split()[1:-1]
        assert all(os.path.exists(os.path.join(ROOT, s)) for s in src), line
    # the runtime stage has every library the binary links (libc is in the base)
    missing = needed_packages() - set(run_pkgs) - {"libc6"}
    assert not missing, f"the image lacks {missing}"
    assert "COPY --from=build /src/.output/dbwarden /usr/local/bin/dbwarden" in run_copies
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        assert ".output" in f.read().split()  # no host build leaks into the image


def test_systemd_unit_verifies_and_grants_the_same_capabilities(tmp_path):
    with open(UNIT) as f:
        text = f.read()
    # verified against the binary built here (the unit names its installed path)
    unit = tmp_path / "dbwarden.service"
    unit.write_text(text.replace("/usr/local/bin/dbwarden", DBW_BIN))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    keys = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert set(keys["CapabilityBoundingSet"].split()) == {f"CAP_{c}" for c in CAPS}
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    exec_start = keys["ExecStart"].split()
    assert exec_start[:2] == ["/usr/local/bin/dbwarden", "run"]
    known = run_flags()
    assert all(a in known for a in exec_start[2:] if a.startswith("--"))
    opt = dict(zip(exec_start[2::2], exec_start[3::2]))
    assert opt["--policy"].startswith(f"/etc/{keys['ConfigurationDirectory']}/")
    assert opt["--api"].startswith(f"/run/{keys['RuntimeDirectory']}/")
    assert opt["--output"].startswith(f"file:/var/log/{keys['LogsDirectory']}/")


@pytest.fixture
def cgroups():
    cg = Cgroups()
    yield cg
    cg.cleanup()


def capped(caps):
    """setpriv: exec the agent as root holding exactly caps (the bounding set)."""
    return ["setpriv", "--inh-caps=-all",
            "--bounding-set=-all," + ",".join("+" + c.lower() for c in sorted(caps)), "--"]


def run_capped(pg, cgroups, workdir, caps, policy):
    """The agent under caps; a client of another user in a pod's cgroup. Returns its actor."""
    uid, cid = new_uid(), new_container_id()
    path = systemd_pod_path(uid, cid)
    cgroups.make(path)
    os.makedirs(workdir)
    api = os.path.join(workdir, "api.sock")
    port = free_port()
    a = Agent(workdir, pg.port, ("--policy", policy, "--api", api, "--metrics",
                                 f"127.0.0.1:{port}"), prefix=capped(caps))
    try:
        # the probes the DaemonSet runs, and the approvals socket
        for probe_path in ("/readyz", "/healthz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe_path}",
                                        timeout=10) as r:
                assert r.status == 200
        probe = subprocess.run([DBW_BIN, "approvals", "--socket", api], capture_output=True,
                               text=True, timeout=10)
        assert probe.returncode == 0, probe.stderr
        _, pid = psql_in(cgroups, path, pg, "-c", "SELECT 1", check=True,
                         prefix=["setpriv", "--reuid=nobody", "--regid=nogroup",
                                 "--clear-groups", "--"])
        evs = a.stop()
    finally:
        a.kill()
    assert a.rc == 0
    st = evs.statements(pid=pid)
    assert len(st) == 1 and st[0]["outcome"]["status"] == "ok", st
    events.assert_no_loss(evs, a)
    return st[0]["actor"], path, uid, cid


def test_granted_capabilities_are_enough(pg, cgroups, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules: []\n")
    act, path, uid, cid = run_capped(pg, cgroups, str(tmp_path / "all"), CAPS, str(policy))
    assert act["user"] == "nobody"
    assert act["exe"].endswith("/psql")  # another user's /proc/PID/exe: SYS_PTRACE
    assert act["cgroup"] == path  # open_by_handle_at: DAC_READ_SEARCH
    assert act["container_id"] == cid and act["pod"]["uid"] == uid
    # one capability less, and the agent cannot tell the workload any more
    act, *_ = run_capped(pg, cgroups, str(tmp_path / "less"), CAPS - {"DAC_READ_SEARCH"},
                         str(policy))
    assert act["cgroup"] is None and act["container_id"] is None and act["pod"] is None
