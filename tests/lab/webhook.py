#!/usr/bin/env python3
"""Alertmanager webhook sink: appends every notification (one JSON object per line) to a file.

usage: webhook.py 127.0.0.1:PORT OUTFILE
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self.send_response(400)
            self.end_headers()
            return
        body = self.rfile.read(length)
        try:
            doc = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps(doc) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    OUT = sys.argv[2]
    ThreadingHTTPServer((host, int(port)), Sink).serve_forever()
