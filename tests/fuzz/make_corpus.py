#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
"""
Seed corpora for the libFuzzer targets (tests/fuzz/corpus/<target>/), made
from the project's own fixtures:

  fuzz_records, fuzz_pg_stream  a recording made with `dbwarden run --record`
  fuzz_mysql_stream             (psql plaintext and TLS, a blocked DROP, libpq
  fuzz_redis_stream             pipeline and PQexecParams; the mariadb client,
                                PyMySQL, tests/helpers/mysql_prepared,
                                redis-cli, python3-redis): pass its path; each
                                connection goes to its protocol's target
  fuzz_sql                      the guardrail evasion and allow corpora
  fuzz_policy                   the policies of the tests and the README
  fuzz_tls_elf                  a small shared library shaped like OpenSSL's
                                (SSL_write -> internal function), built here

    tests/fuzz/make_corpus.py [RECORDING]
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def records(path):
    """The [u32 size][record] recording as a list of records."""
    out, data = [], open(path, "rb").read()
    off = 0
    while off + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, off)
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


def from_recording(path):
    recs = records(path)
    # fuzz_records: [u16 len][record], in slices of consecutive records
    framed = [struct.pack("<H", min(len(r), 65535)) + r[:65535] for r in recs]
    for i in range(0, len(framed), 16):
        put("fuzz_records", f"rec{i:04d}", b"".join(framed[i:i + 16]))
    put("fuzz_records", "all", b"".join(framed))
    # fuzz_pg_stream: each connection's DATA payloads, [ctl][<=64 bytes] pieces
    conns, proto = {}, {}
    for r in recs:
        if len(r) < 48:
            continue
        _, typ, _, conn = struct.unpack_from("<HHIQ", r, 0)
        if typ == 1:
            proto[conn] = r[24 + 40 + 2]  # dbw_rec_conn_open.proto
        if typ != 2:
            continue
        _, length, _, direction, flags = struct.unpack_from("<QIIBB", r, 24)
        conns.setdefault((conn, flags & 2), []).append((direction, r[48:48 + length]))
    targets = {2: "fuzz_mysql_stream", 3: "fuzz_redis_stream"}
    for i, (key, chunks) in enumerate(conns.items()):
        out = bytearray()
        for direction, payload in chunks:
            for k in range(0, len(payload), 64):
                piece = payload[k:k + 64]
                out.append((direction << 7) | (len(piece) - 1))
                out += piece
        put(targets.get(proto.get(key[0]), "fuzz_pg_stream"), f"conn{i:02d}", bytes(out[:16384]))


def sql():
    from test_guard import ALLOWED, EVASIONS
    texts = [s.format(t="t1") for s, _ in EVASIONS] + [s.format(t="t1") for s in ALLOWED]
    texts += ["SELECT 'x' FROM a JOIN b USING (id) WHERE c = $1",
              "COPY t1 FROM STDIN", "DO $$BEGIN EXECUTE 'DROP TABLE x'; END$$",
              "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n+1 FROM r) SELECT * FROM r"]
    for i, t in enumerate(texts):
        put("fuzz_sql", f"s{i:03d}", b"\0" + t.encode())


def policies():
    from test_guard import POLICY
    put("fuzz_policy", "guard", POLICY.encode())
    put("fuzz_policy", "full", b"""version: 1
defaults: {action: allow, unparsed: block}
targets:
  - {name: prod, protocol: postgres, address: 10.0.0.5:5432, labels: {env: prod}}
rules:
  - name: no-destructive-ddl-in-prod
    match: {target: {env: prod}, verb: [DROP, TRUNCATE]}
    unless: {actor: {user: [dba]}}
    action: block
    message: "destructive DDL in prod needs an approval"
  - name: delete-without-where
    match: {verb: [DELETE, UPDATE], without_where: true}
    action: require_approval
""")


def tiny_elf():
    src = r"""
    #include <stddef.h>
    __attribute__((noinline)) int ssl_write_internal(void *s, const void *b, size_t n, size_t *w)
    { *w = n; return s != 0; }
    __attribute__((noinline)) int ssl_read_internal(void *s, void *b, size_t n, size_t *r)
    { *r = n; return s != 0; }
    int SSL_write(void *s, const void *b, int n) { size_t w; return ssl_write_internal(s, b, n, &w) ? (int)w : -1; }
    int SSL_write_ex(void *s, const void *b, size_t n, size_t *w) { return ssl_write_internal(s, b, n, w); }
    int SSL_read(void *s, void *b, int n) { size_t r; return ssl_read_internal(s, b, n, &r) ? (int)r : -1; }
    int SSL_read_ex(void *s, void *b, size_t n, size_t *r) { return ssl_read_internal(s, b, n, r); }
    int SSL_do_handshake(void *s) { return s != 0; }
    """
    with tempfile.TemporaryDirectory() as d:
        c, so = os.path.join(d, "t.c"), os.path.join(d, "libssl.so")
        open(c, "w").write(src)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-s", "-o", so, c], check=True)
        put("fuzz_tls_elf", "tiny_libssl", open(so, "rb").read())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        from_recording(sys.argv[1])
    sql()
    policies()
    tiny_elf()
