#!/usr/bin/python3
"""A plain HTTP server for the HLS tests: serves files from ROOT on 127.0.0.1:PORT, with
`Range: bytes=A-B` answered 206 (except under /norange/, which answers the whole file as
servers without range support do), plus misbehaving routes for the bad-input tests:
  /redirect-loop/…  answers 302 to itself forever;
  /huge/index.m3u8  streams an endless playlist (chunked, never ends)."""
import os
import re
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/redirect-loop/"):
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/huge/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.apple.mpegurl")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + b"#EXTINF:2.0,\nsegment.ts\n" * 4000
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            except (BrokenPipeError, ConnectionResetError):
                return
        ranged = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if ranged and "/norange/" not in self.path and os.path.isfile(path):
            start, end = int(ranged.group(1)), int(ranged.group(2))
            with open(path, "rb") as f:
                f.seek(start)
                body = f.read(end - start + 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{os.path.getsize(path)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), partial(Handler, directory=sys.argv[2]))
print("ready", flush=True)
server.serve_forever()
