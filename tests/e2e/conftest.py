# SPDX-License-Identifier: GPL-2.0-only
"""
End-to-end fixtures: a real PostgreSQL 15 on a temporary data dir and port
(loopback only), the real dbwarden agent with its real BPF programs, and
real clients. Everything started here is stopped here, by PID.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

import events

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DBW_BIN = os.environ.get("DBW_BIN", os.path.join(ROOT, ".output", "dbwarden"))
HELPERS = os.environ.get("DBW_HELPERS", os.path.join(ROOT, ".output", "tests"))
PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    """A TCP port free on both 127.0.0.1 and ::1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def as_postgres(cmd, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--"] + cmd, check=True,
                          capture_output=True, text=True, **kw)


class Postgres:
    """
    A throwaway PostgreSQL server: trust auth, 127.0.0.1 and ::1 only.
    ssl=True: TLS on, with a self-signed certificate made here. prefix: a
    command the server runs under (ip netns exec NS: its own loopback).
    """

    def __init__(self, ssl=False, prefix=()):
        self.ssl = ssl
        self.prefix = list(prefix)
        self.dir = tempfile.mkdtemp(prefix="dbw-pg-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.started = False

    def start(self):
        as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                     "--no-sync", "-E", "UTF8", "--locale=C"])
        conf = {
            "listen_addresses": "'127.0.0.1,::1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            "max_connections": "1200",
            "shared_buffers": "32MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
        }
        if self.ssl:
            crt, key = os.path.join(self.data, "server.crt"), os.path.join(self.data, "server.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                            "2", "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
            shutil.chown(crt, "postgres", "postgres")
            shutil.chown(key, "postgres", "postgres")
            os.chmod(key, 0o600)
            conf.update({"ssl": "on", "ssl_cert_file": "'server.crt'",
                         "ssl_key_file": "'server.key'"})
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        subprocess.run(self.prefix + ["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl",
                                      "-D", self.data, "-l", os.path.join(self.dir, "log"),
                                      "-w", "-t", "60", "start"],
                       check=True, capture_output=True, text=True)
        self.started = True

    def stop(self):
        if self.started:
            subprocess.run(self.prefix + ["runuser", "-u", "postgres", "--",
                                          f"{PG_BIN}/pg_ctl", "-D", self.data, "-m",
                                          "immediate", "-w", "stop"],
                           capture_output=True)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, host="127.0.0.1", user="postgres", db="postgres", sslmode=None):
        ssl = f" sslmode={sslmode}" if sslmode else ""
        return f"host={host} port={self.port} user={user} dbname={db}{ssl}"

    def psql(self, *args, user="postgres", host="127.0.0.1", run_as=None, check=True,
             input=None, sslmode=None, prefix=()):
        """Run psql over TCP; returns (CompletedProcess, pid). prefix wraps the command."""
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", "-h", host, "-p", str(self.port),
               "-U", user, "-d", "postgres"] + list(args)
        if run_as:
            cmd = ["runuser", "-u", run_as, "--"] + cmd
        cmd = list(prefix) + cmd
        env = dict(os.environ, PGSSLMODE=sslmode) if sslmode else None
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else None,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd="/", env=env)
        out, err = p.communicate(input, timeout=120)
        res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
        if check and p.returncode != 0:
            raise AssertionError(f"psql failed ({p.returncode}): {err}")
        return res, p.pid


class Agent:
    """The real daemon, started as the product runs it; stop() returns its events."""

    def __init__(self, workdir, port, extra=(), env=None, prefix=(), proto="postgres"):
        """prefix: a command that execs the agent (setpriv with capabilities, ...)."""
        self.out = os.path.join(workdir, "events.jsonl")
        self.errpath = os.path.join(workdir, "agent.stderr")
        self.errf = open(self.errpath, "w")
        # the test's own agent.seq, hash chain and spool, kept across its restarts
        self.state = os.path.join(workdir, "state")
        # pinned only when a test asks: the others prove that exit detaches everything
        self.pin_dir = None
        if "--pin-dir" in extra:
            self.pin_dir = extra[list(extra).index("--pin-dir") + 1]
        else:
            extra = tuple(extra) + ("--no-pin",)
        self.cmd = list(prefix) + [DBW_BIN, "run", "--port", f"{port}={proto}",
                                   "--state-dir", self.state,
                                   "--output", f"file:{self.out}"] + list(extra)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self.errf,
                                     env=dict(os.environ, **env) if env else None)
        self.rc = None
        # an earlier agent of this test was killed: its seq may jump (events.load)
        self.unclean = False
        self._wait_ready()
        # what it loaded, to prove after exit that it detached everything
        self.prog_ids = events.progs_of(self.proc.pid)

    def stderr(self):
        with open(self.errpath) as f:
            return f.read()

    def _ready(self):
        """Its `ready:` line; below info (--log-level), its /readyz (needs --metrics)."""
        if "--log-level" not in self.cmd or "--metrics" not in self.cmd:
            return "dbwarden: ready:" in self.stderr()
        addr = self.cmd[self.cmd.index("--metrics") + 1]
        try:
            with urllib.request.urlopen(f"http://{addr}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def _wait_ready(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            if self._ready():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"agent not ready after 30s: {self.stderr()}")

    def wait_for(self, pred, timeout=10.0):
        """Poll the output (flushed every 10 ms) until pred(events) holds."""
        deadline = time.time() + timeout
        while True:
            evs = events.load(self.out, growing=True, unclean=self.unclean)
            if pred(evs):
                return evs
            if time.time() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            time.sleep(0.05)

    def stop(self):
        """SIGINT, wait for the drain; returns the parsed events."""
        if self.rc is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.rc = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("agent did not exit within 60s of SIGINT")
            self.errf.close()
            self.check_sanitizers()
        return events.load(self.out, unclean=self.unclean)

    def check_sanitizers(self):
        """Under `make e2e-san` the daemon is built with ASan+UBSan: any report fails the test."""
        if os.environ.get("DBW_SANITIZED"):
            err = self.stderr()
            for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                assert mark not in err, f"sanitizer report from the agent:\n{err[-6000:]}"

    def kill(self):
        """SIGKILL, as the OOM killer does: pinned programs stay."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.errf.closed:
            self.errf.close()

    def unpin(self):
        """Remove what it pinned (dbwarden stop --unpin)."""
        if self.pin_dir and os.path.isdir(self.pin_dir):
            subprocess.run([DBW_BIN, "stop", "--unpin", "--pin-dir", self.pin_dir],
                           capture_output=True, timeout=60)


class Redis:
    """A throwaway redis-server on 127.0.0.1, no persistence, its own directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dbw-redis-")
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "log"), "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args, input=None, check=True):
        """Run redis-cli; returns (CompletedProcess, pid)."""
        cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)] + list(args)
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else None,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        out, err = p.communicate(input, timeout=120)
        res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
        if check and p.returncode != 0:
            raise AssertionError(f"redis-cli failed ({p.returncode}): {err}")
        return res, p.pid


class MariaDB:
    """
    A throwaway MariaDB server on 127.0.0.1: root without a password over TCP.
    ssl=True: TLS on, with a self-signed certificate made here.
    """

    def __init__(self, ssl=False):
        self.ssl = ssl
        self.dir = tempfile.mkdtemp(prefix="dbw-maria-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = free_port()
        self.proc = None

    def start(self):
        shutil.chown(self.dir, "mysql", "mysql")
        tls = []
        if self.ssl:
            crt, key = os.path.join(self.dir, "server.crt"), os.path.join(self.dir, "server.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                            "2", "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
            shutil.chown(crt, "mysql", "mysql")
            shutil.chown(key, "mysql", "mysql")
            tls = [f"--ssl-cert={crt}", f"--ssl-key={key}"]
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql",
                        f"--datadir={self.data}", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={self.data}",
             f"--port={self.port}", f"--socket={self.sock}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--skip-log-bin",
             f"--log-error={os.path.join(self.dir, 'log')}", "--innodb-flush-log-at-trx-commit=0"]
            + tls,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            r = subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={self.sock}",
                                "-e", "SELECT 1"], capture_output=True)
            if r.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise AssertionError("mariadbd exited: " + open(os.path.join(self.dir, "log")).read())
            time.sleep(0.2)
        else:
            raise AssertionError("mariadbd did not start")
        # root over TCP (no unix_socket auth there), and a test database
        self.sql_socket("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
                        "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; "
                        "CREATE USER IF NOT EXISTS 'app'@'127.0.0.1' IDENTIFIED BY 'app-secret-pw'; "
                        "CREATE DATABASE IF NOT EXISTS shop; "
                        "GRANT ALL ON shop.* TO 'app'@'127.0.0.1'; FLUSH PRIVILEGES")

    def sql_socket(self, sql):
        """SQL over the Unix socket: not watched by the agent."""
        subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={self.sock}", "-e", sql],
                       check=True, capture_output=True, text=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, *args, user="root", password=None, db="shop", input=None, check=True):
        """Run the mariadb command-line client over TCP; returns (CompletedProcess, pid)."""
        cmd = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port), "-u", user,
               "--skip-ssl", "--batch"]
        if password:
            cmd.append(f"-p{password}")
        if db:
            cmd += ["-D", db]
        cmd += list(args)
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else None,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        out, err = p.communicate(input, timeout=120)
        res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
        if check and p.returncode != 0:
            raise AssertionError(f"mariadb failed ({p.returncode}): {err}")
        return res, p.pid


def serve(server):
    """A fixture's server: started, yielded, stopped whatever happened."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


def agents(tmp_path, default_port, proto="postgres"):
    """
    A fixture's agent factory: start(*extra_args, port=None, env=None) runs
    the agent watching default_port. Agents of one test share its directory:
    one state (agent.seq, chain, spool) and one events file, appended to, as
    a restarted agent would. Every agent is killed afterwards.
    """
    started = []

    def start(*extra, port=None, env=None):
        if "--policy" in extra and "--api" not in extra:
            # the approvals socket of this test's agent, not the host's
            sock = f"api{len(started)}.sock" if started else "api.sock"
            extra = extra + ("--api", str(tmp_path / sock))
        a = Agent(str(tmp_path), port or default_port, extra, env=env, proto=proto)
        started.append(a)
        return a

    yield start
    for a in started:
        a.kill()
    for a in started:
        a.unpin()


def scratch_table(server):
    """A fixture's table of five rows, dropped afterwards over the Unix socket (no agent)."""
    name = f"g_{uuid.uuid4().hex[:8]}"
    server.psql("-c", f"CREATE TABLE {name} (id int, v text); "
                      f"INSERT INTO {name} SELECT g, 'v' || g FROM generate_series(1, 5) g",
                host=server.dir)
    yield name
    server.psql("-c", f"DROP TABLE IF EXISTS {name}", host=server.dir)


@pytest.fixture(scope="session")
def pg():
    yield from serve(Postgres())


@pytest.fixture
def agent(tmp_path, pg):
    """A factory: agent(*extra_args) starts the agent watching pg's port."""
    yield from agents(tmp_path, pg.port)


def helper(name):
    path = os.path.join(HELPERS, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"test helper {path} is not built (make test-helpers)")
    return path
