# SPDX-License-Identifier: GPL-2.0-only
"""
Result masking of Redis replies, in the kernel, end to end: a real
redis-server on 127.0.0.1, real clients (redis-cli RESP2 and -3,
python3-redis). A client whose actor a masking rule selects reads the
values the rule's detectors recognise (emails, Luhn-valid cards) masked,
same length, in the rule's style; every other byte of the reply is exact,
and a client no rule selects reads the real values.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import threading

import pytest
import redis

import events
from conftest import Redis, agents, serve

# Realistic PII and non-PII values.
EMAIL = "jane.doe+lit@example.com"
EMAIL2 = "bob_smith@mail.example.org"
CARD = "4111111111111111"
CARD_SP = "5555 5555 5555 4444"
CARD_DASH = "3782-822463-10005"
BAD_LUHN = "4111111111111112"
NAME = "Jane Doe"
AGE = "42"
NOTE = "call back after 5pm"
NOT_MAIL = "x@y"

_RUN = f"/dbw-rmask-{os.getpid()}"
MASKED_CG = f"{_RUN}/agent"
OTHER_CG = f"{_RUN}/other"

POLICY = f"""\
version: 1
masking:
  results:
    - name: pii-for-agents
      match: {{actor: {{cgroup: {MASKED_CG}}}}}
      detectors: [email, credit_card]
      style: STYLE
      on_unmaskable: UNMASKABLE
"""


def policy_file(tmp_path, style="stars", unmaskable="block", body=None):
    path = tmp_path / "policy.yaml"
    path.write_text(body or POLICY.replace("STYLE", style).replace("UNMASKABLE", unmaskable))
    return str(path)


# ---- what a masked client must read: the kernel's detectors, restated ---------------

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}$")


def _luhn(digits):
    s = 0
    for i, d in enumerate(reversed(digits)):
        d = int(d)
        if i % 2:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        s += d
    return s % 10 == 0


def is_pii(v):
    if len(v) > 254:
        return False  # longer than the kernel checks (DBW_MASK_VALUE)
    if _EMAIL.match(v):
        return True
    if re.fullmatch(r"[0-9]([ -]?[0-9])*", v):
        digits = re.sub(r"[ -]", "", v)
        return 13 <= len(digits) <= 19 and _luhn(digits)
    return False


def styled(v, style="stars"):
    if style == "keep_last4":
        # a value of 4 bytes or fewer would be kept whole: it is masked whole
        return "*" * (len(v) - 4) + v[-4:] if len(v) > 4 else "*" * len(v)
    if style == "token":
        return "X" * len(v)
    return "*" * len(v)


def mask(v, style="stars"):
    """What the kernel makes of one string value."""
    if isinstance(v, bytes):
        return mask(v.decode(), style).encode()
    if isinstance(v, (list, tuple)):
        return type(v)(mask(x, style) for x in v)
    if isinstance(v, dict):
        return {mask(k, style): mask(x, style) for k, x in v.items()}
    if isinstance(v, str) and is_pii(v):
        return styled(v, style)
    return v


# ---- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rd():
    yield from serve(Redis())


@pytest.fixture
def agent(tmp_path, rd):
    yield from agents(tmp_path, rd.port, proto="redis")


@pytest.fixture
def cgroups():
    from workloads import cgroups_made
    yield from cgroups_made(MASKED_CG, OTHER_CG)


DATA = {
    "u:1:email": EMAIL, "u:1:card": CARD, "u:1:card_sp": CARD_SP, "u:1:card_dash": CARD_DASH,
    "u:1:badluhn": BAD_LUHN, "u:1:name": NAME, "u:1:age": AGE, "u:1:notmail": NOT_MAIL,
}
HASH = {"email": EMAIL2, "card": CARD_SP, "name": NAME, "visits": "17", "note": NOTE}
LIST = [EMAIL, NOTE, CARD, AGE, EMAIL2, BAD_LUHN, NAME, CARD_DASH]


@pytest.fixture
def pii(rd):
    """Keys holding realistic PII, written without an agent."""
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    r.flushall()
    r.mset(DATA)
    r.hset("u:h:1", mapping=HASH)
    r.rpush("u:l:1", *LIST)
    r.close()
    yield
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    r.flushall()
    r.close()


def run_in(cgroups, rel, argv, input=None, timeout=300):
    """Run argv inside cgroup rel (moved before it execs). Returns (CompletedProcess, pid)."""
    p = subprocess.Popen(["sh", "-c", 'read go && exec "$@"', "sh"] + list(argv),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd="/")
    try:
        cgroups.move(p.pid, rel)
        out, err = p.communicate(b"go\n" + (input or b""), timeout=timeout)
    except BaseException:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err), p.pid


def cli_in(cgroups, rel, rd, *args, tls=None):
    """redis-cli in cgroup rel; returns (stdout lines, pid)."""
    argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(tls.tls_port if tls else rd.port)]
    if tls:
        argv += ["--tls", "--cacert", tls.cert]
    res, pid = run_in(cgroups, rel, argv + list(args))
    return res, pid


def py_in(cgroups, rel, code):
    res, pid = run_in(cgroups, rel, ["/usr/bin/python3", "-c", code])
    assert res.returncode == 0, res.stderr.decode()
    return json.loads(res.stdout), pid


def lines(res):
    assert res.returncode == 0, res.stderr
    return res.stdout.decode().splitlines()


def masked_stmts(evs, verb, cg=MASKED_CG):
    return [e for e in evs.statements()
            if e["statement"]["verb"] == verb and e["actor"]["cgroup"] == cg]


# ---- redis-cli, RESP2 and RESP3 --------------------------------------------------------

@pytest.mark.parametrize("resp", ["2", "3"])
def test_redis_cli_masked_actor_reads_masked_other_real(rd, agent, cgroups, pii, tmp_path, resp):
    a = agent("--policy", policy_file(tmp_path))
    proto = ["-3"] if resp == "3" else []
    keys = list(DATA)
    want_mget = [DATA[k] for k in keys]

    def session(cg):
        out = {}
        for k in keys:
            out[k] = lines(cli_in(cgroups, cg, rd, *proto, "GET", k)[0])
        out["mget"] = lines(cli_in(cgroups, cg, rd, *proto, "MGET", *keys)[0])
        out["lrange"] = lines(cli_in(cgroups, cg, rd, *proto, "LRANGE", "u:l:1", "0", "-1")[0])
        out["hgetall"] = lines(cli_in(cgroups, cg, rd, *proto, "HGETALL", "u:h:1")[0])
        # a status reply (simple string) carrying an email
        out["status"] = lines(cli_in(cgroups, cg, rd, *proto, "EVAL",
                                     "return redis.status_reply(ARGV[1])", "0", EMAIL)[0])
        out["alive"] = lines(cli_in(cgroups, cg, rd, *proto, "PING")[0])
        return out

    got = session(MASKED_CG)
    plain = session(OTHER_CG)
    for k in keys:
        assert plain[k] == [DATA[k]]
        assert got[k] == [mask(DATA[k])], k
    assert plain["mget"] == want_mget and got["mget"] == mask(want_mget)
    assert plain["lrange"] == LIST and got["lrange"] == mask(LIST)
    # RESP2: field, value, field, value ...; RESP3: a map, "field value" per line
    flat = [x for kv in HASH.items() for x in kv]
    if resp == "3":
        assert plain["hgetall"] == [f"{k} {v}" for k, v in HASH.items()]
        assert got["hgetall"] == [f"{k} {mask(v)}" for k, v in HASH.items()]
    else:
        assert plain["hgetall"] == flat and got["hgetall"] == mask(flat)
    assert plain["status"] == [EMAIL] and got["status"] == ["*" * len(EMAIL)]
    assert got["alive"] == plain["alive"] == ["PONG"]
    # the masked values really were masked: not a client-side accident
    assert got["mget"] != want_mget
    evs = a.stop()
    assert a.rc == 0
    events.assert_no_loss(evs, a)
    gets = masked_stmts(evs, "GET")
    assert len(gets) == len(keys)
    assert [g["masking"]["fields_masked"] for g in gets] == \
        [1 if is_pii(DATA[k]) else 0 for k in keys]
    assert all(g["masking"]["applied"] and g["masking"]["fields_unmasked"] == 0 for g in gets)
    mg = masked_stmts(evs, "MGET")
    assert len(mg) == 1 and mg[0]["masking"]["fields_masked"] == sum(map(is_pii, want_mget))
    lr = masked_stmts(evs, "LRANGE")
    assert lr[0]["masking"]["fields_masked"] == sum(map(is_pii, LIST))
    hg = masked_stmts(evs, "HGETALL")
    assert hg[0]["masking"]["fields_masked"] == sum(map(is_pii, flat))
    assert masked_stmts(evs, "EVAL")[0]["masking"]["fields_masked"] == 1
    # a client no rule selects never carried the masking program
    assert not [e for e in evs.statements() if e["actor"]["cgroup"] == OTHER_CG and "masking" in e]
    events.assert_no_literals(evs, [EMAIL, EMAIL2, CARD])


# ---- python3-redis: pipelines, transactions ------------------------------------------

PYREDIS = """
import json, redis
r = redis.Redis(host="127.0.0.1", port=%d, decode_responses=True)
out = {}
keys = %r
out["get"] = r.get("u:1:email")
out["mget"] = r.mget(keys)
out["hgetall"] = r.hgetall("u:h:1")
out["lrange"] = r.lrange("u:l:1", 0, -1)
p = r.pipeline(transaction=False)
for k in keys:
    p.get(k)
p.hget("u:h:1", "email")
p.incr("counter:pl")
p.lrange("u:l:1", 0, 2)
res = p.execute()
# the counter's value differs between runs: left out
out["pipeline"] = res[:len(keys) + 1] + [res[-1]]
t = r.pipeline(transaction=True)
t.get("u:1:card")
t.set("tx:k", "v1")
t.get("u:1:name")
t.hget("u:h:1", "card")
out["multi"] = t.execute()
r.set("after:1", %r)
out["after"] = r.get("after:1")
out["ping"] = r.ping()
print(json.dumps(out))
"""


def test_python_redis_pipeline_transaction_session_usable(rd, agent, cgroups, pii, tmp_path):
    a = agent("--policy", policy_file(tmp_path))
    keys = list(DATA)
    code = PYREDIS % (rd.port, keys, EMAIL2)
    got, pid = py_in(cgroups, MASKED_CG, code)
    plain, _ = py_in(cgroups, OTHER_CG, code)
    assert plain["get"] == EMAIL and got["get"] == mask(EMAIL) != EMAIL
    assert plain["mget"] == [DATA[k] for k in keys] and got["mget"] == mask(plain["mget"])
    assert plain["hgetall"] == HASH and got["hgetall"] == mask(HASH)
    assert plain["lrange"] == LIST and got["lrange"] == mask(LIST)
    assert got["pipeline"] == mask(plain["pipeline"])
    assert plain["multi"] == [CARD, True, NAME, CARD_SP]
    assert got["multi"] == [mask(CARD), True, NAME, mask(CARD_SP)]
    # the session goes on: a later command and its reply are exact (EMAIL2 is masked)
    assert got["after"] == mask(EMAIL2) and plain["after"] == EMAIL2
    assert got["ping"] is True
    evs = a.stop()
    events.assert_no_loss(evs, a)
    st = evs.statements(pid=pid)
    by = [(e["statement"]["verb"], e.get("masking", {}).get("fields_masked")) for e in st]
    # every event of the masked client says masking, with the counts of its own reply
    assert all("masking" in e and e["masking"]["applied"] for e in st), by
    n_mget = sum(map(is_pii, plain["mget"]))
    want = [("GET", 1), ("MGET", n_mget), ("HGETALL", sum(map(is_pii, HASH.values()))),
            ("LRANGE", sum(map(is_pii, LIST)))] + \
        [("GET", int(is_pii(DATA[k]))) for k in keys] + \
        [("HGET", 1), ("INCRBY", 0), ("LRANGE", sum(map(is_pii, LIST[:3]))),
         ("MULTI", 0), ("GET", 0), ("SET", 0), ("GET", 0), ("HGET", 0), ("EXEC", 2),
         ("SET", 0), ("GET", 1), ("PING", 0)]
    assert by == want
    events.assert_no_literals(evs, [EMAIL, EMAIL2, CARD])


# ---- styles ------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["keep_last4", "token"])
def test_styles(rd, agent, cgroups, pii, tmp_path, style):
    a = agent("--policy", policy_file(tmp_path, style=style))
    keys = list(DATA)
    got = lines(cli_in(cgroups, MASKED_CG, rd, "MGET", *keys)[0])
    assert got == [mask(DATA[k], style) for k in keys]
    assert got[1] == "*" * 12 + CARD[-4:] if style == "keep_last4" else "X" * len(CARD)
    got = lines(cli_in(cgroups, MASKED_CG, rd, "-3", "HGETALL", "u:h:1")[0])
    assert got == [f"{k} {mask(v, style)}" for k, v in HASH.items()]
    a.stop()


# ---- large replies: values streamed through, values cut by skbs ---------------------

LARGE = """
import hashlib, json, redis
r = redis.Redis(host="127.0.0.1", port=%d, decode_responses=False)
out = {}
big = r.get("big:1")
out["big_len"] = len(big)
out["big_sha"] = hashlib.sha256(big).hexdigest()
# a multi-MB element, then an email: the scan skips the first, frames the second
bl = r.lrange("big:l", 0, -1)
out["bl_sha"] = hashlib.sha256(bl[0]).hexdigest()
out["bl_rest"] = [x.decode() for x in bl[1:]]
out["many"] = [x.decode() for x in r.lrange("many:l", 0, -1)]
out["after"] = r.get("u:1:email").decode()
print(json.dumps(out))
"""


def test_large_values_stream_and_cut_values_never_pass(rd, agent, cgroups, pii, tmp_path):
    import hashlib
    r = redis.Redis(host="127.0.0.1", port=rd.port)
    big = (b"lit_big_" + bytes(range(256)) * (4 << 12))[:(4 << 20) - 24] + b"tail@example.com" + \
        b"12345678"
    r.set("big:1", big)
    r.rpush("big:l", big, EMAIL2, NOTE)
    many = []
    for i in range(30000):
        many.append([f"user{i}@example{i % 7}.com", f"note {i}", "4111111111111111",
                     f"lit_{i}"][i % 4])
    many.append(EMAIL)  # the reply's last value
    for k in range(0, len(many), 5000):
        r.rpush("many:l", *many[k:k + 5000])
    r.close()
    a = agent("--policy", policy_file(tmp_path))
    got, pid = py_in(cgroups, MASKED_CG, LARGE % rd.port)
    # values longer than the kernel checks (DBW_MASK_VALUE) stream through intact
    assert got["big_len"] == len(big) and got["big_sha"] == hashlib.sha256(big).hexdigest()
    assert got["bl_sha"] == got["big_sha"]
    assert got["bl_rest"] == [mask(EMAIL2), NOTE]
    assert got["after"] == mask(EMAIL)
    out = got["many"]
    assert len(out) == len(many)
    overmasked = 0
    for want, v in zip(many, out):
        if is_pii(want):
            assert v == mask(want), (want, v)  # masked whole, wherever an skb cut it
        elif v != want:
            # cut by an skb while it could still be an email: its first part was masked
            # before the rest arrived (counted below)
            k = len(v) - len(v.lstrip("*"))
            assert 0 < k < len(want) and v == "*" * k + want[k:], (want, v)
            overmasked += 1
    assert out[-1] == mask(EMAIL)
    evs = a.stop()
    events.assert_no_loss(evs, a)
    st = evs.statements(pid=pid)
    lr = [e for e in st if e["statement"]["verb"] == "LRANGE"]
    assert len(lr) == 2
    assert lr[0]["masking"]["fields_masked"] == 1  # big:l: EMAIL2
    m = lr[1]["masking"]
    assert m["fields_masked"] == sum(map(is_pii, many)) and m["fields_unmasked"] == 0
    assert m["overmasked"] == overmasked
    print(f"{len(many)} values: {overmasked} overmasked at skb boundaries")
    assert masked_stmts(evs, "GET")[-1]["masking"]["fields_masked"] == 1


# ---- every RESP3 type, and replies cut anywhere: a scripted server --------------------

class ScriptedServer:
    """
    A server on 127.0.0.1 that answers each connection's first bytes with
    a fixed reply, sent in chunks of `split` bytes (TCP_NODELAY, a pause
    between): each chunk reaches the client in an skb of its own, so a type
    byte, a length line, a value or its CRLF is cut wherever the test asks.
    The real redis-server never sends some of these types (attributes,
    blob errors): only the framing of the masked stream is under test here.
    """

    def __init__(self, reply, split=None, pause=0.02):
        """reply: bytes (cut every `split` bytes), or a list of chunks."""
        self.reply, self.split, self.pause = reply, split, pause
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        import time
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    s.recv(4096)
                    chunks = self.reply
                    if isinstance(chunks, bytes):
                        step = self.split or len(chunks)
                        chunks = [chunks[i:i + step] for i in range(0, len(chunks), step)]
                    for c in chunks:
                        s.sendall(c)
                        if len(chunks) > 1:
                            time.sleep(self.pause)
                    s.recv(4096)  # until the client closes
                except OSError:
                    pass

    def close(self):
        self.ls.close()
        self.t.join(5)


RAW_CLIENT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", %d))
s.settimeout(%f)
s.sendall(b"PING\\r\\n")
buf = b""
err = None
try:
    while len(buf) < %d:
        b = s.recv(65536)
        if not b:
            err = "eof"
            break
        buf += b
except OSError as e:
    err = type(e).__name__
sys.stdout.write(repr((buf, err)))
"""


def raw_in(cgroups, rel, port, want, timeout=10.0):
    import ast
    res, pid = run_in(cgroups, rel, ["/usr/bin/python3", "-c", RAW_CLIENT % (port, timeout, want)])
    assert res.returncode == 0, res.stderr.decode()
    return ast.literal_eval(res.stdout.decode()), pid


def wait_closed(a, n):
    """The agent has reported n connections closed (their masking totals)."""
    a.wait_for(lambda evs: len([e for e in evs if e["type"] == "connection_close"]) >= n)


def bulk(v, t=b"$"):
    v = v.encode() if isinstance(v, str) else v
    return t + str(len(v)).encode() + b"\r\n" + v + b"\r\n"


def s_(v):
    return b"+" + v.encode() + b"\r\n"


def resp3_reply(m):
    """
    Every RESP3 type; m masks a value (identity: what the server sends).
    The values that are not PII begin with a byte no detector accepts, so
    that no skb boundary can leave a prefix of theirs masked.
    """
    def E():
        return m(EMAIL)

    def E2():
        return m(EMAIL2)

    return b"".join([
        bulk(E()), s_(E2()), bulk(m(CARD)), bulk("<none>"), b"$-1\r\n", b"$0\r\n\r\n", b"*-1\r\n",
        b"*0\r\n", b":12345\r\n", b"-ERR not an email: " + EMAIL.encode() + b"\r\n",
        b"*3\r\n" + bulk(E()) + b"*2\r\n" + bulk(m(CARD)) + b":1\r\n" + bulk("[note]"),
        b"%2\r\n" + s_("[email]") + s_(E2()) + s_("[card]") + bulk(m(CARD_SP)),
        b"~2\r\n" + bulk(E()) + b",3.14\r\n",
        # verbatim: the value after "txt:" is checked
        bulk("txt:" + E(), b"="), bulk("mkd:" + "<b>" + EMAIL + "</b>", b"="),
        # an attribute, then the reply it annotates
        b"|1\r\n" + s_("[key-popularity]") + b"*1\r\n" + bulk(E2()) + bulk(E()),
        # a push (pub/sub message), not a reply
        b">3\r\n" + bulk("<message>") + bulk("<chan>") + bulk(E()),
        bulk("SYNTAX invalid", b"!"), b"_\r\n", b"#t\r\n",
        b"(3492890328409238509324850943850943825024385\r\n", b"+[ok]\r\n",
    ])


def count_pii():
    n = []
    resp3_reply(lambda v: n.append(v) or v)
    return sum(map(is_pii, n))


@pytest.mark.parametrize("split", [None, 1, 7])
def test_every_resp3_type_cut_anywhere(cgroups, tmp_path, split):
    from conftest import agents
    srv = ScriptedServer(resp3_reply(lambda v: v), split=split, pause=0.002 if split == 1 else 0.02)
    start = agents(tmp_path, srv.port, proto="redis")
    try:
        a = next(start)("--policy", policy_file(tmp_path))
        want = resp3_reply(lambda v: mask(v))
        (got, err), _ = raw_in(cgroups, MASKED_CG, srv.port, len(want))
        assert err is None and got == want
        (plain, err), _ = raw_in(cgroups, OTHER_CG, srv.port, len(want))
        assert plain == resp3_reply(lambda v: v)
        wait_closed(a, 2)
        evs = a.stop()
    finally:
        next(start, None)  # the factory's cleanup: its agents killed
        srv.close()
    # nothing lost, the stream stayed framed, every value counted
    assert not [e for e in evs.of("alert") if e["alert"]["kind"].startswith("mask_")]
    st = [e for e in evs.statements() if e["actor"]["cgroup"] == MASKED_CG]
    assert len(st) == 1 and st[0]["masking"]["applied"]
    closes = [e["stats"]["masking"] for e in evs.of("connection_close") if "masking" in e["stats"]]
    assert len(closes) == 1
    assert closes[0]["fields_masked"] == count_pii() and closes[0]["overmasked"] == 0


def test_value_cut_while_it_may_match_is_masked_then_counted(cgroups, tmp_path):
    """A text value cut by an skb while it could still be an email: its first part is
    masked (it has passed when the rest shows it is not one), and counted."""
    from conftest import agents
    reply = bulk("someone") + s_("OK")
    srv = ScriptedServer(reply, split=5)  # "$7\r\ns" "omeon" "e\r\n+O" "K\r\n"
    start = agents(tmp_path, srv.port, proto="redis")
    try:
        a = next(start)("--policy", policy_file(tmp_path))
        (got, err), _ = raw_in(cgroups, MASKED_CG, srv.port, len(reply))
        wait_closed(a, 1)
        # the last part is not masked: by then the value is known not to match
        assert got == b"$7\r\n******e\r\n+*K\r\n", got
        evs = a.stop()
    finally:
        next(start, None)  # the factory's cleanup: its agents killed
        srv.close()
    closes = [e["stats"]["masking"] for e in evs.of("connection_close") if "masking" in e["stats"]]
    assert closes == [{"rows": 2, "fields_masked": 0, "fields_unmasked": 0, "overmasked": 2}]


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_lost_framing_follows_on_unmaskable(cgroups, tmp_path, unmaskable):
    """Bytes that are not RESP: block drops them and resets; allow passes them, alerted."""
    from conftest import agents
    chunks = [s_("[ok]"), b"?garbage\r\n" + bulk(EMAIL)]
    srv = ScriptedServer(chunks, pause=0.2)
    start = agents(tmp_path, srv.port, proto="redis")
    try:
        a = next(start)("--policy", policy_file(tmp_path, unmaskable=unmaskable))
        (got, err), _ = raw_in(cgroups, MASKED_CG, srv.port, len(b"".join(chunks)))
        evs = a.wait_for(lambda evs: [e for e in evs if e["type"] == "alert" and
                                      e["alert"]["kind"] == "mask_unmaskable"])
        if unmaskable == "block":
            evs = a.wait_for(lambda evs: [e for e in evs if e["type"] == "alert" and
                                          e["alert"]["kind"] == "connection_reset"])
        a.stop()
    finally:
        next(start, None)  # the factory's cleanup: its agents killed
        srv.close()
    al = [e["alert"]["detail"] for e in evs.of("alert") if e["alert"]["kind"] == "mask_unmaskable"]
    if unmaskable == "block":
        # what came before passed; the rest never reaches the client, which is not left hanging
        assert got == chunks[0] and err in ("eof", "ConnectionResetError", "ConnectionAbortedError"), \
            (got, err)
        assert al == ["result framing lost: connection reset (on_unmaskable: block)"]
        resets = [e["alert"]["detail"] for e in evs.of("alert")
                  if e["alert"]["kind"] == "connection_reset"]
        assert resets and resets[0].startswith("result masking lost its framing")
    else:
        assert got == b"".join(chunks) and err is None
        assert al == ["result framing lost: later results pass unmasked (on_unmaskable: allow)"]


# ---- TLS: an encrypted stream cannot be masked ----------------------------------------

class RedisTLS(Redis):
    """A redis-server that speaks only TLS (--tls-port), with a self-signed certificate."""

    def start(self):
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        self.tls_port = self.port
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", self.cert, "--tls-key-file", self.key,
             "--tls-ca-cert-file", self.cert, "--tls-auth-clients", "no",
             "--dir", self.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--tls",
                                "--cacert", self.cert, "PING"], capture_output=True, text=True)
            if r.stdout.strip() == "PONG":
                return
            import time
            time.sleep(0.1)
        raise AssertionError("redis-server (TLS) did not start")


@pytest.fixture(scope="module")
def trd():
    yield from serve(RedisTLS())


@pytest.mark.parametrize("unmaskable", ["block", "allow"])
def test_tls_connection_of_masked_actor(trd, cgroups, tmp_path, unmaskable):
    from conftest import agents
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(trd.port), "--tls", "--cacert",
                    trd.cert, "SET", "t:email", EMAIL], check=True, capture_output=True)
    start = agents(tmp_path, trd.port, proto="redis")
    try:
        a = next(start)("--policy", policy_file(tmp_path, unmaskable=unmaskable))
        res, _ = cli_in(cgroups, MASKED_CG, trd, "GET", "t:email", tls=trd)
        out = res.stdout.decode()
        if unmaskable == "block":
            # no in-protocol refusal before the handshake: the connection is reset
            assert EMAIL not in out and (res.returncode != 0 or "error" in
                                         (out + res.stderr.decode()).lower()), res
        else:
            assert res.returncode == 0 and out.strip() == EMAIL
        # a client no rule selects: TLS as usual
        res, _ = cli_in(cgroups, OTHER_CG, trd, "GET", "t:email", tls=trd)
        assert res.returncode == 0 and res.stdout.decode().strip() == EMAIL
        evs = a.wait_for(lambda evs: [e for e in evs if e["type"] == "alert" and
                                      e["alert"]["kind"] == "mask_unmaskable"])
        if unmaskable == "block":
            evs = a.wait_for(lambda evs: [e for e in evs if e["type"] == "alert" and
                                          e["alert"]["kind"] == "connection_reset"])
        evs = a.stop()
    finally:
        next(start, None)  # the factory's cleanup: its agents killed
    al = [e["alert"]["detail"] for e in evs.of("alert") if e["alert"]["kind"] == "mask_unmaskable"]
    # redis-cli tries a failed connection once more: one alert per connection
    assert len(al) == (len(evs.of("connection_open")) - 1) and len(set(al)) == 1
    if unmaskable == "block":
        assert al[0].startswith("encrypted connection refused") and "reset" in al[0]
        resets = [e["alert"]["detail"] for e in evs.of("alert")
                  if e["alert"]["kind"] == "connection_reset"]
        assert resets[0].startswith("an encrypted connection cannot be masked")
        assert not [e for e in evs.statements() if e["actor"]["cgroup"] == MASKED_CG and
                    e["statement"]["verb"] == "GET"]
    else:
        assert al[0].startswith("encrypted connection let through")
        # read in plaintext at the TLS library: the event says the rows passed unmasked
        g = [e for e in evs.statements() if e["actor"]["cgroup"] == MASKED_CG and
             e["statement"]["verb"] == "GET"]
        assert len(g) == 1 and g[0]["masking"] == {"applied": False, "reason": "encrypted",
                                                   "rows_unmasked": 0}
    # the handshake's ciphertext is never read as commands: every statement is a real one
    assert {e["statement"]["verb"] for e in evs.statements()} <= {"GET", "SET", "HELLO"}, \
        {e["statement"]["verb"] for e in evs.statements()}
    assert not [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_unparsed"]
    events.assert_no_literals(evs, [EMAIL])


GUARDED = """
import json, redis
r = redis.Redis(host="127.0.0.1", port=%d, decode_responses=True)
out = {}
try:
    r.flushall()
    out["flush"] = "ran"
except redis.ResponseError as e:
    out["flush"] = str(e)
p = r.pipeline(transaction=False)
p.get("u:1:email")
p.get("u:1:name")
p.get("u:1:card")
out["pipeline"] = p.execute()
print(json.dumps(out))
"""


def test_guard_and_masking_on_one_connection(rd, agent, cgroups, pii, tmp_path):
    """The guard's in-kernel refusal and the masking of later replies, one connection."""
    pol = POLICY.replace("STYLE", "stars").replace("UNMASKABLE", "block") + """\
rules:
  - {name: no-flush, match: {verb: [FLUSHALL, FLUSHDB]}, action: block}
"""
    a = agent("--policy", policy_file(tmp_path, body=pol))
    got, pid = py_in(cgroups, MASKED_CG, GUARDED % rd.port)
    assert "blocked by dbwarden rule no-flush" in got["flush"]
    assert got["pipeline"] == [mask(EMAIL), NAME, mask(CARD)]
    evs = a.stop()
    st = evs.statements(pid=pid)
    assert [e["statement"]["verb"] for e in st] == ["FLUSHALL", "GET", "GET", "GET"]
    assert st[0]["decision"]["action"] == "block"
    assert [e["masking"]["fields_masked"] for e in st[1:]] == [1, 0, 1]


def test_rule_columns_do_not_apply_to_redis(rd, agent, cgroups, pii, tmp_path):
    """A rule naming columns (PostgreSQL's) on a Redis connection: no reply has column
    names, so nothing is masked by them, and nothing is masked whole for lack of them
    (as PostgreSQL rows without a RowDescription would be under block)."""
    pol = POLICY.replace("STYLE", "stars").replace("UNMASKABLE", "block").replace(
        "      detectors: [email, credit_card]\n",
        "      columns: [email, card, name]\n      detectors: [email]\n")
    assert "columns: [email, card, name]" in pol
    a = agent("--policy", policy_file(tmp_path, body=pol))
    keys = list(DATA)
    got = lines(cli_in(cgroups, MASKED_CG, rd, "MGET", *keys)[0])
    # the email detector only: cards and every other value pass exact
    assert got == [("*" * len(DATA[k]) if k == "u:1:email" else DATA[k]) for k in keys]
    got = lines(cli_in(cgroups, MASKED_CG, rd, "HGETALL", "u:h:1")[0])
    assert got == [x if x != EMAIL2 else "*" * len(EMAIL2) for kv in HASH.items() for x in kv]
    evs = a.stop()
    assert [e["masking"]["fields_masked"] for e in masked_stmts(evs, "MGET")] == [1]
    assert not evs.of("alert") or not [e for e in evs.of("alert")
                                       if e["alert"]["kind"].startswith("mask_")]
