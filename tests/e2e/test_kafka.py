# SPDX-License-Identifier: GPL-2.0-only
"""
The Kafka output against librdkafka's mock cluster (tests/helpers/kafka_mock.c,
its own process, real Kafka protocol on loopback), read back with python3-kafka,
a client that shares no code with the agent: every statement arrives once, in
seq order, with a valid hash chain, through outages, restarts and a full spool;
`dbwarden verify` catches what a test plants.
"""
import hashlib
import json
import os
import re
import subprocess
import threading
import time

import psycopg2
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import events
from conftest import DBW_BIN, helper

ZERO = "0" * 64


class KafkaMock:
    """The mock cluster: bootstrap address, and brokers down/up on its stdin."""

    def __init__(self, *topics, brokers=1):
        args = [helper("kafka_mock"), "--brokers", str(brokers)]
        for t in topics:
            args += ["--topic", t]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "bootstrap", line
        self.bootstrap = line[1]

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", (line, answer)

    def down(self):
        self.cmd("down")

    def up(self):
        self.cmd("up")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def kafka():
    mocks = []

    def start(*topics, brokers=1):
        m = KafkaMock(*topics, brokers=brokers)
        mocks.append(m)
        return m

    yield start
    for m in mocks:
        m.stop()


def consumer(bootstrap, topic):
    # the mock answers no version probe: name the protocol version
    c = KafkaConsumer(bootstrap_servers=bootstrap, api_version=(2, 0, 0),
                      enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning()
    return c, tps


def read_topic(bootstrap, topic, timeout=60):
    """Every message value in the topic now, from the beginning, in partition order."""
    c, tps = consumer(bootstrap, topic)
    end = c.end_offsets(tps)
    out = []
    deadline = time.time() + timeout
    while any(c.position(tp) < end[tp] for tp in tps):
        assert time.time() < deadline, f"read {len(out)} of {sum(end.values())} messages"
        for _, msgs in c.poll(timeout_ms=500).items():
            out += [m.value for m in msgs]
    c.close()
    return out


def check_stream(values, first_prev=ZERO, redelivered=None):
    """
    Checked here, independently of `dbwarden verify`: seq runs 1..n with no
    gap and no duplicate, and each agent.prev is the SHA-256 of the bytes of
    the event before it. Returns the parsed events. With a list as
    `redelivered`, a seq seen again is allowed if its bytes are those of its
    first copy (listed there): delivery is at least once.
    """
    evs, prev, first = [], first_prev, {}
    for i, v in enumerate(values):
        e = json.loads(v)
        assert e["schema"] == "dbwarden.audit/v1"
        seq = e["agent"]["seq"]
        if seq in first and redelivered is not None:
            assert v == first[seq], f"message {i}: seq {seq} again, with other bytes"
            redelivered.append(seq)
            continue
        assert seq == len(evs) + 1, f"message {i}: seq {seq}"
        assert e["agent"]["prev"] == prev, f"chain broken at seq {seq}"
        prev = hashlib.sha256(v).hexdigest()
        first[seq] = v
        evs.append(e)
    return evs


def kafka_args(mock, topic, *extra):
    return ("--output", "kafka", "--kafka-brokers", mock.bootstrap, "--kafka-topic", topic) + extra


def verify(*args):
    return subprocess.run([DBW_BIN, "verify"] + list(args), capture_output=True, text=True,
                          timeout=120)


def kafka_summary(agent):
    """The agent's Kafka figures from its exit summary."""
    err = agent.stderr()
    m = re.search(r"kafka: produced (\d+), delivered (\d+), delivery failures (\d+), "
                  r"replayed from the spool (\d+), dropped \(spool full\) (\d+), "
                  r"left in the queue (\d+), in the spool for the next start (\d+)", err)
    assert m, err
    keys = ("produced", "delivered", "failures", "replayed", "dropped", "left", "spooled")
    out = dict(zip(keys, map(int, m.groups())))
    m = re.search(r"statement to delivery: p50 (\d+) us, p99 (\d+) us", err)
    if m:
        out["p50_us"], out["p99_us"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"kafka: (\d+) events/s from the first produce", err)
    if m:
        out["events_per_s"] = int(m.group(1))
    return out


class Load(threading.Thread):
    """psycopg2 statements at a steady pace until stopped; counts what the server answered."""

    def __init__(self, pg, pace=0.004):
        super().__init__(daemon=True)
        self.pg, self.pace, self.done, self.n = pg, pace, threading.Event(), 0
        self.conn = psycopg2.connect(pg.dsn())
        self.conn.autocommit = True
        self.pid = os.getpid()

    def run(self):
        cur = self.conn.cursor()
        while not self.done.is_set():
            cur.execute("SELECT %s::int", (73100000 + self.n,))
            cur.fetchall()
            self.n += 1
            time.sleep(self.pace)

    def stop(self):
        self.done.set()
        self.join(timeout=30)
        self.conn.close()
        return self.n


def statements(evs, text=None, pid=None):
    return [e for e in evs if e["type"] == "statement"
            and (text is None or e["statement"]["text"] == text)
            and (pid is None or e["actor"]["pid"] == pid)]


def spool_segments(agent):
    return [f for f in os.listdir(os.path.join(agent.state, "spool")) if f.endswith(".seg")]


def wait_spool_empty(agent, timeout=30):
    """Every event acknowledged by the broker (the spool deletes what is delivered)."""
    deadline = time.time() + timeout
    while spool_segments(agent):
        assert time.time() < deadline, "the spool did not drain"
        time.sleep(0.1)


def edit(line):
    """The same event with one value changed, still valid JSON with its seq."""
    e = json.loads(line)
    if e["type"] == "statement":
        e["outcome"]["rows"] = 999
    else:
        e["time"] = "2000-01-01T00:00:00.000000Z"
    return json.dumps(e, separators=(",", ":")).encode()


def select_ints(pg, n, base):
    """n statements from psycopg2, one round trip each (literals base, base + 1, ...)."""
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(n):
        cur.execute("SELECT %s::int", (base + i,))
    conn.close()


def test_10000_statements_arrive_in_order_with_a_valid_chain(pg, agent, kafka, tmp_path):
    mock = kafka("audit")
    a = agent(*kafka_args(mock, "audit"), "--record", str(tmp_path / "rec.bin"))
    select_ints(pg, 10000, 73200000)
    lines = a.stop()
    assert a.rc == 0
    k = kafka_summary(a)
    values = read_topic(mock.bootstrap, "audit")
    # the same bytes as the JSON Lines output, event for event
    assert values == [ln for ln in lines.raw.split(b"\n") if ln]
    evs = check_stream(values)
    assert len(statements(evs, pid=os.getpid())) == 10000
    events.assert_no_loss(events.Events(evs), a)
    assert k["delivered"] == len(values) and k["failures"] == 0 and k["left"] == 0
    # every delivered event left the spool
    assert k["spooled"] == 0 and spool_segments(a) == []
    r = verify("--kafka-brokers", mock.bootstrap, "--kafka-topic", "audit")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(values)} events, seq 1..{len(values)}, 1 instance: complete" in r.stdout
    assert verify(a.out).returncode == 0
    print(f"\nkafka: {k}")

    # sustained rate into the mock: the recorded run replayed through the whole
    # userspace pipeline 10 times, as fast as the producer takes it
    rep = subprocess.run([DBW_BIN, "replay", str(tmp_path / "rec.bin"), "--repeat", "10",
                          "--state-dir", str(tmp_path / "replay-state"),
                          *kafka_args(mock, "replay")], capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 0, rep.stderr
    m = re.search(r"kafka: produced (\d+), delivered (\d+)", rep.stderr)
    assert m and m.group(1) == m.group(2), rep.stderr
    rate = re.search(r"kafka: (\d+) events/s", rep.stderr)
    print(f"replay into kafka: {m.group(2)} events, {rate.group(1)} events/s")


def test_brokers_down_30s_nothing_lost_nothing_duplicated(pg, agent, kafka):
    mock = kafka("audit")
    # a small producer queue: most of the outage waits in the spool, not in librdkafka
    a = agent(*kafka_args(mock, "audit", "--kafka-config", "queue.buffering.max.messages=1000"))
    load = Load(pg)
    load.start()
    time.sleep(2)
    mock.down()
    time.sleep(30)
    mock.up()
    time.sleep(3)
    sent = load.stop()
    wait_spool_empty(a)  # delivered while the agent runs, not in its exit flush
    evs = a.stop()
    assert a.rc == 0
    k = kafka_summary(a)
    print(f"\nkafka after a 30 s outage: sent {sent}, {k}")
    assert k["replayed"] > 1000, k  # the spool fed the producer after the outage
    assert k["dropped"] == 0 and k["spooled"] == 0 and k["left"] == 0, k
    values = read_topic(mock.bootstrap, "audit")
    # seq 1..n, chain valid. A batch in flight when the broker went may be in the
    # topic twice: librdkafka sends it again with its idempotent sequence, which a
    # real broker drops, but the mock cluster dedupes transactional producers only.
    # Each copy must be byte-identical, and the agent itself produced each event once.
    again = []
    kev = check_stream(values, redelivered=again)
    print(f"in the topic: {len(kev)} events, {len(again)} identical copies {again[:20]}")
    assert len(kev) == len(evs)
    if k["failures"] == 0:  # no rewind: one produce per event
        assert k["produced"] == len(kev), k
    # (the clients' rate depends on the machine: the spool figure above is what matters)
    assert len(statements(kev, pid=os.getpid())) == sent > 1000
    assert "all brokers down" in a.stderr()
    r = verify("--kafka-brokers", mock.bootstrap, "--kafka-topic", "audit")
    assert r.returncode == 0, r.stdout
    if again:
        assert f"{len(again)} identical re-deliveries" in r.stdout, r.stdout


def test_restart_while_brokers_down_replays_the_spool(pg, agent, kafka):
    mock = kafka("audit")
    # deliveries fail fast during the outage: sent again from the spool, in order
    a = agent(*kafka_args(mock, "audit", "--kafka-config", "message.timeout.ms=1500"))
    pg.psql("-c", "SELECT 73300001", "-c", "SELECT 73300002")
    a.wait_for(lambda evs: len(statements(evs, "SELECT $1")) == 2)
    wait_spool_empty(a)  # nothing in flight when the brokers go
    mock.down()
    pg.psql("-c", "SELECT 73300003", "-c", "SELECT 73300004")
    a.wait_for(lambda evs: len(statements(evs, "SELECT $1")) == 4)
    time.sleep(2)
    a.stop()
    first = kafka_summary(a)
    assert first["failures"] > 0 and first["spooled"] > 0, first
    assert spool_segments(a)

    # a new agent on the same state, brokers still down: seq and chain go on
    b = agent(*kafka_args(mock, "audit"))
    assert "events from an earlier run in the spool: sending them first" in b.stderr()
    pg.psql("-c", "SELECT 73300005")
    b.wait_for(lambda evs: len(statements(evs, "SELECT $1")) == 5)
    mock.up()
    wait_spool_empty(b)
    evs = b.stop()  # the JSON Lines file of both runs: seq 1..n (checked by load)
    values = read_topic(mock.bootstrap, "audit")
    kev = check_stream(values)
    assert [ln for ln in evs.raw.split(b"\n") if ln] == values
    assert len({e["agent"]["instance"] for e in kev}) == 2
    assert len(statements(kev, "SELECT $1")) == 5
    r = verify("--kafka-brokers", mock.bootstrap, "--kafka-topic", "audit")
    assert r.returncode == 0, r.stdout
    assert "2 instances: complete" in r.stdout


def test_spool_too_small_a_loss_event_with_the_exact_count(pg, agent, kafka):
    mock = kafka("audit")
    mock.down()
    a = agent(*kafka_args(mock, "audit", "--spool-max", "32K"))
    select_ints(pg, 200, 73400000)
    a.wait_for(lambda evs: len(statements(evs, pid=os.getpid())) == 200)
    time.sleep(0.5)
    mock.up()
    a.wait_for(lambda evs: evs.losses(), timeout=30)
    evs = a.stop()
    values = read_topic(mock.bootstrap, "audit")
    kev = [json.loads(v) for v in values]
    seqs = [e["agent"]["seq"] for e in kev]
    missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
    assert missing, "nothing was dropped: the spool was not too small"
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    losses = [e for e in kev if e["type"] == "loss"]
    assert len(losses) == 1, losses
    loss = losses[0]["loss"]
    assert loss["reason"] == "spool_full" and loss["output"] == "kafka"
    # the exact count: one run of missing seqs, which the loss event names
    assert loss["count"] == len(missing) == loss["last_seq"] - loss["first_seq"] + 1
    assert missing == list(range(loss["first_seq"], loss["last_seq"] + 1))
    # the JSON Lines output lost nothing and carries the same loss event
    assert len(statements(evs, pid=os.getpid())) == 200 and evs.losses()[0]["loss"] == loss
    assert f"kafka_spool_full +{loss['count']}" in a.stderr()
    r = verify("--kafka-brokers", mock.bootstrap, "--kafka-topic", "audit")
    assert r.returncode == 1
    assert f"1 gaps ({len(missing)} missing)" in r.stdout
    assert f"1 loss events ({len(missing)} lost)" in r.stdout


def test_verify_catches_a_gap_a_duplicate_and_an_edit(pg, agent, kafka, tmp_path):
    a = agent()
    pg.psql(*[arg for i in range(5) for arg in ("-c", f"SELECT 7350000{i}")])
    a.wait_for(lambda evs: len(statements(evs, "SELECT $1")) == 5)
    a.stop()
    lines = [ln for ln in open(a.out, "rb").read().split(b"\n") if ln]
    assert len(lines) >= 6  # open, 5 statements
    r = verify(a.out)
    assert r.returncode == 0, r.stdout
    assert "complete, chain valid" in r.stdout

    def planted(name, ls):
        p = tmp_path / name
        p.write_bytes(b"\n".join(ls) + b"\n")
        return verify(str(p))

    gap = lines[:2] + lines[3:]
    r = planted("gap.jsonl", gap)
    assert r.returncode == 1 and "gap: seq 3..3 (1 missing)" in r.stdout, r.stdout
    # seq 3 again: the same bytes are a re-delivery (at least once), other bytes are not
    again = lines[:3] + [lines[2]] + lines[3:]
    r = planted("again.jsonl", again)
    assert r.returncode == 0 and "1 identical re-deliveries" in r.stdout, r.stdout
    dup = lines[:3] + [edit(lines[2])] + lines[3:]
    r = planted("dup.jsonl", dup)
    assert r.returncode == 1 and "duplicate: seq 3 again with other bytes" in r.stdout, r.stdout
    # an edit that keeps the JSON valid and seq in place: only the chain sees it
    edited = lines[:2] + [edit(lines[2])] + lines[3:]
    r = planted("edit.jsonl", edited)
    assert r.returncode == 1, r.stdout
    assert "chain break: seq 4: agent.prev is not the hash of seq 3" in r.stdout
    assert "0 gaps (0 missing), 0 duplicates, 1 chain breaks" in r.stdout

    # the same through Kafka, the streams produced by another client:
    # seq 3 missing, seq 4 twice (the second copy edited), seq 5 edited
    mock = kafka("clean", "tampered")
    p = KafkaProducer(bootstrap_servers=mock.bootstrap, api_version=(2, 0, 0))
    for ln in lines:
        p.send("clean", ln)
    for ln in lines[:2] + [lines[3], edit(lines[3]), edit(lines[4])] + lines[5:]:
        p.send("tampered", ln)
    p.flush()
    p.close()
    r = verify("--kafka-brokers", mock.bootstrap, "--kafka-topic", "clean")
    assert r.returncode == 0, r.stdout + r.stderr
    r = verify("--kafka-brokers", mock.bootstrap, "--kafka-topic", "tampered")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "gap: seq 3..3" in r.stdout and "duplicate: seq 4" in r.stdout
    assert "chain break: seq 6: agent.prev is not the hash of seq 5" in r.stdout
