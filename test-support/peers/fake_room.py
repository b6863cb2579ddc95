#!/usr/bin/env python3
"""A local stand-in for a webinar room page, for the capture tests.

GET /room is a page with a presenter tile (a <canvas> repainted every animation frame, its
colour changing with the frame number, the number written in a corner) and a chat list
(<ul id="chat">, one <li class="msg" data-id> per message with .author and .text, filled
with textContent: markup in a message stays text). The page polls /poll every 100 ms for
new messages and commands, and reports when it inserted each message (POST /inserted).

Control (POST, JSON): /_control/say {"author","text"} or a list of them; /_control/reload
(the page reloads itself); /_control/move (the presenter tile moves and grows);
GET /_control/state -> {"loads", "inserted": {id: page ms}, "messages"}.

Usage: fake_room.py PORT
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"messages": [], "inserted": {}, "loads": 0, "command": None, "command_seq": 0}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Room</title>
<style>
  html, body { margin: 0; height: 100%; background: #fff; font: 14px sans-serif; overflow: hidden; }
  #stage { position: absolute; left: 40px; top: 40px; }
  body.moved #stage { left: 300px; top: 260px; }
  #chat { position: absolute; right: 0; top: 0; width: 340px; height: 100%; overflow: auto; margin: 0;
          padding: 0; list-style: none; border-left: 1px solid #ccc; }
  #chat li { padding: 4px 8px; border-bottom: 1px solid #eee; overflow-wrap: anywhere; }
  .author { font-weight: bold; margin-right: 6px; }
</style></head>
<body>
<div id="stage"><canvas id="presenter" width="640" height="360"></canvas></div>
<ul id="chat"></ul>
<script>
  const canvas = document.getElementById("presenter"), ctx = canvas.getContext("2d");
  let n = 0;
  function draw() {
    n += 1;
    ctx.fillStyle = "hsl(" + ((n * 37) % 360) + ", 100%, 50%)";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#000"; ctx.font = "40px monospace"; ctx.fillText(String(n), 16, 48);
    requestAnimationFrame(draw);
  }
  requestAnimationFrame(draw);
  const chat = document.getElementById("chat");
  let after = 0, seq = null;
  async function poll() {
    try {
      const r = await (await fetch("/poll?after=" + after)).json();
      const done = [];
      for (const m of r.messages) {
        const li = document.createElement("li");
        li.className = "msg"; li.dataset.id = m.id;
        const a = document.createElement("span"); a.className = "author"; a.textContent = m.author;
        const t = document.createElement("span"); t.className = "text"; t.textContent = m.text;
        li.append(a, t); chat.append(li); chat.scrollTop = chat.scrollHeight;
        done.push({ id: m.id, ts: Date.now() });
        after = Math.max(after, m.id);
      }
      if (done.length) fetch("/inserted", { method: "POST", body: JSON.stringify(done) });
      if (seq === null) seq = r.seq;
      else if (r.seq !== seq) {
        seq = r.seq;
        if (r.command === "reload") { location.reload(); return; }
        if (r.command === "move") { document.body.classList.add("moved"); canvas.width = 800; canvas.height = 450; }
      }
    } catch (e) {}
    setTimeout(poll, 100);
  }
  poll();
</script>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype + "; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null") if n else None

    def do_GET(self):
        path, _, query = self.path.partition("?")
        with LOCK:
            if path == "/room":
                STATE["loads"] += 1
                return self.reply(200, PAGE, "text/html")
            if path == "/poll":
                after = int(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("after", 0))
                msgs = [m for m in STATE["messages"] if m["id"] > after]
                return self.reply(200, {"messages": msgs, "command": STATE["command"], "seq": STATE["command_seq"]})
            if path == "/_control/state":
                return self.reply(200, {"loads": STATE["loads"], "inserted": STATE["inserted"],
                                        "messages": STATE["messages"]})
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        path = self.path.partition("?")[0]
        data = self.body()
        with LOCK:
            if path == "/inserted":
                for d in data or []:
                    # the first insertion counts (a reload shows every message again)
                    STATE["inserted"].setdefault(str(d["id"]), d["ts"])
                return self.reply(204, "")
            if path == "/_control/say":
                items = data if isinstance(data, list) else [data]
                for m in items:
                    STATE["messages"].append({"id": len(STATE["messages"]) + 1, "author": m["author"],
                                              "text": m["text"]})
                return self.reply(200, {"count": len(STATE["messages"])})
            if path in ("/_control/reload", "/_control/move"):
                STATE["command"] = path.rsplit("/", 1)[1]
                STATE["command_seq"] += 1
                return self.reply(200, {})
        self.reply(404, {"error": "not found"})


def main():
    port = int(sys.argv[1])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
