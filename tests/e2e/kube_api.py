# SPDX-License-Identifier: GPL-2.0-only
"""
A Kubernetes API server stand-in for the identity tests, the one thing
these tests mock (no cluster can run here). It speaks what the agent
needs of the real one, over real TLS:

- HTTPS with a CA and a server certificate made here with openssl (and a
  second, unrelated CA for the test that the agent checks the chain);
- bearer-token auth (401 Status otherwise);
- GET /api/v1/pods?fieldSelector=spec.nodeName=NODE: a PodList, paged
  with limit/continue, holding only NODE's pods (others are stored too);
- the same with watch=1&resourceVersion=RV: a chunked stream of one JSON
  event per line, first every change after RV, then live ADDED,
  MODIFIED, DELETED events the test makes, and an ERROR 410 Gone (or an
  HTTP 410) when the test expires the history.

Every request is logged for assertions.
"""
import base64
import copy
import http.server
import json
import os
import queue
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    """A self-signed CA: (cert path, key path)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")


def make_server_cert(d, ca):
    """kube-apiserver's certificate for 127.0.0.1 and localhost, signed by ca."""
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver",
            cwd=d)
    openssl("x509", "-req", "-in", "apiserver.csr", "-CA", os.path.basename(ca),
            "-CAkey", os.path.basename(ca)[:-4] + ".key", "-CAcreateserial",
            "-out", "apiserver.crt", "-days", "2", "-extfile", "san.cnf", cwd=d)
    return os.path.join(d, "apiserver.crt"), os.path.join(d, "apiserver.key")


def make_pod(name, namespace, uid, service_account, labels, node, containers,
             runtime="containerd"):
    """A v1.Pod as the API returns it; containers: {name: container id}."""
    return {
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid, "resourceVersion": "0",
            "generateName": name.rsplit("-", 1)[0] + "-",
            "creationTimestamp": "2026-11-24T08:00:00Z", "labels": dict(labels),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": name.rsplit("-", 1)[0], "uid": str(uuid.uuid4()),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": node, "serviceAccountName": service_account,
            "serviceAccount": service_account, "restartPolicy": "Always",
            "containers": [{"name": c, "image": f"registry.example/{c}:1.0"}
                           for c in containers],
        },
        "status": {
            "phase": "Running", "podIP": "10.244.1.17", "hostIP": "10.0.0.2",
            "qosClass": "Burstable",
            "containerStatuses": [
                {"name": c, "containerID": f"{runtime}://{cid}", "ready": True,
                 "restartCount": 0, "image": f"registry.example/{c}:1.0",
                 "started": True, "state": {"running": {"startedAt": "2026-11-24T08:00:01Z"}}}
                for c, cid in containers.items()],
        },
    }


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that refuses our certificate, or goes away: expected here


class FakeKubeApi:
    def __init__(self, workdir, node="node-1"):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.node = node
        self.token = uuid.uuid4().hex
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        self.ca, _ = make_ca(self.dir, "cluster-ca")
        self.other_ca, _ = make_ca(self.dir, "other-ca")
        self.cert, self.key = make_server_cert(self.dir, self.ca)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.pods = {}  # uid -> pod
        self.rv = 1000
        self.log = []  # (rv, event) for watches that resume
        self.expired_below = 0  # a watch from an older rv gets 410
        self.expire_http = False  # ... as an HTTP 410, or as an ERROR event
        self.page_limit = 2  # pages of at most this many pods: continue is exercised
        self.watchers = set()
        self.conns = set()
        self.requests = []
        self.httpd = None

    # ---- the test's side ----------------------------------------------------------

    def start(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        api = self

        class Handler(_Handler):
            pass

        Handler.api = api
        Handler.tls = ctx
        self.httpd = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        """The API goes away: no more connections, open ones cut."""
        if not self.httpd:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for q in self.watchers:
                q.put(None)
            for s in list(self.conns):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.httpd = None

    def _change(self, type_, pod):
        """Record a change (under the lock) and send it to every watch of its node."""
        self.rv += 1
        pod["metadata"]["resourceVersion"] = str(self.rv)
        ev = {"type": type_, "object": dict(pod, kind="Pod", apiVersion="v1")}
        self.log.append((self.rv, ev))
        if pod["spec"]["nodeName"] == self.node:
            for q in self.watchers:
                q.put(ev)

    def add(self, pod):
        with self.lock:
            pod = copy.deepcopy(pod)
            self.pods[pod["metadata"]["uid"]] = pod
            self._change("ADDED", pod)

    def modify(self, uid, labels=None, service_account=None):
        with self.lock:
            pod = copy.deepcopy(self.pods[uid])
            if labels is not None:
                pod["metadata"]["labels"] = dict(labels)
            if service_account is not None:
                pod["spec"]["serviceAccountName"] = service_account
            self.pods[uid] = pod
            self._change("MODIFIED", pod)

    def delete(self, uid):
        with self.lock:
            pod = self.pods.pop(uid)
            self._change("DELETED", copy.deepcopy(pod))

    def expire(self, http_status=False):
        """Forget the history: every watch gets 410 Gone and must list again."""
        with self.lock:
            self.expired_below = self.rv  # a list now gives rv: watching from it is fine
            self.expire_http = http_status
            gone = {"type": "ERROR", "object": self._status(410, "Expired",
                                                            "too old resource version")}
            for q in self.watchers:
                q.put(gone)
                q.put(None)

    def lists(self):
        return [r for r in self.requests if r["kind"] == "list"]

    def watches(self):
        return [r for r in self.requests if r["kind"] == "watch"]

    @staticmethod
    def _status(code, reason, message):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api = None
    tls = None

    def setup(self):
        # TLS in the connection's own thread: a failed handshake stops only it
        self.request = self.tls.wrap_socket(self.request, server_side=True)
        with self.api.lock:
            self.api.conns.add(self.request)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            with self.api.lock:
                self.api.conns.discard(self.request)

    def log_message(self, *a):
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, obj):
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        api = self.api
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        watch = q.get("watch") in ("1", "true")
        api.requests.append({"kind": "watch" if watch else "list", "query": q,
                             "auth": self.headers.get("Authorization", "")})
        if self.headers.get("Authorization") != f"Bearer {api.token}":
            return self._json(401, api._status(401, "Unauthorized", "Unauthorized"))
        if url.path != "/api/v1/pods":
            return self._json(404, api._status(404, "NotFound", "the server could not find "
                                               "the requested resource"))
        sel = q.get("fieldSelector", "")
        if not sel.startswith("spec.nodeName="):
            return self._json(400, api._status(400, "BadRequest", "fieldSelector required"))
        node = sel[len("spec.nodeName="):]
        if watch:
            return self._watch(node, int(q.get("resourceVersion") or 0))
        return self._list(node, q)

    def _list(self, node, q):
        api = self.api
        with api.lock:
            if "continue" in q:
                tok = json.loads(base64.b64decode(q["continue"]))
                start, rv = tok["start"], tok["rv"]
            else:
                start, rv = 0, api.rv
            pods = sorted((p for p in api.pods.values() if p["spec"]["nodeName"] == node),
                          key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
            limit = min(int(q.get("limit") or 500), api.page_limit)
            page = copy.deepcopy(pods[start:start + limit])
        meta = {"resourceVersion": str(rv)}
        if start + limit < len(pods):
            meta["continue"] = base64.b64encode(json.dumps(
                {"start": start + limit, "rv": rv}).encode()).decode()
        self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta,
                         "items": page})

    def _watch(self, node, rv):
        api = self.api
        events = queue.Queue()
        with api.lock:
            if rv < api.expired_below and api.expire_http:
                return self._json(410, api._status(410, "Expired", "too old resource version"))
            expired = rv < api.expired_below
            if not expired:
                for at, ev in api.log:
                    if at > rv and ev["object"]["spec"]["nodeName"] == node:
                        events.put(ev)
                api.watchers.add(events)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if expired:
                # what the real API does: a 200, then an ERROR event, then the end
                self._chunk({"type": "ERROR", "object": api._status(
                    410, "Expired", f"too old resource version: {rv} ({api.rv})")})
                self.wfile.write(b"0\r\n\r\n")
                return
            while True:
                try:
                    ev = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if ev is None:
                    break
                self._chunk(ev)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            with api.lock:
                api.watchers.discard(events)
