# SPDX-License-Identifier: GPL-2.0-only
"""
Result masking on the server side: the agent runs beside a PostgreSQL
server and masks what the server sends (sk_msg on the accepted socket),
for clients on nodes without an agent.

Such a client is made here without another machine: the server and the
client run in a network namespace of this test's own, on its loopback, and
the client dials another port that a NAT rule in that namespace sends to
the server's. The agent watches the server's port, so it never sees the
client connect (no client-side state, no statement events): only the
server side can mask its results. The rule selects the db user, which the
kernel reads from the server's own ParameterStatus session_authorization.
"""
import os
import re
import subprocess
import sys
import uuid

import pytest

import events
from conftest import Postgres, agents

ROWS = 100_000


def policy_file(tmp_path, body):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n" + body)
    return str(path)


def rules(on_unmaskable="block", placement="[client, server]"):
    return f"""\
masking:
  results:
    - name: ai-emails
      match: {{db_user: [ai_reader]}}
      columns: [email]
      detectors: [email]
      on_unmaskable: {on_unmaskable}
      placement: {placement}
    - name: ai-cards
      match: {{db_user: [ai_reader]}}
      columns: [card]
      style: keep_last4
      on_unmaskable: {on_unmaskable}
      placement: {placement}
"""


@pytest.fixture(scope="module")
def srv():
    """PostgreSQL (TLS on) in a namespace of its own; .alt is the port its clients dial."""
    ns = f"dbw-srv-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    pre = ["ip", "netns", "exec", ns]
    pg = Postgres(ssl=True, prefix=pre)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        pg.start()
        pg.pre = pre
        pg.alt = pg.port + 1 if pg.port < 65535 else pg.port - 1
        # the client's connect() names alt: the agent, watching pg.port, never sees it
        subprocess.run(pre + ["nft", "-f", "-"], check=True, text=True, input=f"""
table ip dbw_test {{
  chain out {{
    type nat hook output priority -100;
    tcp dport {pg.alt} dnat to 127.0.0.1:{pg.port}
  }}
}}
""")
        pg.psql("-c", f"""
CREATE ROLE ai_reader LOGIN;
CREATE TABLE srv_people (id int, email text, card text, note text);
INSERT INTO srv_people VALUES
  (1, 'alice@example.com', '4111111111111111', 'first'),
  (2, 'bob.smith@mail.example.org', '5500000000000004', 'second'),
  (3, NULL, '', 'third: reach me at carol@test.net');
CREATE TABLE srv_big AS
  SELECT i AS id, 'user' || i || '@example.com' AS email,
         lpad(i::text, 16, '4') AS card, 'row ' || i AS note
  FROM generate_series(1, {ROWS}) AS i;
GRANT SELECT ON srv_people, srv_big TO ai_reader;
""", host=pg.dir)
        yield pg
    finally:
        pg.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def agent(tmp_path, srv):
    """A factory: agent(*extra_args) starts the agent watching the server's port."""
    yield from agents(tmp_path, srv.port)


def psql(srv, user, sql, port=None, sslmode="disable"):
    """psql in the server's namespace, by default through the NAT: (rc, stdout, stderr)."""
    cmd = srv.pre + ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                     str(port or srv.alt), "-U", user, "-d", "postgres", "-c", sql]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PGSSLMODE=sslmode))
    return r.returncode, r.stdout, r.stderr


def keep_last4(v):
    return "*" * (len(v) - 4) + v[-4:] if len(v) > 4 else v


def masked_rows(text):
    """What the rules make of psql -At output of (id, email, card, note) rows."""
    out = []
    for line in text.splitlines():
        i, email, card, note = line.split("|", 3)
        out.append("|".join([i, "*" * len(email), keep_last4(card), note]))
    return "\n".join(out) + "\n"


def masked_but_overmasked(got, want):
    """
    got is want (rows as masked_rows() makes them), but for notes masked in
    part: a value cut by a send (or an skb) while it could still be an
    email has its first part masked before the rest is seen. Their number;
    a failure names the rows that differ otherwise.
    """
    g, w = got.splitlines(), want.splitlines()
    over, bad = 0, []
    for i, (a, b) in enumerate(zip(g, w)):
        if a == b:
            continue
        head, note = b.rsplit("|", 1)
        tail = a[len(head) + 1:]
        k = len(tail) - len(tail.lstrip("*"))
        if a.startswith(head + "|") and 0 < k < len(note) and tail == "*" * k + note[k:]:
            over += 1
        else:
            bad.append((i, a, b))
    if bad or len(g) != len(w):
        raise AssertionError(f"{len(g)} rows vs {len(w)} expected; {len(bad)} differ: {bad[:5]}")
    return over


def counter(agent, name):
    m = re.search(rf"\b{name}=(\d+)", agent.stderr())
    assert m, f"no {name} in the agent's exit summary"
    return int(m.group(1))


def server_alerts(evs, kind):
    return [e for e in evs.of("alert") if e["alert"]["kind"] == kind
            and (e.get("connection") or {}).get("side") == "server"]


def test_a_client_the_agent_cannot_see_reads_masked_values(srv, agent, tmp_path):
    a = agent("--policy", policy_file(tmp_path, rules()))
    q = "SELECT * FROM srv_people ORDER BY id"
    rc, masked, err = psql(srv, "ai_reader", q)
    assert rc == 0, err
    rc, real, err = psql(srv, "postgres", q)
    assert rc == 0, err
    assert real == ("1|alice@example.com|4111111111111111|first\n"
                    "2|bob.smith@mail.example.org|5500000000000004|second\n"
                    "3|||third: reach me at carol@test.net\n")
    assert masked == ("1|*****************|************1111|first\n"
                      "2|**************************|************0004|second\n"
                      "3|||third: reach me at carol@test.net\n")
    # a renamed column: the value detector, not the name, catches it
    rc, out, err = psql(srv, "ai_reader", "SELECT max(email) AS m, 'x' || 'y' AS k "
                                          "FROM srv_people")
    assert rc == 0 and out == "*" * 26 + "|xy\n", (out, err)
    # the session goes on: several statements, a transaction, an error, one connection
    rc, out, err = psql(srv, "ai_reader", "BEGIN; SELECT email FROM srv_people WHERE id = 1; "
                                          "SELECT 1/0; COMMIT;")
    assert rc != 0 and "division by zero" in err and out == "BEGIN\n" + "*" * 17 + "\n", (out, err)
    rc, out, err = psql(srv, "ai_reader", "SELECT email FROM srv_people WHERE id = 2; "
                                          "SELECT count(*) FROM srv_big")
    assert rc == 0 and out == "**************************\n100000\n", (out, err)
    evs = a.stop()
    # the client side never saw these connections: the server side alone masked them
    assert evs.statements() == []
    assert counter(a, "mask_conns") == 0
    assert counter(a, "mask_server_conns") >= 5
    assert counter(a, "mask_fields") >= 7
    events.assert_no_loss(evs, a)


def test_100k_rows_byte_exact(srv, agent, tmp_path):
    a = agent("--policy", policy_file(tmp_path, rules()))
    q = "SELECT * FROM srv_big ORDER BY id"
    rc, real, err = psql(srv, "postgres", q)
    assert rc == 0 and real.count("\n") == ROWS, err
    rc, masked, err = psql(srv, "ai_reader", q)
    assert rc == 0, err
    srv_over = masked_but_overmasked(masked, masked_rows(real))
    # a client the agent sees as well is masked on both sides: the server's
    # masks, and the client side's own where an skb cuts a value
    rc, both, err = psql(srv, "ai_reader", q, port=srv.port)
    assert rc == 0, err
    both_over = masked_but_overmasked(both, masked_rows(real))
    evs = a.stop()
    st = evs.statements()
    assert len(st) == 1 and st[0]["outcome"]["rows"] == ROWS
    # the client side counts in its statement's event what it masked in part
    client_over = st[0]["masking"]["overmasked"]
    assert client_over <= both_over <= srv_over * 2 + client_over
    assert counter(a, "mask_overmasked") >= srv_over + client_over
    assert counter(a, "mask_desync") == 0
    events.assert_no_loss(evs, a)
    print(f"100k rows: {srv_over} values overmasked at the server's send boundaries")


def test_slow_client_every_row_masked(srv, agent, tmp_path):
    """The server's sends end short against a slow reader: none goes out unmasked."""
    a = agent("--policy", policy_file(tmp_path, rules()))
    q = "SELECT * FROM srv_big ORDER BY id"
    rc, real, err = psql(srv, "postgres", q)
    assert rc == 0, err
    reader = os.path.join(os.path.dirname(__file__), "slow_pg_reader.py")
    r = subprocess.run(srv.pre + [sys.executable, reader, str(srv.alt), "ai_reader", q],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    masked_but_overmasked(r.stdout, masked_rows(real))
    evs = a.stop()
    assert counter(a, "mask_desync") == 0
    # the point of the slow reader: sends that ended short were sent again
    resends = counter(a, "mask_server_resends")
    assert resends > 0, "no send ended short: the reader was not slow enough"
    print("slow reader: sends the server made again:", resends)
    events.assert_no_loss(evs, a)


def test_placement_decides_the_side(srv, agent, tmp_path):
    q = "SELECT email FROM srv_people WHERE id = 1"
    # the default: the client's side only; a client the agent cannot see reads real values
    a = agent("--policy", policy_file(tmp_path, rules().replace(
        "      placement: [client, server]\n", "")))
    assert psql(srv, "ai_reader", q)[1] == "alice@example.com\n"
    assert psql(srv, "ai_reader", q, port=srv.port)[1] == "*****************\n"
    a.stop()
    assert counter(a, "mask_server_conns") == 0 and counter(a, "mask_conns") == 1
    # the server's side only: every client of the server, the agent's own ones too
    b = agent("--policy", policy_file(tmp_path, rules(placement="[server]")))
    assert psql(srv, "ai_reader", q)[1] == "*****************\n"
    assert psql(srv, "ai_reader", q, port=srv.port)[1] == "*****************\n"
    evs = b.stop()
    assert counter(b, "mask_conns") == 0 and counter(b, "mask_server_conns") == 2
    assert "masking" not in evs.statements()[-1]


@pytest.mark.parametrize("bad, why", [
    ("match: {db_user: [ai_reader], actor: {uid: [0]}}\n      placement: [server]",
     "placement server selects by target and db_user only"),
    ("match: {database: [shop]}\n      placement: [client, server]",
     "placement server selects by target and db_user only"),
    ("match: {db_user: [ai_reader]}\n      placement: [proxy]",
     "placement 'proxy' is not client or server"),
    ("match: {db_user: [ai_reader]}\n      placement: []", "placement names no side"),
])
def test_server_placement_needs_what_a_server_knows(tmp_path, bad, why):
    pol = policy_file(tmp_path, f"""\
masking:
  results:
    - name: r
      {bad}
      columns: [email]
""")
    r = subprocess.run([os.environ.get("DBW_BIN", "dbwarden"), "policy", "check", pol],
                       capture_output=True, text=True)
    assert r.returncode != 0 and why in r.stderr, r.stderr
    assert f"{pol}:" in r.stderr


def test_encrypted_connection_block_and_allow(srv, agent, tmp_path):
    a = agent("--policy", policy_file(tmp_path, rules()))
    rc, out, err = psql(srv, "ai_reader", "SELECT email FROM srv_people WHERE id = 1",
                        sslmode="require")
    assert rc != 0 and "error response during SSL exchange" in err, err
    # the db user comes after encryption starts: under block no client of the
    # server may encrypt, selected or not (documented)
    rc, out, err = psql(srv, "postgres", "SELECT email FROM srv_people WHERE id = 1",
                        sslmode="require")
    assert rc != 0 and "error response during SSL exchange" in err, err
    # plaintext, the other user reads real values
    rc, out, err = psql(srv, "postgres", "SELECT email FROM srv_people WHERE id = 1")
    assert rc == 0 and out == "alice@example.com\n", err
    evs = a.stop()
    al = server_alerts(evs, "mask_unmaskable")
    assert len(al) == 2 and all("refused" in e["alert"]["detail"] for e in al), al
    assert al[0]["connection"]["server"] == f"127.0.0.1:{srv.port}"
    assert al[0]["connection"]["client"].startswith("127.0.0.1:")

    b = agent("--policy", policy_file(tmp_path, rules(on_unmaskable="allow")))
    rc, out, err = psql(srv, "ai_reader", "SELECT email FROM srv_people WHERE id = 1",
                        sslmode="require")
    assert rc == 0 and out == "alice@example.com\n", err
    evs = b.stop()
    al = [e for e in server_alerts(evs, "mask_unmaskable") if "let through" in
          e["alert"]["detail"]]
    assert len(al) == 1, evs.of("alert")


SESSION = """
import sys, psycopg2
conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), user="ai_reader",
                        dbname="postgres", sslmode="disable")
conn.autocommit = True
cur = conn.cursor()
for line in sys.stdin:
    try:
        cur.execute("SELECT email FROM srv_people WHERE id = 1")
        print(cur.fetchone()[0], flush=True)
    except psycopg2.Error as e:
        print("error:", type(e).__name__, flush=True)
        break
"""


def session(srv):
    """One long connection through the NAT: each line on stdin runs the query."""
    return subprocess.Popen(srv.pre + ["/usr/bin/python3", "-c", SESSION, str(srv.alt)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(p):
    p.stdin.write("go\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


def test_pinned_masking_outlives_the_agent_unpinned_resets(srv, agent, tmp_path):
    pin = f"/sys/fs/bpf/dbw-test-{uuid.uuid4().hex[:8]}"
    a = agent("--policy", policy_file(tmp_path, rules()), "--pin-dir", pin)
    p = session(srv)
    try:
        assert ask(p) == "*****************"
        a.stop()
        # no daemon: the pinned programs go on masking the same connection
        assert ask(p) == "*****************"
    finally:
        p.kill()
        p.wait()
        a.unpin()

    b = agent("--policy", policy_file(tmp_path, rules()))
    p = session(srv)
    try:
        assert ask(p) == "*****************"
        evs = b.stop()
        # --no-pin: the programs leave with the agent, so the connection cannot stay
        answer = ask(p)
        assert answer.startswith("error:"), answer
    finally:
        p.kill()
        p.wait()
    al = [e for e in evs.of("alert") if e["alert"]["kind"] == "connection_reset"]
    assert any("reset 1" in e["alert"]["detail"] for e in al), evs.of("alert")
