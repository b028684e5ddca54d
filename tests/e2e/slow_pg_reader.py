# SPDX-License-Identifier: GPL-2.0-only
"""
A PostgreSQL client that reads its result slowly, in small pieces, from a
small receive buffer: the server's sends then fill its socket buffer and
end short, which is when the kernel hands a server-side program a send
again, or not at all. Prints the DataRows of one simple query as psql -At
would (fields joined by '|', NULL as empty), its ErrorResponse on stderr.

usage: slow_pg_reader.py PORT USER SQL
"""
import socket
import struct
import sys
import time


def main():
    port, user, sql = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0postgres\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf, queried, rows, err = b"", False, [], None
    reads = 0
    while True:
        chunk = s.recv(1500)
        if not chunk:
            raise SystemExit("server closed the connection")
        buf += chunk
        reads += 1
        if queried and reads % 4 == 0:
            # now and then a pause long enough for the server to fill its socket buffer
            time.sleep(0.05 if reads % 2000 == 0 else 0.0005)
        while len(buf) >= 5:
            typ, n = buf[0:1], struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            m, buf = buf[5:1 + n], buf[1 + n:]
            if typ == b"D":
                nf, at, fields = struct.unpack("!H", m[:2])[0], 2, []
                for _ in range(nf):
                    fl = struct.unpack("!i", m[at:at + 4])[0]
                    at += 4
                    fields.append("" if fl < 0 else m[at:at + fl].decode())
                    at += max(fl, 0)
                rows.append("|".join(fields))
            elif typ == b"E":
                err = m
            elif typ == b"Z":
                if queried:
                    sys.stdout.write("".join(r + "\n" for r in rows))
                    if err:
                        sys.stderr.write(err.decode(errors="replace"))
                        sys.exit(1)
                    return
                if err:
                    sys.stderr.write(err.decode(errors="replace"))
                    sys.exit(1)
                q = sql.encode() + b"\0"
                s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
                queried = True


if __name__ == "__main__":
    main()
