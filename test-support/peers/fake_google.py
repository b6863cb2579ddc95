#!/usr/bin/env python3
"""A local stand-in for Google OAuth 2.0 and YouTube's Live Streaming API, for tests.

It follows the request and answer shapes of the platform (device flow, authorization code
with PKCE, refresh, revoke; liveBroadcasts, liveStreams, liveChat/messages; Google's error
envelope), models state (the broadcast life cycle with its transition table, a stream that is
`active` only while RTMP data really reaches the ingest the fake handed out: a recording in
nginx-rtmp's record directory that grows), and takes control requests under /_control/.

Usage: fake_google.py PORT --client-id ID --client-secret S --ingest rtmp://HOST:PORT/APP
       --record-dir DIR
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {
    "devices": {},      # device_code -> {user_code, state, issued, last_poll, interval}
    "codes": {},        # auth code -> {challenge, redirect_uri}
    "refresh": {},      # refresh token -> {"revoked": bool}
    "access": {},       # access token -> {"refresh": rt, "valid": bool}
    "broadcasts": {},   # id -> resource
    "streams": {},      # id -> resource (+ private "_seen": (size, time))
    "chat": {},         # liveChatId -> [messages]
    "fail": [],         # injected failures
    "log": [],          # requests seen
}
ARGS = None
YT_SCOPES = {"https://www.googleapis.com/auth/youtube", "https://www.googleapis.com/auth/youtube.readonly"}
TRANSITIONS = {("ready", "testing"), ("ready", "live"), ("testing", "live"), ("live", "complete"),
               ("testing", "complete")}


def note(secret):
    """Notes an issued secret for the test suite's secrets scan; returns it."""
    if ARGS is not None and ARGS.secrets_file:
        with open(ARGS.secrets_file, "a") as f:
            f.write("credential\t%s\n" % secret)
    return secret


def google_error(status, reason, message, domain="youtube.liveBroadcast"):
    return status, {"error": {"code": status, "message": message,
                              "errors": [{"domain": domain, "reason": reason, "message": message}]}}


def lifecycle(b):
    """*Starting states settle one second after the transition."""
    st = b["status"]
    pending = b.get("_settles")
    if pending and time.time() >= pending[0]:
        st["lifeCycleStatus"] = pending[1]
        b.pop("_settles")
    return st["lifeCycleStatus"]


def stream_status(s):
    name = s["cdn"]["ingestionInfo"]["streamName"]
    size = 0
    try:
        for f in os.listdir(ARGS.record_dir):
            if f.startswith(name):
                size += os.path.getsize(os.path.join(ARGS.record_dir, f))
    except OSError:
        pass
    last_size, last_grew = s.get("_seen", (0, 0.0))
    now = time.time()
    if size > last_size:
        s["_seen"] = (size, now)
        last_grew = now
    active = size > 0 and now - last_grew < 3.0
    if active:
        s["status"]["streamStatus"] = "active"
        s["status"]["healthStatus"] = {"status": "good", "lastUpdateTimeSeconds": str(int(now)),
                                       "configurationIssues": [
                                           {"type": "gopSizeLong", "severity": "info", "reason": "gopSizeLong",
                                            "description": "Your keyframe frequency is fine."}]}
    elif size > 0:
        s["status"]["streamStatus"] = "inactive"
        s["status"]["healthStatus"] = {"status": "noData", "lastUpdateTimeSeconds": str(int(now)),
                                       "configurationIssues": []}
    return s["status"]["streamStatus"]


def only_parts(resource, parts):
    out = {k: v for k, v in resource.items() if k in ("kind", "etag", "id") or k in parts}
    return {k: v for k, v in out.items() if not k.startswith("_")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    # ---------- plumbing ----------
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, obj=None, headers=None):
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        raw = self.body()
        with LOCK:
            STATE["log"].append({"method": method, "path": u.path, "query": q})
            for f in STATE["fail"]:
                if f["times"] > 0 and f["method"] == method and f["path"] == u.path:
                    f["times"] -= 1
                    st, obj = google_error(f["status"], f["reason"], f.get("message", f["reason"]),
                                           f.get("domain", "youtube.liveBroadcast"))
                    return self.send(st, obj)
            try:
                st, obj, hdr = self.dispatch(method, u.path, q, raw)
            except Exception as e:  # a bug in the fake: make it visible
                st, obj, hdr = 500, {"error": {"code": 500, "message": "fake: %r" % e, "errors": []}}, None
        self.send(st, obj, hdr)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    # ---------- routing ----------
    def dispatch(self, method, path, q, raw):
        if path.startswith("/_control/"):
            return self.control(path[len("/_control/"):], q, raw)
        if path == "/device/code" and method == "POST":
            return self.device_code(dict(urllib.parse.parse_qsl(raw.decode())))
        if path == "/token" and method == "POST":
            return self.token(dict(urllib.parse.parse_qsl(raw.decode())))
        if path == "/revoke" and method == "POST":
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            tok = form.get("token") or q.get("token")
            if tok in STATE["refresh"]:
                STATE["refresh"][tok]["revoked"] = True
                for a in STATE["access"].values():
                    if a["refresh"] == tok:
                        a["valid"] = False
                return 200, {}, None
            if tok in STATE["access"]:
                STATE["access"][tok]["valid"] = False
                return 200, {}, None
            return 400, {"error": "invalid_token", "error_description": "Token expired or revoked"}, None
        if path == "/o/oauth2/v2/auth" and method == "GET":
            return self.consent(q)
        if path.startswith("/youtube/v3/"):
            return self.youtube(method, path[len("/youtube/v3"):], q, raw)
        return 404, {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}}, None

    def control(self, what, q, raw):
        data = json.loads(raw) if raw else {}
        if what == "approve":
            for d in STATE["devices"].values():
                if d["user_code"] == (data.get("user_code") or q.get("user_code")):
                    d["state"] = "approved"
                    return 200, {}, None
            return 404, {}, None
        if what == "deny":
            for d in STATE["devices"].values():
                d["state"] = "denied"
            return 200, {}, None
        if what == "expire_access":
            for a in STATE["access"].values():
                a["valid"] = False
            return 200, {}, None
        if what == "revoke_all":
            for r in STATE["refresh"].values():
                r["revoked"] = True
            for a in STATE["access"].values():
                a["valid"] = False
            return 200, {}, None
        if what == "fail":
            data.setdefault("times", 1)
            STATE["fail"].append(data)
            return 200, {}, None
        if what == "chat":
            msg = {"kind": "youtube#liveChatMessage", "etag": "m", "id": "LCC.%s" % secrets.token_hex(4),
                   "snippet": {"type": data.get("type", "textMessageEvent"), "liveChatId": data["liveChatId"],
                               "authorChannelId": "UC" + data["author"], "hasDisplayContent": True,
                               "publishedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                               "displayMessage": data["text"],
                               "textMessageDetails": {"messageText": data["text"]}},
                   "authorDetails": {"channelId": "UC" + data["author"], "displayName": data["author"],
                                     "isChatOwner": False, "isChatSponsor": False, "isChatModerator": False}}
            STATE["chat"].setdefault(data["liveChatId"], []).append(msg)
            return 200, msg, None
        if what == "state":
            return 200, {"broadcasts": list(STATE["broadcasts"].keys()), "streams": list(STATE["streams"].keys()),
                         "devices": [d["user_code"] for d in STATE["devices"].values()]}, None
        if what == "log":
            return 200, STATE["log"], None
        return 404, {}, None

    # ---------- OAuth ----------
    def client_ok(self, form, need_secret=True):
        if form.get("client_id") != ARGS.client_id:
            return False
        return not need_secret or form.get("client_secret") == ARGS.client_secret

    def grant(self, refresh=None):
        access = note("ya29.%s" % secrets.token_urlsafe(24))
        body = {"access_token": access, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/youtube",
                "token_type": "Bearer"}
        if refresh is None:
            refresh = note("1//%s" % secrets.token_urlsafe(24))
            STATE["refresh"][refresh] = {"revoked": False}
            body["refresh_token"] = refresh
        STATE["access"][access] = {"refresh": refresh, "valid": True}
        return 200, body, None

    def device_code(self, form):
        if form.get("client_id") != ARGS.client_id:
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}, None
        for s in form.get("scope", "").split():
            if s not in YT_SCOPES:
                return 400, {"error": "invalid_scope", "error_description": "Invalid device flow scope: " + s}, None
        code = note(secrets.token_urlsafe(24))
        user = "%s-%s" % (secrets.token_hex(2).upper(), secrets.token_hex(2).upper())
        STATE["devices"][code] = {"user_code": user, "state": "pending", "issued": time.time(), "last_poll": 0.0,
                                  "interval": 1}
        return 200, {"device_code": code, "user_code": user, "verification_url": "https://www.google.com/device",
                     "expires_in": 1800, "interval": 1}, None

    def token(self, form):
        if not self.client_ok(form):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}, None
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            d = STATE["devices"].get(form.get("device_code"))
            if d is None:
                return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}, None
            now = time.time()
            too_fast = now - d["last_poll"] < d["interval"] * 0.8
            d["last_poll"] = now
            if d["state"] == "denied":
                return 403, {"error": "access_denied", "error_description": "Forbidden"}, None
            if now - d["issued"] > 1800:
                return 400, {"error": "expired_token", "error_description": "Expired"}, None
            if too_fast:
                return 403, {"error": "slow_down", "error_description": "Forbidden"}, None
            if d["state"] == "pending":
                return 428, {"error": "authorization_pending", "error_description": "Precondition Required"}, None
            if d["state"] == "used":
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}, None
            d["state"] = "used"
            return self.grant()
        if grant == "refresh_token":
            r = STATE["refresh"].get(form.get("refresh_token"))
            if r is None or r["revoked"]:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, None
            return self.grant(form["refresh_token"])
        if grant == "authorization_code":
            c = STATE["codes"].pop(form.get("code"), None)
            if c is None or c["redirect_uri"] != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}, None
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != c["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}, None
            return self.grant()
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: %s" % grant}, None

    def consent(self, q):
        """The consent page, approved at once: redirects with a code."""
        if q.get("client_id") != ARGS.client_id or q.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request"}, None
        code = note("4/%s" % secrets.token_urlsafe(16))
        STATE["codes"][code] = {"challenge": q.get("code_challenge"), "redirect_uri": q.get("redirect_uri")}
        target = "%s?%s" % (q["redirect_uri"], urllib.parse.urlencode({"code": code, "state": q.get("state", ""),
                                                                        "scope": q.get("scope", "")}))
        return 302, None, {"Location": target}

    # ---------- YouTube ----------
    def youtube(self, method, path, q, raw):
        auth = self.headers.get("Authorization", "")
        tok = STATE["access"].get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if tok is None or not tok["valid"]:
            st, obj = google_error(401, "authError", "Invalid Credentials", "global")
            obj["error"]["errors"][0].update({"location": "Authorization", "locationType": "header"})
            return st, obj, None
        if method != "DELETE" and not q.get("part"):
            st, obj = google_error(400, "required", "Required parameter: part", "global")
            return st, obj, None
        parts = set(q.get("part", "").split(","))
        body = json.loads(raw) if raw else {}
        if path == "/liveBroadcasts" and method == "POST":
            sn, stt = body.get("snippet", {}), body.get("status", {})
            if not sn.get("title"):
                return google_error(400, "titleRequired", "Title is required") + (None,)
            if not sn.get("scheduledStartTime"):
                return google_error(400, "scheduledStartTimeRequired", "Scheduled start time is required") + (None,)
            if stt.get("privacyStatus") not in ("public", "unlisted", "private"):
                return google_error(400, "privacyStatusRequired", "Privacy status is required") + (None,)
            bid = secrets.token_urlsafe(8)
            cd = body.get("contentDetails", {})
            b = {"kind": "youtube#liveBroadcast", "etag": "e", "id": bid,
                 "snippet": {"channelId": "UCfake", "title": sn["title"], "description": sn.get("description", ""),
                             "publishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "scheduledStartTime": sn["scheduledStartTime"], "liveChatId": "Cg0" + bid},
                 "status": {"lifeCycleStatus": "created", "privacyStatus": stt["privacyStatus"],
                            "recordingStatus": "notRecording", "madeForKids": False,
                            "selfDeclaredMadeForKids": stt.get("selfDeclaredMadeForKids", False)},
                 "contentDetails": {"enableAutoStart": cd.get("enableAutoStart", False),
                                    "enableAutoStop": cd.get("enableAutoStop", False),
                                    "enableDvr": cd.get("enableDvr", True), "recordFromStart": True,
                                    "latencyPreference": cd.get("latencyPreference", "normal"),
                                    "monitorStream": {"enableMonitorStream": cd.get("monitorStream", {}).get(
                                        "enableMonitorStream", False)}}}
            STATE["broadcasts"][bid] = b
            return 200, only_parts(b, parts), None
        if path == "/liveStreams" and method == "POST":
            sn, cdn = body.get("snippet", {}), body.get("cdn", {})
            if not sn.get("title"):
                return google_error(400, "titleRequired", "Title is required", "youtube.liveStream") + (None,)
            for field in ("ingestionType", "resolution", "frameRate"):
                if not cdn.get(field):
                    return google_error(400, "cdnRequired", "cdn.%s is required" % field,
                                        "youtube.liveStream") + (None,)
            sid = secrets.token_urlsafe(8)
            key = note("-".join(secrets.token_hex(2) for _ in range(5)))
            s = {"kind": "youtube#liveStream", "etag": "e", "id": sid,
                 "snippet": {"title": sn["title"], "channelId": "UCfake",
                             "publishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                 "cdn": {"ingestionType": cdn["ingestionType"], "resolution": cdn["resolution"],
                         "frameRate": cdn["frameRate"],
                         "ingestionInfo": {"streamName": key, "ingestionAddress": ARGS.ingest,
                                           "backupIngestionAddress": ARGS.ingest + "?backup=1",
                                           "rtmpsIngestionAddress": ARGS.rtmps_ingest,
                                           "rtmpsBackupIngestionAddress": (ARGS.rtmps_ingest + "?backup=1")
                                           if ARGS.rtmps_ingest else ""}},
                 "status": {"streamStatus": "ready",
                            "healthStatus": {"status": "noData", "configurationIssues": []}},
                 "contentDetails": {"isReusable": body.get("contentDetails", {}).get("isReusable", True)}}
            STATE["streams"][sid] = s
            return 200, only_parts(s, parts), None
        if path == "/liveBroadcasts/bind" and method == "POST":
            b = STATE["broadcasts"].get(q.get("id"))
            if b is None:
                return google_error(404, "liveBroadcastNotFound", "Broadcast not found") + (None,)
            if q.get("streamId") and q["streamId"] not in STATE["streams"]:
                return google_error(404, "liveStreamNotFound", "Stream not found") + (None,)
            if lifecycle(b) not in ("created", "ready"):
                return google_error(403, "liveBroadcastBindingNotAllowed", "Binding not allowed") + (None,)
            b["contentDetails"]["boundStreamId"] = q.get("streamId")
            b["status"]["lifeCycleStatus"] = "ready" if q.get("streamId") else "created"
            return 200, only_parts(b, parts), None
        if path == "/liveBroadcasts/transition" and method == "POST":
            b = STATE["broadcasts"].get(q.get("id"))
            if b is None:
                return google_error(404, "liveBroadcastNotFound", "Broadcast not found") + (None,)
            to, cur = q.get("broadcastStatus"), lifecycle(b)
            if cur == to or cur == to + "Starting":
                return google_error(403, "redundantTransition", "Redundant transition") + (None,)
            if (cur, to) not in TRANSITIONS or (to == "testing" and not
                                               b["contentDetails"]["monitorStream"]["enableMonitorStream"]):
                return google_error(403, "invalidTransition", "Invalid transition") + (None,)
            if to in ("testing", "live"):
                s = STATE["streams"].get(b["contentDetails"].get("boundStreamId"))
                if s is None or stream_status(s) != "active":
                    return google_error(403, "errorStreamInactive", "Stream is inactive") + (None,)
            if to == "complete":
                b["status"]["lifeCycleStatus"] = "complete"
                b["snippet"]["actualEndTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            else:
                b["status"]["lifeCycleStatus"] = to + "Starting"
                b["_settles"] = (time.time() + 1.0, to)
            return 200, only_parts(b, parts), None
        if path == "/liveBroadcasts" and method == "GET":
            if "id" in q:
                items = [STATE["broadcasts"][i] for i in q["id"].split(",") if i in STATE["broadcasts"]]
            elif q.get("broadcastStatus") == "upcoming":
                items = [b for b in STATE["broadcasts"].values() if lifecycle(b) in ("created", "ready")]
            else:
                items = list(STATE["broadcasts"].values())
            for b in items:
                lifecycle(b)
            return 200, {"kind": "youtube#liveBroadcastListResponse", "etag": "l",
                         "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
                         "items": [only_parts(b, parts) for b in items]}, None
        if path == "/channels" and method == "GET":
            if q.get("mine") != "true":
                return google_error(400, "missingRequiredParameter", "No filter selected.", "youtube.parameter") \
                    + (None,)
            ch = {"kind": "youtube#channel", "etag": "c", "id": "UCfake",
                  "snippet": {"title": ARGS.channel_title, "description": "", "customUrl": "@fake"}}
            return 200, {"kind": "youtube#channelListResponse", "etag": "l",
                         "pageInfo": {"totalResults": 1, "resultsPerPage": 5}, "items": [only_parts(ch, parts)]}, None
        if path == "/liveStreams" and method == "GET":
            items = [STATE["streams"][i] for i in q.get("id", "").split(",") if i in STATE["streams"]]
            for s in items:
                stream_status(s)
            return 200, {"kind": "youtube#liveStreamListResponse", "etag": "l",
                         "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
                         "items": [only_parts(s, parts) for s in items]}, None
        if path in ("/liveBroadcasts", "/liveStreams") and method == "DELETE":
            table = STATE["broadcasts"] if path == "/liveBroadcasts" else STATE["streams"]
            if table.pop(q.get("id"), None) is None:
                return google_error(404, "notFound", "Not found") + (None,)
            return 204, None, None
        if path == "/liveChat/messages" and method == "GET":
            chat = q.get("liveChatId")
            owner = next((b for b in STATE["broadcasts"].values() if b["snippet"]["liveChatId"] == chat), None)
            if owner is None:
                return google_error(404, "liveChatNotFound", "Live chat not found", "youtube.liveChat") + (None,)
            msgs = STATE["chat"].get(chat, [])
            start = int(q.get("pageToken") or 0)
            out = {"kind": "youtube#liveChatMessageListResponse", "etag": "c",
                   "nextPageToken": str(len(msgs)), "pollingIntervalMillis": 1000,
                   "pageInfo": {"totalResults": len(msgs) - start, "resultsPerPage": len(msgs) - start},
                   "items": msgs[start:]}
            if lifecycle(owner) == "complete":
                out["offlineAt"] = owner["snippet"].get("actualEndTime", "")
            return 200, out, None
        return google_error(404, "notFound", "Not Found", "global") + (None,)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--ingest", required=True)
    p.add_argument("--rtmps-ingest", default="")
    p.add_argument("--record-dir", required=True)
    p.add_argument("--secrets-file", default="",
                   help="append each token, code and stream key issued (credential<TAB>value) for the secrets scan")
    p.add_argument("--channel-title", default="Fake Channel")
    ARGS = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
