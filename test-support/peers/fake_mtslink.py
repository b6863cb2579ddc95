#!/usr/bin/env python3
"""A local stand-in for webinar.ru / MTS Link UserAPI v3, for tests.

It follows the documented shapes: `x-auth-token` on every request (401 without a valid one),
form-encoded bodies with PHP-style bracket keys, 201 with `{eventId, link}` /
`{eventSessionId, link}` on creation, 204 on start/stop, sessions ACTIVE -> START -> STOP
(403 with the error envelope otherwise), a chat returned as a bare array of the last
`limit` messages. After a webinar: `GET /records` (a bare array of file objects, `from`/`to`
dates, `offset`/`limit`), `POST /records/{id}/conversions` (a JSON body; one conversion at a
time per account: 403 with `fieldErrors.currentConversionID` otherwise), `GET
/records/conversions/{id}` (waiting -> processing -> completed with a `downloadUrl` on a
"CDN" path that refuses requests carrying the API key). Control requests under /_control/.

Usage: fake_mtslink.py PORT --token TOKEN
"""
import argparse
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"events": {}, "sessions": {}, "chat": {}, "next": 1000, "next_msg": 5000,
         "records": [], "files": {}, "conversions": {}, "orders": [], "fail_next_conversion": False}


def msk(t):
    """A time as the API writes it: whole seconds, +03:00."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+03:00", time.gmtime(t + 3 * 3600))
ARGS = None


def error(status, message, fields=None):
    body = {"error": {"code": status, "message": message}}
    if fields:
        body["error"]["fieldErrors"] = fields
    return status, body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        data = b"" if obj is None else json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, method):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        with LOCK:
            if u.path.startswith("/_control/"):
                return self.reply(*self.control(u.path[len("/_control/"):], raw))
            if u.path.startswith("/cdn/"):
                return self.cdn(u.path[len("/cdn/"):])
            if self.headers.get("x-auth-token") != ARGS.token:
                return self.reply(*error(401, "Unauthorized"))
            ctype = self.headers.get("Content-Type", "")
            if u.path.endswith("/conversions") and method == "POST":
                if not ctype.startswith("application/json"):
                    return self.reply(*error(400, "Expected JSON"))
                form = json.loads(raw or b"{}")
            elif raw and not ctype.startswith("application/x-www-form-urlencoded"):
                return self.reply(*error(400, "Expected a form"))
            else:
                form = dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
            self.reply(*self.api(method, u.path, q, form))

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def cdn(self, name):
        # a storage link: public, and never to be sent the API key
        if self.headers.get("x-auth-token"):
            return self.reply(403, {"error": "the API key was sent to the storage host"})
        path = STATE["files"].get(name)
        if path is None:
            return self.reply(404, {"error": "expired"})
        with open(path, "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def conversion_view(self, c):
        body = {"id": c["id"], "state": c["state"], "progress": c["progress"], "recordFile": {"id": c["record"]}}
        if c["state"] == "completed":
            name = "%d-%d.mp4" % (c["id"], int(time.time() * 1000))
            STATE["files"][name] = c["file"]
            body["downloadUrl"] = "http://127.0.0.1:%d/cdn/%s" % (ARGS.port, name)
        return body

    def control(self, what, raw):
        data = json.loads(raw) if raw else {}
        if what == "record":
            # an online recording of a session; `file` is what its conversion will produce
            STATE["next"] += 1
            rid = STATE["next"]
            at = data.get("createAt") or msk(time.time())
            STATE["records"].append({"id": rid, "name": "Record %d" % rid, "createAt": at, "typeFile": "record",
                                     "duration": "PT0H1M0S", "url": "", "downloadUrl": None, "password": None,
                                     "isViewable": True, "cuts": [], "state": "ready", "link": "",
                                     "eventSession": {"id": int(data["session"])}, "_file": data["file"]})
            # a finished conversion of it sits beside it in the listing, as on the platform
            STATE["records"].append({"id": rid + 100000, "name": "Converted %d" % rid, "createAt": at,
                                     "typeFile": "ConvertedRecord", "eventSession": {"id": int(data["session"])}})
            return 200, {"id": rid}
        if what == "busy":
            # another employee's conversion holds the account for `polls` more reads
            STATE["next"] += 1
            cid = STATE["next"]
            STATE["conversions"][cid] = {"id": cid, "record": 1, "state": "processing", "progress": "10%",
                                         "polls": int(data.get("polls", 2)), "file": "/dev/null", "view": "none"}
            return 200, {"id": cid}
        if what == "fail_next_conversion":
            STATE["fail_next_conversion"] = True
            return 200, {}
        if what == "orders":
            return 200, STATE["orders"]
        if what == "chat":
            STATE["next_msg"] += 1
            msg = {"id": STATE["next_msg"], "authorId": 55, "authorName": data["author"], "text": data["text"],
                   "isModerated": True, "sentByAdmin": False, "avatarUrl": "", "thumbnails": [],
                   "createAt": data.get("createAt") or msk(time.time()),
                   "updateAt": None, "updateUserId": None, "additionalData": None, "attachments": []}
            STATE["chat"].setdefault(int(data["session"]), []).append(msg)
            return 200, msg
        if what == "events":
            return 200, STATE["events"]
        return 404, None

    def api(self, method, path, q, form):
        parts = path.strip("/").split("/")
        if parts[:1] != ["v3"]:
            return error(404, "Not found")
        parts = parts[1:]
        if method == "GET" and parts == ["organization", "members"]:
            return 200, [{"id": 1, "name": "Owner", "email": "owner@example.org", "role": "admin"}]
        if method == "POST" and parts == ["events"]:
            if not form.get("name"):
                return error(400, "Validation failed", {"name": "This value should not be blank."})
            for k in ("startsAt[date][year]", "startsAt[date][month]", "startsAt[date][day]",
                      "startsAt[time][hour]", "startsAt[time][minute]"):
                if k in form and not form[k].isdigit():
                    return error(400, "Validation failed", {"startsAt": "invalid " + k})
            STATE["next"] += 1
            eid = STATE["next"]
            STATE["events"][str(eid)] = form
            return 201, {"eventId": eid, "link": "https://events.webinar.ru/org/%d" % eid}
        if method == "POST" and len(parts) == 3 and parts[0] == "events" and parts[2] == "sessions":
            if parts[1] not in STATE["events"]:
                return error(404, "Event not found")
            STATE["next"] += 1
            sid = STATE["next"]
            STATE["sessions"][sid] = {"id": sid, "name": form.get("name") or STATE["events"][parts[1]]["name"],
                                      "status": "ACTIVE", "startType": form.get("startType", "manual")}
            return 201, {"eventSessionId": sid, "link": "https://events.webinar.ru/org/%s/%d" % (parts[1], sid)}
        if len(parts) >= 2 and parts[0] == "eventsessions" and parts[1].isdigit():
            s = STATE["sessions"].get(int(parts[1]))
            if s is None:
                return error(404, "Event session not found")
            if method == "GET" and len(parts) == 2:
                return 200, s
            if method == "DELETE" and len(parts) == 2:
                del STATE["sessions"][s["id"]]
                return 204, None
            if method == "PUT" and parts[2:] == ["start"]:
                if s["status"] != "ACTIVE":
                    return error(403, "The webinar cannot be started in status %s" % s["status"])
                s["status"] = "START"
                return 204, None
            if method == "PUT" and parts[2:] == ["stop"]:
                if s["status"] != "START":
                    return error(403, "The webinar is not running")
                s["status"] = "STOP"
                return 204, None
            if method == "GET" and parts[2:] == ["chat"]:
                limit = int(q.get("limit") or 100)
                return 200, STATE["chat"].get(s["id"], [])[-limit:]
        if method == "GET" and parts == ["records"]:
            lo, hi = q.get("from", "0000-00-00"), q.get("to", "9999-99-99")
            offset, limit = int(q.get("offset") or 0), int(q.get("limit") or 10)
            # the dates of createAt are local (+03:00) dates
            listed = [{k: v for k, v in r.items() if not k.startswith("_")} for r in STATE["records"]
                      if lo <= r["createAt"][:10] <= hi]
            return 200, listed[offset:offset + limit]
        if method == "POST" and len(parts) == 3 and parts[0] == "records" and parts[2] == "conversions":
            rec = next((r for r in STATE["records"] if str(r["id"]) == parts[1] and r["typeFile"] == "record"), None)
            if rec is None:
                return error(404, "Record not found")
            STATE["orders"].append({"record": rec["id"], "body": form})
            if form.get("view") is None or form.get("quality") is None:
                return error(400, "Validation failed", {"view": "This value should not be blank."})
            running = [c for c in STATE["conversions"].values() if c["state"] in ("waiting", "processing")]
            if running:
                return 403, {"error": {"code": 403, "message": "Only one simultaneous conversion is allowed",
                                       "fieldErrors": {"currentConversionID": running[0]["id"],
                                                       "recordFileId": running[0]["record"]}}}
            STATE["next"] += 1
            cid = STATE["next"]
            c = {"id": cid, "record": rec["id"], "state": "waiting", "progress": 0, "polls": 2,
                 "file": rec["_file"], "view": form["view"], "fail": STATE["fail_next_conversion"]}
            STATE["fail_next_conversion"] = False
            STATE["conversions"][cid] = c
            return 201, {"data": self.conversion_view(c)}
        if method == "GET" and len(parts) == 3 and parts[:2] == ["records", "conversions"] and parts[2].isdigit():
            c = STATE["conversions"].get(int(parts[2]))
            if c is None:
                return error(404, "Conversion not found")
            if c["state"] in ("waiting", "processing"):
                c["polls"] -= 1
                if c["polls"] > 0:
                    c["state"], c["progress"] = "processing", "%d%%" % (100 // (c["polls"] + 1))
                elif c.get("fail"):
                    c["state"] = "failed"
                else:
                    c["state"], c["progress"] = "completed", 100
            return 200, self.conversion_view(c)
        return error(404, "Not found")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--token", required=True)
    ARGS = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
