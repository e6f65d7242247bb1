#!/usr/bin/env python3
"""webhook_receiver.py - a tiny HTTP endpoint for certfleet's webhook tests.

    python3 tests/lib/webhook_receiver.py --out FILE --port-file PF [--status 200]

Listens on 127.0.0.1 (port --port, default 0 = any free one, written to
--port-file once listening), and for every POST appends the request body
as one line to FILE (certfleet sends compact one-line JSON) and
"METHOD PATH CONTENT-TYPE STATUS" to FILE.requests.  Answers every request
with --status (e.g. 500 to check that a failing webhook does not change
certfleet's exit code).  If FILE.status exists, its content (a number)
overrides --status for the next requests.  Runs until killed.
"""
import argparse
import http.server
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--status", type=int, default=200)
    args = ap.parse_args()

    def status_now():
        try:
            with open(args.out + ".status") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return args.status

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n > 0 else b""
            code = status_now()
            with open(args.out, "ab") as f:
                f.write(body.replace(b"\n", b" ") + b"\n")
            with open(args.out + ".requests", "a") as f:
                f.write("%s %s %s %d\n" % (self.command, self.path,
                        self.headers.get("Content-Type"), code))
            reply = b'{"ok": %s}\n' % (b"true" if code < 300 else b"false")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, fmt, *a):
            sys.stderr.write("webhook_receiver: " + (fmt % a) + "\n")

    srv = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
