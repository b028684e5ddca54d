# SPDX-License-Identifier: GPL-2.0-only
"""
Redis replies masked whole by key, in the kernel, end to end: a real
redis-server on 127.0.0.1, real clients (redis-cli RESP2 and -3,
python3-redis, raw sockets that send exactly the bytes a test names). A
client whose actor a rule with `keys` selects reads the whole reply of a
command naming a matching key (at one of the command's key positions)
masked: every bulk and verbatim string, at any depth and of any length,
same length, in the rule's style; simple strings, errors, numbers and
nulls exact. Every other reply, and every reply a client no rule selects
reads, is exact to the byte. Replies that can no longer be paired with
their commands (after SUBSCRIBE, MONITOR, CLIENT REPLY) follow
on_unmaskable once the client names a masked key.

One agent runs at a time; it is kept across the tests that use the same
policy (OneAgent), and the Redis server and its data are the module's.
"""
import inspect
import json
import os
import queue
import subprocess
import threading
import time

import pytest
import redis

import events
from conftest import DBW_BIN, Agent, Redis, agents, serve
from test_masking_redis import EMAIL, ScriptedServer, bulk, cli_in, lines, py_in, s_, styled

_RUN = f"/dbw-rkeys-{os.getpid()}"
MASKED_CG = f"{_RUN}/agent"   # the users-by-key rule selects it
ALL_CG = f"{_RUN}/all"        # the every-key rule (`*`) selects it
OTHER_CG = f"{_RUN}/other"    # no rule selects it

# One rule of keys alone, the default on_unmaskable (block), and one that masks every key.
POLICY_KEYS = f"""\
version: 1
masking:
  results:
    - name: users-by-key
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      keys: ["user:*", "session", "acct ü 1"]
      style: stars
    - name: every-key
      match: {{actor: {{cgroup: {ALL_CG}}}}}
      keys: ["*"]
"""

# One rule of user:* for the masked cgroup, in a style (and more of its keys after it).
POLICY_STYLE = f"""\
version: 1
masking:
  results:
    - name: users-by-key
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      keys: ["user:*"]
      style: STYLE
"""

# Keys beside a detector, under allow.
POLICY_ALLOW = POLICY_STYLE.replace("STYLE", "stars") + \
    "      detectors: [email]\n      on_unmaskable: allow\n"


# ---- the data: values that must not reach a masked client, nor any event ------------------

def uval(i):
    return f"lit_user_{i} Jane Doe, {i} Rue de Rivoli"


def pval(i):
    return f"lit_prod_{i} blue widget, {i} left"


N_PIPE = 1000  # user:0..999 and product:0..999
USER1, PROD1 = uval(1), pval(1)
UHASH = {"name": "lit_uh Jane Doe", "ssn": "078-05-1120"}  # field names of distinct lengths
PHASH = {"title": "lit_ph Widget", "user:1": "lit_ph a field named like a key"}
PPII = {"contact": EMAIL, "note": "lit_pp call back after 5pm"}
ULIST = ["lit_ul first", "lit_ul second", "lit_ul 3rd"]
PLIST = ["lit_pl a", "lit_pl bb"]
USET = ["lit_us 1", "lit_us 22", "lit_us 333"]
UZSET = {"lit_uz alpha": 1, "lit_uz beta": 2.5}
STRINGS = {
    "USER:1": "lit_upper USER:1 is another key",
    "User:1": "lit_title User:1 is another key",
    "user:": "lit_bare the prefix itself",
    "user": "lit_nocolon shorter than the prefix",
    "session": "lit_session exact key",
    "session2": "lit_session2 longer than it",
    "sessio": "lit_sessio shorter than it",
    "acct ü 1": "lit_acct exact key with a space",
    "user:short": "abc",
    "product:email": EMAIL,
    "product:tmp": "user:1",      # written again by tests: the key count stays
    "tx:a": "lit_tx value",
}
BIG = (b"lit_big_" + bytes(range(256)) * (3 << 12))[:3 << 20]  # 3 MiB, every byte value
# values that no event may carry
SECRETS = [USER1, uval(0), uval(999), UHASH["name"], UHASH["ssn"], ULIST[1], USET[2],
           STRINGS["session"], STRINGS["acct ü 1"], STRINGS["user:"]]


# ---- RESP, as the tests build and check it ------------------------------------------------

def cmd(*args):
    """A command as a RESP array of bulk strings."""
    a = [x.encode() if isinstance(x, str) else x for x in args]
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)


def push(*items):
    """A RESP3 push of bulk strings (":n" items as given)."""
    body = b"".join(x.encode() + b"\r\n" if x.startswith(":") else bulk(x) for x in items)
    return b">%d\r\n" % len(items) + body


def frame_end(b, i):
    """
    The index just past the RESP element that starts at b[i] (an attribute
    and the element it annotates are one), or None while b holds only part
    of it.
    """
    if i >= len(b):
        return None
    t = b[i:i + 1]
    e = b.find(b"\r\n", i)
    if e < 0:
        return None
    j = e + 2
    if t in (b"+", b"-", b":", b",", b"#", b"(", b"_"):
        return j
    n = int(b[i + 1:e])
    if t in (b"$", b"=", b"!"):
        if n < 0:
            return j
        return j + n + 2 if len(b) >= j + n + 2 else None
    if t in (b"*", b"~", b">", b"%", b"|"):
        if n < 0:
            return j
        for _ in range(2 * n if t in (b"%", b"|") else n):
            j = frame_end(b, j)
            if j is None:
                return None
        return frame_end(b, j) if t == b"|" else j
    raise ValueError(f"not RESP at {i}: {b[i:i + 40]!r}")


def styled_b(v, style="stars"):
    return styled(v.decode("latin-1"), style).encode("latin-1")


def masked(reply, style="stars"):
    """
    What replies masked whole by key read like: every bulk string's bytes,
    and every verbatim string's after its 4-byte "txt:", in the style;
    nothing else changed. Returns (bytes, how many non-empty strings were
    masked: the events' fields_masked).
    """
    out = bytearray(reply)
    count = 0

    def walk(i):
        nonlocal count
        t = reply[i:i + 1]
        e = reply.index(b"\r\n", i)
        j = e + 2
        if t in (b"+", b"-", b":", b",", b"#", b"(", b"_"):
            return j
        n = int(reply[i + 1:e])
        if n < 0:
            return j
        if t in (b"$", b"=", b"!"):
            if t != b"!":
                a = j + (4 if t == b"=" else 0)
                if j + n > a:
                    out[a:j + n] = styled_b(reply[a:j + n], style)
                    count += 1
            return j + n + 2
        for _ in range(2 * n if t in (b"%", b"|") else n):
            j = walk(j)
        return walk(j) if t == b"|" else j

    i = 0
    while i < len(reply):
        i = walk(i)
    return bytes(out), count


def items(reply):
    """The elements of an array reply, as bytes each."""
    e = reply.index(b"\r\n")
    n, j, out = int(reply[1:e]), e + 2, []
    for _ in range(n):
        k = frame_end(reply, j)
        out.append(reply[j:k])
        j = k
    return out


# ---- clients in a cgroup ------------------------------------------------------------------

RAW_CONN = '''
import json, socket, sys
FRAME_END
sys.stdin.readline()  # "go": it is in its cgroup now, it may connect
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
for line in sys.stdin:
    req = json.loads(line)
    err, pos, k = None, 0, 0
    try:
        if req["send"]:
            s.sendall(bytes.fromhex(req["send"]))
        s.settimeout(req["timeout"])
        while k < req["frames"]:
            end = frame_end(buf, pos)
            if end is None:
                b = s.recv(1 << 20)
                if not b:
                    err = "eof"
                    break
                buf += b
                continue
            pos, k = end, k + 1
    except socket.timeout:
        err = "timeout"
    except OSError as e:
        err = type(e).__name__
    if err:
        got, buf = buf, b""
    else:
        got, buf = buf[:pos], buf[pos:]
    sys.stdout.write(json.dumps({"data": got.hex(), "err": err}) + "\\n")
    sys.stdout.flush()
'''.replace("FRAME_END", inspect.getsource(frame_end))

RESET = ("eof", "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError")


class RawConn:
    """
    One connection of a process moved into cgroup rel before it connects:
    ask() sends bytes as they are (one send) and reads whole RESP frames.
    """

    def __init__(self, cgroups, rel, port):
        self.p = subprocess.Popen(["/usr/bin/python3", "-c", RAW_CONN, str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd="/")
        self.pid = self.p.pid
        try:
            cgroups.move(self.pid, rel)
            self.p.stdin.write("go\n")
            self.p.stdin.flush()
        except BaseException:
            self.close()
            raise

    def ask(self, send=b"", frames=1, timeout=10.0):
        """Send (maybe nothing), then read `frames` frames: (their bytes, None), or
        (what came, "eof" / "timeout" / the socket error's name)."""
        self.p.stdin.write(json.dumps({"send": send.hex(), "frames": frames,
                                       "timeout": timeout}) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, f"raw client died: {self.p.stderr.read()}"
        r = json.loads(line)
        return bytes.fromhex(r["data"]), r["err"]

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
                self.p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Spawned:
    """A process started in cgroup rel (moved before it execs), its stdout read by line."""

    def __init__(self, cgroups, rel, argv):
        self.p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + list(argv),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, cwd="/")
        self.pid = self.p.pid
        self.q = queue.Queue()
        try:
            cgroups.move(self.pid, rel)
            self.p.stdin.write(b"go\n")
            self.p.stdin.flush()
        except BaseException:
            self.kill()
            raise
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line.decode().rstrip("\n"))
        self.q.put(None)

    def lines(self, n, timeout=10.0):
        out, deadline = [], time.time() + timeout
        while len(out) < n:
            try:
                x = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if x is None:
                break
            out.append(x)
        return out

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def run_raw(cgroups, rel, port, sends, hello=False):
    """Each of sends on one connection, one at a time: (replies, pid)."""
    with RawConn(cgroups, rel, port) as c:
        if hello:
            c.ask(cmd("HELLO", "3"))
        out = []
        for b in sends:
            data, err = c.ask(b)
            assert err is None, (b[:80], err)
            out.append(data)
        return out, c.pid


def stmts(a, pid, pred=None, timeout=20.0):
    """The statement events of process pid, once pred(them) holds (default: one is out)."""
    pred = pred or (lambda st: len(st) >= 1)
    evs = a.wait_for(lambda evs: pred(evs.statements(pid=pid)), timeout=timeout)
    return evs, evs.statements(pid=pid)


def fields(st):
    return [e["masking"]["fields_masked"] for e in st]


def cmds_of(st):
    """A client library's own commands left out (HELLO, CLIENT SETINFO of newer ones)."""
    return [e for e in st if e["statement"]["verb"] != "HELLO" and
            not e["statement"]["verb"].startswith("CLIENT")]


def alerts_of(evs, pids, kind="mask_unmaskable"):
    return [e for e in evs.of("alert")
            if e.get("actor", {}).get("pid") in pids and e["alert"]["kind"] == kind]


# ---- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rd():
    yield from serve(Redis())


@pytest.fixture(scope="module")
def cgroups():
    from workloads import cgroups_made
    yield from cgroups_made(MASKED_CG, ALL_CG, OTHER_CG)


@pytest.fixture(scope="module")
def data(rd):
    """The module's keys, written before any test reads them."""
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    r.flushall()
    p = r.pipeline(transaction=False)
    for i in range(N_PIPE):
        p.set(f"user:{i}", uval(i))
        p.set(f"product:{i}", pval(i))
    p.mset(STRINGS)
    p.hset("user:h", mapping=UHASH)
    p.hset("product:h", mapping=PHASH)
    p.hset("product:pii", mapping=PPII)
    p.rpush("user:l", *ULIST)
    p.rpush("product:l", *PLIST)
    p.sadd("user:s", *USET)
    p.zadd("user:z", UZSET)
    p.set("user:big", BIG)
    p.set("product:big", BIG)
    p.set("product:bigw", BIG[::-1])
    p.rpush("user:bl", BIG, "lit_ubl small")
    p.execute()
    r.close()
    yield


class OneAgent:
    """
    The module's agent, one at a time: started for a policy (and port) the
    first time a test asks for it, kept while the following tests ask for the
    same, stopped (and checked) when one asks for another and at the end.
    """

    def __init__(self, tmp_factory):
        self.tmp = tmp_factory
        self.key = self.a = self.gen = None

    def use(self, name, body, port):
        if self.a is not None and self.key == (name, port) and self.a.proc.poll() is None:
            return self.a
        self.stop()
        d = self.tmp.mktemp(f"agent-{name}")
        pol = d / "policy.yaml"
        pol.write_text(body, encoding="utf-8")
        gen = agents(d, port, proto="redis")
        try:
            a = next(gen)("--policy", str(pol))
        except BaseException:
            next(gen, None)
            raise
        self.key, self.a, self.gen = (name, port), a, gen
        return a

    def stop(self):
        a, gen, key = self.a, self.gen, self.key
        self.key = self.a = self.gen = None
        if a is None:
            return
        try:
            a.stop()
            assert a.rc == 0, f"agent ({key[0]}) exited {a.rc}: {a.stderr()[-3000:]}"
        finally:
            next(gen, None)  # the factory's cleanup: its agents killed


@pytest.fixture(scope="module")
def one(tmp_path_factory, cgroups, rd):
    o = OneAgent(tmp_path_factory)
    yield o
    o.stop()


@pytest.fixture
def ka(one, rd, data):
    """The agent of POLICY_KEYS."""
    return one.use("keys", POLICY_KEYS, rd.port)


@pytest.fixture
def aa(one, rd, data):
    """The agent of POLICY_ALLOW."""
    return one.use("allow", POLICY_ALLOW, rd.port)


# ---- the policy: what loads, what is refused ----------------------------------------------

RULE = """\
version: 1
masking:
  results:
    - name: by-key
      match: MATCH
"""


def check(tmp_path, extra, match="{actor: {cgroup: /some/cgroup}}"):
    path = tmp_path / "policy.yaml"
    path.write_text(RULE.replace("MATCH", match) + extra, encoding="utf-8")
    r = subprocess.run([DBW_BIN, "policy", "check", str(path)], capture_output=True, text=True)
    return r, str(path)


@pytest.mark.parametrize("extra", [
    '      keys: ["user:*"]\n',
    '      keys: ["user:*", "session", "acct ü 1"]\n      style: keep_last4\n',
    '      keys: ["*"]\n',
    '      keys: ["' + "p" * 63 + '*"]\n',
    '      keys: ["' + "k" * 100 + '"]\n',
    '      keys: ["user:*"]\n      detectors: [email]\n',
    '      keys: ["user:*"]\n      columns: [email]\n',
    '      keys: ["user:*"]\n      placement: [client]\n',
    "      keys: ['user:*']\n      on_unmaskable: allow\n",
], ids=["prefix", "exact-keys", "star", "prefix-63", "exact-100", "with-detectors",
        "with-columns", "client", "allow"])
def test_policy_check_accepts_keys(tmp_path, extra):
    r, _ = check(tmp_path, extra)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("pattern", ["", "a*b", "*x", "**", "user:?", "user:[ab]*", "user:\\1",
                                     "p" * 64 + "*"],
                         ids=["empty", "inner-star", "leading-star", "two-stars", "question",
                              "bracket", "backslash", "prefix-64"])
def test_policy_check_refuses_bad_key_patterns(tmp_path, pattern):
    # a JSON string is a YAML double-quoted scalar: "user:\\1" is user:\1
    r, path = check(tmp_path, f"      keys: [{json.dumps(pattern)}]\n")
    assert r.returncode != 0, r.stderr
    assert "by-key" in r.stderr and f"{path}:" in r.stderr, r.stderr
    if pattern:
        assert pattern in r.stderr, r.stderr


def test_policy_check_refuses_keys_on_the_server_side(tmp_path):
    """A server's bytes do not say which command a reply answers: keys are client-side."""
    r, path = check(tmp_path, '      keys: ["user:*"]\n      placement: [server]\n',
                    match="{db_user: [app]}")
    assert r.returncode != 0 and "by-key" in r.stderr and "keys" in r.stderr, r.stderr
    assert f"{path}:" in r.stderr
    # both sides: the client side masks by key
    r, _ = check(tmp_path, '      keys: ["user:*"]\n      placement: [client]\n',
                 match="{db_user: [app]}")
    assert r.returncode == 0, r.stderr


# ---- redis-cli, RESP2 and RESP3 -----------------------------------------------------------

def cli_table(resp):
    """(args, the real reply's lines, how a masked client reads them, fields_masked, unordered)."""
    r3 = resp == "3"
    flat = [x for kv in UHASH.items() for x in kv]
    zflat = ["lit_uz alpha", "1", "lit_uz beta", "2.5"]
    get = lambda k, how, n: (("GET", k), [STRINGS[k]], how, n, False)  # noqa: E731
    return [
        (("GET", "user:1"), [USER1], "all", 1, False),
        (("get", "user:1"), [USER1], "all", 1, False),       # command names: any case
        (("GET", "product:1"), [PROD1], "none", 0, False),
        (("MGET", "user:1", "product:1"), [USER1, PROD1], "all", 2, False),
        (("MGET", "product:1", "user:1"), [PROD1, USER1], "all", 2, False),
        (("MGET", "product:1", "nokey:1"), [PROD1, ""], "none", 0, False),
        (("HGETALL", "user:h"), [f"{k} {v}" for k, v in UHASH.items()] if r3 else flat,
         "map" if r3 else "all", 4, False),
        (("HMGET", "user:h", "name", "nofield"), [UHASH["name"], ""], "all", 1, False),
        # a field named like a masked key is not a key
        (("HMGET", "product:h", "user:1"), [PHASH["user:1"]], "none", 0, False),
        (("LRANGE", "user:l", "0", "-1"), ULIST, "all", 3, False),
        (("SMEMBERS", "user:s"), USET, "all", 3, True),
        # RESP2 sends scores as bulk strings (masked), RESP3 as doubles (exact)
        (("ZRANGE", "user:z", "0", "-1", "WITHSCORES"), zflat,
         "members" if r3 else "all", 2 if r3 else 4, False),
        (("GETRANGE", "user:1", "0", "5"), [USER1[:6]], "all", 1, False),
        (("EVAL", "return redis.call('GET', KEYS[1])", "1", "user:1"), [USER1], "all", 1, False),
        (("EVAL", "return redis.call('GET', KEYS[1])", "1", "product:1"), [PROD1], "none", 0,
         False),
        # EVAL: every argument from the third on
        (("EVAL", "return ARGV[1]", "0", "user:1"), ["user:1"], "all", 1, False),
        (("OBJECT", "ENCODING", "user:1"), ["embstr"], "all", 1, False),
        get("USER:1", "none", 0),                             # keys are case-sensitive
        get("User:1", "none", 0),
        get("user:", "all", 1),                               # `user:*` holds for `user:`
        get("user", "none", 0),
        get("session", "all", 1),                             # an exact key
        get("session2", "none", 0),
        get("sessio", "none", 0),
        get("acct ü 1", "all", 1),
        # keyless: names, not values
        (("KEYS", "user:[a-z]"), ["user:h", "user:l", "user:s", "user:z"], "none", 0, True),
        (("keys", "user:[a-z]"), ["user:h", "user:l", "user:s", "user:z"], "none", 0, True),
        (("SCAN", "0", "MATCH", "user:[a-z]", "COUNT", "100000"),
         ["0", "user:h", "user:l", "user:s", "user:z"], "none", 0, True),
        (("ECHO", "user:1"), ["user:1"], "none", 0, False),
        (("PING",), ["PONG"], "none", 0, False),
        (("EXISTS", "user:1"), ["1"], "none", 0, False),
        (("TYPE", "user:1"), ["string"], "none", 0, False),
        (("STRLEN", "user:1"), [str(len(USER1))], "none", 0, False),
    ]


def cli_masked(ls, how):
    if how == "all":
        return [styled(x) for x in ls]
    if how == "map":  # RESP3 maps: "field value" a line
        return [" ".join(styled(w) for w in x.split(" ", 1)) for x in ls]
    if how == "members":
        return [styled(x) if i % 2 == 0 else x for i, x in enumerate(ls)]
    return ls


@pytest.mark.parametrize("resp", ["2", "3"])
def test_redis_cli_whole_replies_by_key(rd, ka, cgroups, resp):
    proto = ["-3"] if resp == "3" else []
    table = cli_table(resp)
    got, plain, pids = [], [], []
    for args, *_ in table:
        res, pid = cli_in(cgroups, MASKED_CG, rd, *proto, *args)
        got.append(lines(res))
        pids.append(pid)
        plain.append(lines(cli_in(cgroups, OTHER_CG, rd, *proto, *args)[0]))
    bad = []  # every mismatch, not only the first
    for (args, want, how, _, unordered), g, p in zip(table, got, plain):
        order = sorted if unordered else list
        if order(p) != order(want):
            bad.append(("real", args, p))
        if order(g) != order(cli_masked(p, how)) or (how != "none" and g == p):
            bad.append(("masked client", args, g))
    assert not bad, bad
    evs = ka.wait_for(lambda evs: all(
        [e for e in evs.statements(pid=pid) if e["statement"]["verb"] != "HELLO"]
        for pid in pids), timeout=20)
    for (args, _, _, n, _), pid in zip(table, pids):
        st = evs.statements(pid=pid)
        assert st and all(e["masking"]["applied"] for e in st), (args, st)
        assert st[-1]["masking"]["fields_masked"] == n, (args, st[-1]["masking"])
    assert not [e for e in evs.statements() if e["actor"]["cgroup"] == OTHER_CG and
                "masking" in e]
    events.assert_no_loss(evs, ka)
    events.assert_no_literals(evs, SECRETS)


# ---- raw RESP: the exact bytes, key positions, the 1 KiB window ---------------------------

FAR = 40  # MGET product:0..39: one key past the 31st argument


def raw_cases():
    """(command, whether its reply is masked whole)."""
    return [
        (cmd("GET", "user:1"), True),
        (cmd("GET", "product:1"), False),
        (cmd("MGET", "product:1", "user:1"), True),
        (cmd("MGET", *[f"product:{i}" for i in range(FAR)]), False),
        (cmd("MGET", *[f"product:{i}" for i in range(FAR)], "user:1"), True),
        # a key position past the first 1 KiB of the command: masked, unread
        (cmd("MGET", "product:" + "x" * 1100, "product:1"), True),
        # arguments past it that are no keys: exact
        (cmd("HMGET", "product:h", "title", *["f" * 60 + str(i) for i in range(30)]), False),
        (cmd("HGETALL", "user:h"), True),
        (cmd("HMGET", "product:h", "user:1"), False),
        (cmd("SET", "product:tmp", "user:1"), False),
        (cmd("GET", "product:tmp"), False),                 # the value names a key: no matter
        (cmd("GET", "user:nokey"), True),                   # a null stays a null
        (cmd("GETRANGE", "user:1", "0", "-1"), True),
        (cmd("ZRANGE", "user:z", "0", "-1", "WITHSCORES"), True),
        (cmd("SMEMBERS", "user:s"), True),
        (cmd("LRANGE", "user:l", "0", "-1"), True),
        (cmd("LCS", "user:1", "product:1"), True),
        (cmd("SUBSTR", "user:1", "0", "3"), True),
        (cmd("DUMP", "user:1"), True),
        (cmd("EXISTS", "user:1"), True),                    # an integer: nothing to mask
        (cmd("TYPE", "user:1"), True),                      # a simple string: exact
        (cmd("ECHO", "user:1"), False),
        (cmd("PING"), False),
        (cmd("GET", "user:h"), True),                       # an error: exact
    ]


RESP3_CASES = [
    (cmd("HGETALL", "user:h"), True),                       # a map
    (cmd("ZRANGE", "user:z", "0", "-1", "WITHSCORES"), True),  # doubles stay
    (cmd("INFO", "keyspace"), False),                       # a verbatim string, keyless
    (cmd("GET", "user:1"), True),
    (cmd("GET", "product:1"), False),
]


def test_raw_exact_bytes_key_positions_and_window(rd, ka, cgroups):
    cases = raw_cases()
    sends = [c for c, _ in cases]
    plain, _ = run_raw(cgroups, OTHER_CG, rd.port, sends)
    assert plain[0] == bulk(USER1) and plain[1] == bulk(PROD1)
    assert plain[4] == b"*%d\r\n" % (FAR + 1) + b"".join(
        bulk(pval(i)) for i in range(FAR)) + bulk(USER1)
    want = [masked(p)[0] if whole else p for p, (_, whole) in zip(plain, cases)]
    got, pid = run_raw(cgroups, MASKED_CG, rd.port, sends)
    bad = [(c[:80], g[:200]) for c, g, w in zip(sends, got, want) if g != w]
    assert not bad, bad
    assert got[0] == b"$%d\r\n%s\r\n" % (len(USER1), b"*" * len(USER1))
    # the same commands in one send: each reply paired with its own
    with RawConn(cgroups, MASKED_CG, rd.port) as c:
        data, err = c.ask(b"".join(sends), frames=len(sends))
        ppid = c.pid
    assert err is None and data == b"".join(want)
    # RESP3
    hello_p, _ = run_raw(cgroups, OTHER_CG, rd.port, [c for c, _ in RESP3_CASES], hello=True)
    with RawConn(cgroups, MASKED_CG, rd.port) as c:
        h, err = c.ask(cmd("HELLO", "3"))
        assert err is None and b"$6\r\nserver\r\n$5\r\nredis\r\n" in h, h  # keyless: exact
        got3 = [c.ask(x)[0] for x, _ in RESP3_CASES]
    bad = [(x, g) for (x, whole), g, p in zip(RESP3_CASES, got3, hello_p)
           if g != (masked(p)[0] if whole else p)]
    assert not bad, bad
    assert hello_p[1].count(b",") == 2 and got3[1].endswith(b",2.5\r\n")
    assert hello_p[2].startswith(b"=") and got3[2] == hello_p[2]
    # events: each command's own count
    n = [masked(p)[1] if whole else 0 for p, (_, whole) in zip(plain, cases)]
    assert n[0] == 1 and n[2] == 2 and n[4] == FAR + 1 and n[7] == 4
    for p_ in (pid, ppid):
        evs, st = stmts(ka, p_, lambda st: len(st) >= len(cases))
        assert len(st) == len(cases), [e["statement"]["verb"] for e in st]
        assert fields(st) == n, list(zip([e["statement"]["verb"] for e in st], fields(st)))
        assert all(e["masking"]["applied"] for e in st)
    events.assert_no_literals(evs, SECRETS)


# ---- inline commands, commands cut across sends -------------------------------------------

INLINE = [
    (b"GET user:1\r\n", True),
    (b"get user:1\r\n", True),
    (b'GET "user:1"\r\n', True),        # quoted: the kernel cannot tell the words: masked
    (b"GET  user:1\r\n", True),
    (b"  GET user:1\r\n", True),
    (b"GET user:1\n", True),
    (b"MGET product:1 user:1\r\n", True),
    (b"GET product:1\r\n", False),
    (b"HMGET product:h user:1\r\n", False),
    (b"ECHO user:1\r\n", False),
    (b"PING\r\n", False),
]


# after an odd send: a masked reply between two exact ones, each paired with its command
PROBE = b"GET product:3\r\nGET user:1\r\nGET product:4\r\n"
PROBE_WANT = bulk(pval(3)) + masked(bulk(USER1))[0] + bulk(pval(4))


def test_inline_commands_and_commands_cut_across_sends(rd, ka, cgroups):
    plain, _ = run_raw(cgroups, OTHER_CG, rd.port, [c for c, _ in INLINE])
    assert plain[0] == plain[2] == plain[5] == bulk(USER1) and plain[7] == bulk(PROD1)
    want = [masked(p)[0] if whole else p for p, (_, whole) in zip(plain, INLINE)]
    got, pid = run_raw(cgroups, MASKED_CG, rd.port, [c for c, _ in INLINE])
    bad = [(c, g) for (c, _), g, w in zip(INLINE, got, want) if g != w]
    assert not bad, bad
    with RawConn(cgroups, MASKED_CG, rd.port) as c:
        # in one send, a blank line (no reply) among them
        lines_ = [x for x, _ in INLINE]
        data, err = c.ask(b"".join(lines_[:4]) + b"\r\n" + b"".join(lines_[4:]),
                          frames=len(INLINE))
        assert err is None and data == b"".join(want)
        # a RESP command cut inside its key, the next one whole
        g1 = cmd("GET", "user:1")
        assert c.ask(cmd("GET", "product:1") + g1[:-5]) == (bulk(PROD1), None)
        data, err = c.ask(g1[-5:] + cmd("GET", "product:2"), frames=2)
        assert err is None and data == masked(bulk(USER1))[0] + bulk(pval(2))
        assert c.ask(PROBE, frames=3) == (PROBE_WANT, None)  # still paired
        # an inline line cut inside its key
        assert c.ask(b"GET us", frames=0) == (b"", None)
        assert c.ask(b"er:1\r\n") == (masked(bulk(USER1))[0], None)
        assert c.ask(PROBE, frames=3) == (PROBE_WANT, None)
        # a RESP command cut inside its name and inside a length line
        assert c.ask(b"*2\r\n$3\r\nGE", frames=0) == (b"", None)
        assert c.ask(b"T\r\n$", frames=0) == (b"", None)
        assert c.ask(b"6\r\nuser:1\r\n") == (masked(bulk(USER1))[0], None)
        assert c.ask(PROBE, frames=3) == (PROBE_WANT, None)
    evs, st = stmts(ka, pid, lambda st: len(st) >= len(INLINE))
    assert fields(st) == [masked(p)[1] if whole else 0 for p, (_, whole) in zip(plain, INLINE)]
    assert fields(st)[:7] == [1, 1, 1, 1, 1, 1, 2]
    events.assert_no_literals(evs, SECRETS)


# ---- python3-redis: a 2000-command pipeline, transactions ---------------------------------

PIPE = """
import json, redis
r = redis.Redis(host="127.0.0.1", port=PORT)
p = r.pipeline(transaction=False)
for i in range(NPIPE):
    p.get("user:%d" % i)
    p.get("product:%d" % i)
print(json.dumps([v.decode() for v in p.execute()]))
"""


def test_python_pipeline_each_reply_paired(rd, ka, cgroups):
    # RESP2: python3-redis here (4.x) has no RESP3; raw RESP3 pipelines are in the tests above
    code = PIPE.replace("PORT", str(rd.port)).replace(
        "NPIPE", str(N_PIPE))
    got, pid = py_in(cgroups, MASKED_CG, code)
    plain, opid = py_in(cgroups, OTHER_CG, code)
    real = [v for i in range(N_PIPE) for v in (uval(i), pval(i))]
    assert plain == real
    assert got == [v for i in range(N_PIPE) for v in ("*" * len(uval(i)), pval(i))]
    evs = ka.wait_for(lambda evs: all(len(cmds_of(evs.statements(pid=p))) >= 2 * N_PIPE
                                      for p in (pid, opid)), timeout=30)
    st = cmds_of(evs.statements(pid=pid))
    assert [e["statement"]["verb"] for e in st] == ["GET"] * 2 * N_PIPE
    assert fields(st) == [1, 0] * N_PIPE
    assert all(e["masking"]["applied"] for e in st)
    # a client no rule selects never carried the masking program
    assert not [e for e in evs.statements(pid=opid) if "masking" in e]
    events.assert_no_loss(evs, ka)
    events.assert_no_literals(evs, SECRETS)


TX = """
import json, redis
r = redis.Redis(host="127.0.0.1", port=PORT, decode_responses=True)
out = {}
t = r.pipeline(transaction=True)
t.get("product:1")
t.set("tx:a", "lit_tx value")
t.get("user:1")
t.hgetall("user:h")
out["hit"] = t.execute()
t = r.pipeline(transaction=True)
t.get("product:1")
t.lrange("product:l", 0, -1)
out["miss"] = t.execute()
out["after"] = [r.get("product:1"), r.get("user:1")]
print(json.dumps(out))
"""


def test_multi_exec_masked_whole_when_a_queued_command_names_a_key(rd, ka, cgroups):
    code = TX.replace("PORT", str(rd.port))
    got, pid = py_in(cgroups, MASKED_CG, code)
    plain, _ = py_in(cgroups, OTHER_CG, code)
    assert plain == {"hit": [PROD1, True, USER1, UHASH], "miss": [PROD1, PLIST],
                     "after": [PROD1, USER1]}
    # EXEC's whole reply: product:1's value too; SET's +OK is a simple string
    assert got["hit"] == [styled(PROD1), True, styled(USER1),
                          {styled(k): styled(v) for k, v in UHASH.items()}]
    assert got["miss"] == [PROD1, PLIST]
    assert got["after"] == [PROD1, styled(USER1)]
    evs, st = stmts(ka, pid, lambda st: len(cmds_of(st)) >= 12)
    assert [(e["statement"]["verb"], e["masking"]["fields_masked"]) for e in cmds_of(st)] == [
        ("MULTI", 0), ("GET", 0), ("SET", 0), ("GET", 0), ("HGETALL", 0), ("EXEC", 6),
        ("MULTI", 0), ("GET", 0), ("LRANGE", 0), ("EXEC", 0), ("GET", 0), ("GET", 1)]

    # raw: errors and integers inside EXEC, DISCARD, EXECABORT, WATCH, a MULTI across sends
    sends = [  # (bytes, frames, masked whole)
        (cmd("MULTI") + cmd("GET", "product:1") + cmd("GET", "user:h") +
         cmd("STRLEN", "product:1") + cmd("EXEC"), 5, True),
        (cmd("MULTI") + cmd("GET", "user:1") + cmd("DISCARD") + cmd("GET", "product:1"), 4,
         False),
        (cmd("MULTI") + cmd("GET", "product:1") + cmd("EXEC"), 3, False),
        (cmd("MULTI") + cmd("GET", "user:1") + cmd("EXEC"), 3, True),
        (cmd("GET", "product:1"), 1, False),
        (cmd("MULTI") + cmd("GET", "user:1") + cmd("NOSUCHCMD", "x") + cmd("EXEC"), 4, False),
        (cmd("GET", "product:1"), 1, False),
        (cmd("WATCH", "user:1") + cmd("MULTI") + cmd("GET", "product:1") + cmd("EXEC"), 4,
         False),
        (cmd("MULTI") + cmd("GET", "user:1"), 2, False),
        (cmd("GET", "product:2") + cmd("EXEC"), 2, True),
        (cmd("GET", "product:1"), 1, False),
    ]

    def session(rel):
        with RawConn(cgroups, rel, rd.port) as c:
            out = []
            for b, k, _ in sends:
                data, err = c.ask(b, frames=k)
                assert err is None, (b, err)
                out.append(data)
            return out, c.pid

    plain, _ = session(OTHER_CG)
    assert b"-WRONGTYPE" in plain[0] and plain[0].endswith(b":%d\r\n" % len(PROD1))
    assert b"-EXECABORT" in plain[5]
    got, rpid = session(MASKED_CG)
    bad = [(b, g) for (b, _, whole), g, p in zip(sends, got, plain)
           if g != (masked(p)[0] if whole else p)]
    assert not bad, bad
    assert got[0] != plain[0] and got[3] != plain[3] and got[9] != plain[9]
    evs, st = stmts(ka, rpid, lambda st: len([e for e in st if e["statement"]["verb"] == "EXEC"])
                    >= 6)
    assert [e["masking"]["fields_masked"] for e in st if e["statement"]["verb"] == "EXEC"] == \
        [1, 0, 1, 0, 0, 2]
    events.assert_no_literals(evs, SECRETS)


# ---- values of any length -----------------------------------------------------------------

BIGPY = """
import json, redis
r = redis.Redis(host="127.0.0.1", port=PORT)
big = (b"lit_big_" + bytes(range(256)) * (3 << 12))[:3 << 20]
out = {}
v = r.get("user:big")
out["user_big"] = [len(v), v == b"*" * len(v), v == big]
out["product_big"] = r.get("product:big") == big
out["user_bl"] = [[len(x), x == b"*" * len(x)] for x in r.lrange("user:bl", 0, -1)]
r.set("product:bigw", big[::-1])  # a 3 MiB command from this client
p = r.pipeline(transaction=False)
p.get("user:1")
p.get("product:1")
p.getrange("user:big", 0, 9)
p.strlen("product:bigw")
p.get("product:bigw")
res = p.execute()
out["after"] = [res[0].decode(), res[1].decode(), res[2].decode(), res[3], res[4] == big[::-1]]
print(json.dumps(out))
"""


def test_big_values_masked_whole_and_big_commands_followed(rd, ka, cgroups):
    code = BIGPY.replace("PORT", str(rd.port))
    got, pid = py_in(cgroups, MASKED_CG, code)
    plain, _ = py_in(cgroups, OTHER_CG, code)
    small = len("lit_ubl small")
    assert plain == {"user_big": [len(BIG), False, True], "product_big": True,
                     "user_bl": [[len(BIG), False], [small, False]],
                     "after": [USER1, PROD1, BIG[:10].decode(), len(BIG), True]}
    assert got == {"user_big": [len(BIG), True, False], "product_big": True,
                   "user_bl": [[len(BIG), True], [small, True]],
                   "after": [styled(USER1), PROD1, "*" * 10, len(BIG), True]}
    evs, st = stmts(ka, pid, lambda st: len(cmds_of(st)) >= 9)
    assert [(e["statement"]["verb"], e["masking"]["fields_masked"]) for e in cmds_of(st)] == [
        ("GET", 1), ("GET", 0), ("LRANGE", 2), ("SET", 0), ("GET", 1), ("GET", 0),
        ("GETRANGE", 1), ("STRLEN", 0), ("GET", 0)]
    events.assert_no_loss(evs, ka)


# ---- `*`: every key -----------------------------------------------------------------------

def test_star_masks_every_keyed_reply_and_no_keyless_one(rd, ka, cgroups):
    cases = [
        (cmd("GET", "product:1"), True),
        (cmd("HGETALL", "product:h"), True),
        (cmd("MGET", "product:1", "nokey:1"), True),
        (cmd("GET", "nokey:1"), True),
        (cmd("LRANGE", "product:l", "0", "-1"), True),
        (cmd("ECHO", "product:1"), False),
        (cmd("PING"), False),
        (cmd("DBSIZE"), False),
        (cmd("EXISTS", "product:1"), False),
        (cmd("INFO", "keyspace"), False),
    ]
    unordered = [cmd("KEYS", "product:[a-z]"),
                 cmd("SCAN", "0", "MATCH", "product:[a-z]", "COUNT", "100000")]
    sends = [c for c, _ in cases] + unordered
    plain, _ = run_raw(cgroups, OTHER_CG, rd.port, sends)
    got, pid = run_raw(cgroups, ALL_CG, rd.port, sends)
    assert plain[0] == bulk(PROD1) and plain[3] == b"$-1\r\n"
    bad = [(c, g) for (c, whole), g, p in zip(cases, got, plain)
           if g != (masked(p)[0] if whole else p)]
    assert not bad, bad
    assert got[0] != plain[0]
    keys = sorted(items(plain[-2]))
    assert keys == [bulk("product:h"), bulk("product:l")]
    assert sorted(items(got[-2])) == keys
    assert items(got[-1])[0] == bulk("0") and sorted(items(items(got[-1])[1])) == keys
    (info3,), _ = run_raw(cgroups, OTHER_CG, rd.port, [cmd("INFO", "keyspace")], hello=True)
    with RawConn(cgroups, ALL_CG, rd.port) as c:
        h, err = c.ask(cmd("HELLO", "3"))
        assert err is None and b"$6\r\nserver\r\n$5\r\nredis\r\n" in h, h
        info, _ = c.ask(cmd("INFO", "keyspace"))
        assert info.startswith(b"=") and info == info3  # a verbatim string, keyless
        assert c.ask(cmd("GET", "product:1")) == (masked(bulk(PROD1))[0], None)
    evs, st = stmts(ka, pid, lambda st: len(st) >= len(sends))
    assert fields(st) == [masked(p)[1] if whole else 0 for p, (_, whole) in zip(plain, cases)] + \
        [0, 0]
    assert fields(st)[:3] == [1, len(PHASH) * 2, 1]


# ---- pub/sub, MONITOR, CLIENT REPLY: replies that cannot be paired ------------------------

SUBSCRIBER = """
import json, redis
r = redis.Redis(host="127.0.0.1", port=PORT, decode_responses=True)
ps = r.pubsub()
ps.subscribe("news")
m = ps.get_message(timeout=10)
print(json.dumps(["ready", m and m["type"]]), flush=True)
got = []
while len(got) < 3:
    m = ps.get_message(timeout=10)
    if m is None:
        break
    got.append([m["type"], m["channel"], m["data"]])
print(json.dumps(got), flush=True)
"""


def test_subscribers_naming_no_masked_key_are_not_disturbed(rd, ka, cgroups):
    msgs = ["lit_msg one", "lit_msg user:1 two", "lit_msg three"]
    py = cli = raw = None
    try:
        py = Spawned(cgroups, MASKED_CG,
                     ["/usr/bin/python3", "-c", SUBSCRIBER.replace("PORT", str(rd.port))])
        cli = Spawned(cgroups, MASKED_CG, ["redis-cli", "-h", "127.0.0.1", "-p", str(rd.port),
                                           "-3", "SUBSCRIBE", "news"])
        raw = RawConn(cgroups, MASKED_CG, rd.port)
        h, err = raw.ask(cmd("HELLO", "3"))
        assert err is None and h.startswith(b"%")
        assert raw.ask(cmd("SUBSCRIBE", "news")) == (push("subscribe", "news", ":1"), None)
        assert [json.loads(x) for x in py.lines(1)] == [["ready", "subscribe"]]
        assert cli.lines(3) == ["subscribe", "news", "1"]
        r = redis.Redis(host="127.0.0.1", port=rd.port)
        for m in msgs:
            assert r.publish("news", m) == 3
        r.close()
        data, err = raw.ask(frames=3)
        assert err is None and data == b"".join(push("message", "news", m) for m in msgs)
        # the RESP3 subscriber goes on with commands that name no masked key
        assert raw.ask(cmd("GET", "product:1")) == (bulk(PROD1), None)
        assert raw.ask(cmd("PING")) == (b"+PONG\r\n", None)
        assert [json.loads(x) for x in py.lines(1)] == [[["message", "news", m] for m in msgs]]
        assert cli.lines(9) == [x for m in msgs for x in ("message", "news", m)]
    finally:
        for p in (raw, py, cli):
            if p is not None:
                p.close() if p is raw else p.kill()
    evs, _ = stmts(ka, raw.pid, lambda st: "PING" in [e["statement"]["verb"] for e in st])
    assert not [e for e in evs.of("alert") if e.get("actor", {}).get("pid") in
                (raw.pid, py.pid, cli.pid) and e["alert"]["kind"].startswith("mask_")]


def unpairable(variant):
    """(bytes, frames, what they must read: bytes, None (not checked) or "matched")."""
    if variant == "client-reply":
        return [(cmd("CLIENT", "REPLY", "OFF") + cmd("GET", "user:1") +
                 cmd("CLIENT", "REPLY", "ON") + cmd("GET", "user:1"), 2, "matched")]
    before = {
        "subscribe-resp2": [cmd("SUBSCRIBE", "news"), cmd("UNSUBSCRIBE", "news")],
        "ssubscribe-resp2": [cmd("SSUBSCRIBE", "news"), cmd("SUNSUBSCRIBE", "news")],
        "subscribe-resp3": [cmd("HELLO", "3"), cmd("SUBSCRIBE", "news")],
        "psubscribe-resp3": [cmd("HELLO", "3"), cmd("PSUBSCRIBE", "news*")],
        "monitor": [cmd("MONITOR")],
    }[variant]
    steps = [(b, 1, None) for b in before]
    if variant != "monitor":
        # not paired, but naming no masked key: exact
        steps.append((cmd("GET", "product:1"), 1, bulk(PROD1)))
    steps.append((cmd("GET", "user:1"), 1, "matched"))
    return steps


@pytest.mark.parametrize("variant", ["subscribe-resp2", "ssubscribe-resp2", "subscribe-resp3",
                                     "psubscribe-resp3", "monitor", "client-reply"])
def test_unpairable_then_masked_key_block_resets(rd, ka, cgroups, variant):
    with RawConn(cgroups, MASKED_CG, rd.port) as c:
        for b, k, want in unpairable(variant):
            data, err = c.ask(b, frames=k)
            if want == "matched":
                # the value never reaches the client: the connection is reset
                assert USER1.encode() not in data, data
                assert err in RESET, (err, data)
            else:
                assert err is None, (b, err)
                if want is not None:
                    assert data == want, (b, data)
        pid = c.pid
    evs = ka.wait_for(lambda evs: alerts_of(evs, {pid}))
    al = alerts_of(evs, {pid})
    assert all("paired" in e["alert"]["detail"] for e in al), al
    events.assert_no_literals(evs, SECRETS)


# ---- keys beside a detector; on_unmaskable: allow -----------------------------------------

def test_detectors_go_on_beside_keys(rd, aa, cgroups):
    cases = [  # (command, how the masked client reads it: "whole", "email" or "exact")
        (cmd("GET", "product:email"), "email"),
        (cmd("GET", "product:1"), "exact"),
        (cmd("GET", "user:1"), "whole"),
        (cmd("MGET", "product:email", "user:1"), "whole"),
        (cmd("HGETALL", "product:pii"), "email"),
        (cmd("GET", "user:short"), "whole"),
    ]
    plain, _ = run_raw(cgroups, OTHER_CG, rd.port, [c for c, _ in cases])
    assert plain[0] == bulk(EMAIL) and plain[5] == bulk("abc")
    want = []
    for p, (_, how) in zip(plain, cases):
        if how == "whole":
            want.append(masked(p)[0])
        elif how == "email":
            want.append(p.replace(EMAIL.encode(), b"*" * len(EMAIL)))
        else:
            want.append(p)
    got, pid = run_raw(cgroups, MASKED_CG, rd.port, [c for c, _ in cases])
    bad = [(c, g) for (c, _), g, w in zip(cases, got, want) if g != w]
    assert not bad, bad
    assert got[4] != plain[4] and b"lit_pp call back" in got[4]
    evs, st = stmts(aa, pid, lambda st: len(st) >= len(cases))
    assert fields(st) == [1, 0, 1, 2, 1, 1]
    events.assert_no_literals(evs, SECRETS + [EMAIL])


@pytest.mark.parametrize("variant", ["subscribe-resp2", "subscribe-resp3", "client-reply"])
def test_unpairable_then_masked_key_allow_passes_alerted(rd, aa, cgroups, variant):
    with RawConn(cgroups, MASKED_CG, rd.port) as c:
        for b, k, want in unpairable(variant):
            data, err = c.ask(b, frames=k)
            assert err is None, (b, err)
            if want == "matched":
                # let through, unmasked
                assert data == (b"+OK\r\n" if variant == "client-reply" else b"") + bulk(USER1)
            elif want is not None:
                assert data == want, (b, data)
        # the connection goes on
        assert c.ask(cmd("GET", "product:1")) == (bulk(PROD1), None)
        pid = c.pid
    evs = aa.wait_for(lambda evs: alerts_of(evs, {pid}))
    al = alerts_of(evs, {pid})
    assert all("paired" in e["alert"]["detail"] for e in al), al
    assert not alerts_of(evs, {pid}, "connection_reset")
    events.assert_no_literals(evs, SECRETS)


# ---- styles -------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["keep_last4", "token"])
def test_styles(rd, one, data, cgroups, style):
    one.use(f"style-{style}", POLICY_STYLE.replace("STYLE", style), rd.port)
    sends = [cmd("GET", "user:1"), cmd("HGETALL", "user:h"), cmd("MGET", "user:1", "user:short"),
             cmd("LRANGE", "user:l", "0", "-1"), cmd("GET", "product:1"), cmd("GET", "user:big")]
    plain, _ = run_raw(cgroups, OTHER_CG, rd.port, sends)
    assert plain[-1] == bulk(BIG)
    got, _ = run_raw(cgroups, MASKED_CG, rd.port, sends)
    for b, g, p in zip(sends[:4] + sends[5:], got[:4] + got[5:], plain[:4] + plain[5:]):
        assert g == masked(p, style)[0], (b, g[:200])
    assert got[4] == plain[4] == bulk(PROD1)
    v = got[0][got[0].index(b"\r\n") + 2:-2]
    big = got[-1][got[-1].index(b"\r\n") + 2:-2]
    if style == "keep_last4":
        assert v == b"*" * (len(USER1) - 4) + USER1[-4:].encode()
        assert big == b"*" * (len(BIG) - 4) + BIG[-4:]
    else:
        assert v == b"X" * len(USER1) and big == b"X" * len(BIG)


# ---- every RESP3 type in a reply masked whole, cut anywhere: a scripted server ------------

def scripted_reply():
    """One reply (an attribute, then an array of every type) to whatever is asked."""
    return b"".join([
        b"|1\r\n", s_("[key-popularity]"), b"*1\r\n", bulk("lit_attr user:1"),
        b"*19\r\n",
        bulk("lit_s1 Jane Doe"), bulk("txt:lit_verbatim Jane", b"="),
        bulk("mkd:**lit_md**", b"="), bulk("txt:", b"="),
        s_("lit_simple passes"), b"-ERR lit_error passes\r\n", bulk("SYNTAX lit_blob", b"!"),
        b":12345\r\n", b",3.14\r\n", b"#t\r\n", b"_\r\n", b"$-1\r\n", b"$0\r\n\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"%2\r\n" + bulk("lit_k1") + bulk("lit_v1") + s_("lit_k2") +
        b"~2\r\n" + bulk("lit_set a") + b":7\r\n",
        b"*2\r\n*1\r\n" + bulk("x" * 300) + b"*0\r\n",
        b"*-1\r\n",
        bulk(b"lit crlf\r\ninside"),
        bulk("y" * 2000),
    ])


@pytest.mark.parametrize("split", [None, 1, 7])
def test_every_resp3_type_masked_whole_cut_anywhere(one, cgroups, split):
    reply = scripted_reply()
    assert frame_end(reply, 0) == len(reply)
    want, n = masked(reply)
    assert n == 10 and b"lit_simple passes" in want and b"SYNTAX lit_blob" in want
    srv = ScriptedServer(reply, split=split, pause=0.001)
    try:
        a = one.use("keys", POLICY_KEYS, srv.port)
        with RawConn(cgroups, MASKED_CG, srv.port) as c:
            got, err = c.ask(cmd("GET", "user:1"), timeout=60)
            pid = c.pid
        assert err is None and got == want
        with RawConn(cgroups, MASKED_CG, srv.port) as c:
            got, err = c.ask(cmd("GET", "product:1"), timeout=60)
        assert err is None and got == reply
        evs, st = stmts(a, pid)
        assert st[0]["masking"]["fields_masked"] == n and st[0]["masking"]["overmasked"] == 0
        assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]
    finally:
        srv.close()


# ---- the agent refuses a policy it cannot apply -------------------------------------------

def test_agent_refuses_to_start_on_a_bad_key_pattern(rd, one, tmp_path):
    one.stop()
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_KEYS.replace('"session"', '"a*b"'), encoding="utf-8")
    try:
        a = Agent(str(tmp_path), rd.port, ("--policy", str(path), "--api",
                                           str(tmp_path / "api.sock")), proto="redis")
    except AssertionError as e:
        msg = str(e)
    else:
        a.kill()
        pytest.fail("the agent started with a key pattern it must refuse")
    assert msg.startswith("agent exited") and not msg.startswith("agent exited 0"), msg
    assert "users-by-key" in msg and "a*b" in msg, msg


# ---- the guard on the same connection ---------------------------------------------------------

def test_guard_block_keeps_replies_paired(rd, one, data, cgroups):
    """
    A command the guard blocks is rewritten in the kernel into one that fails: still
    one command, one reply, so the replies after it stay paired with their commands,
    in one send and across sends.
    """
    pol = POLICY_STYLE.replace("STYLE", "stars") + \
        "rules:\n  - {name: no-flush, match: {verb: [FLUSHALL]}, action: block}\n"
    a = one.use("guard", pol, rd.port)
    with RawConn(cgroups, MASKED_CG, rd.port) as c:
        got, err = c.ask(cmd("GET", "user:1") + cmd("FLUSHALL") + cmd("GET", "user:1") +
                         cmd("GET", "product:1"), frames=4)
        assert err is None, err
        want = masked(bulk(USER1))[0]
        assert got.startswith(want)
        rest = got[len(want):]
        assert rest.startswith(b"-") and b"blocked by dbwarden rule no-flush" in rest, rest
        assert rest[rest.index(b"\r\n") + 2:] == want + bulk(PROD1)
        assert c.ask(cmd("FLUSHALL"))[0].startswith(b"-")
        assert c.ask(cmd("GET", "product:1") + cmd("GET", "user:1"), frames=2) == \
            (bulk(PROD1) + want, None)
        pid = c.pid
    # the data is still there: nothing was flushed
    assert redis.Redis(host="127.0.0.1", port=rd.port).get("product:1").decode() == PROD1
    evs, st = stmts(a, pid, lambda st: len(st) >= 7)
    assert [e["statement"]["verb"] for e in st] == ["GET", "FLUSHALL", "GET", "GET",
                                                    "FLUSHALL", "GET", "GET"]
    assert fields(st) == [1, 0, 1, 0, 0, 0, 1]
    assert [e["decision"]["action"] for e in st if e["statement"]["verb"] == "FLUSHALL"] == \
        ["block", "block"]
    events.assert_no_literals(evs, SECRETS)
