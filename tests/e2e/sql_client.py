# SPDX-License-Identifier: GPL-2.0-only
"""
A psycopg2 client driven line by line on stdin (JSON requests, JSON
answers), so that a test can move it into a cgroup before it connects and
keep one connection open across requests:
  {"connect": DSN}   {"sql": TEXT}   (stdin closed: disconnect and exit)
"""
import json
import sys

import psycopg2

conn = None
for line in sys.stdin:
    req = json.loads(line)
    try:
        if "connect" in req:
            conn = psycopg2.connect(req["connect"])
            conn.autocommit = True
            out = {"ok": True}
        else:
            cur = conn.cursor()
            cur.execute(req["sql"])
            out = {"ok": True, "rows": cur.fetchall() if cur.description else None}
    except psycopg2.Error as e:
        out = {"ok": False, "pgcode": e.pgcode, "error": str(e).strip()}
    print(json.dumps(out, default=str), flush=True)
if conn is not None:
    conn.close()
