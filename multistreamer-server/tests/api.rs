//! The server against a real SQLite file, real HTTP, ffmpeg publishers and nginx-rtmp.
#![allow(clippy::unwrap_used, clippy::print_stderr, dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multistreamer_test_support::secrets::{self, Secret};
use multistreamer_test_support::*;
use serde_json::{Value, json};

mod faults;
mod openapi_check;
mod scale_out;

/// Whether the suite runs on PostgreSQL (`MULTISTREAMER_TEST_DATABASE=postgres`).
fn on_postgres() -> bool {
    std::env::var("MULTISTREAMER_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// The PostgreSQL database of the server in `dir`: one per directory, so that a server
/// restarted there finds its state.
fn postgres_url_of(dir: &Path) -> String {
    static URLS: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut urls = URLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, url)) = urls.iter().find(|(d, _)| d == dir) {
        return url.clone();
    }
    let url = Postgres::shared().create_database();
    urls.push((dir.to_path_buf(), url.clone()));
    url
}

/// Everything the server in `dir` stored: its SQLite file, or a dump of its PostgreSQL
/// database.
fn stored_bytes(dir: &Path) -> Vec<u8> {
    if on_postgres() {
        let url = postgres_url_of(dir);
        Postgres::shared().dump(url.rsplit('/').next().unwrap()).into_bytes()
    } else {
        std::fs::read(dir.join("data/multistreamer.db")).unwrap()
    }
}

static NEXT_SERVER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Server {
    rtsp: u16,
    srt: u16,
    child: Child,
    http: u16,
    rtmp: u16,
    out: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts the server on ports it picks itself (`:0`) and reads them back from the
    /// addresses it prints, so no other process can take them in between.
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts the server with more flags.
    fn start_with(dir: &Path, extra: &[String]) -> Server {
        Server::start_in(dir, extra, Command::new(env!("CARGO_BIN_EXE_multistreamer-server")))
    }

    /// Starts the server through `command` (the binary itself, or a wrapper that ends by
    /// running it with the arguments it is given).
    fn start_in(dir: &Path, extra: &[String], mut command: Command) -> Server {
        let nonce = NEXT_SERVER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = dir.join(format!("server-{nonce}.out"));
        let log = dir.join(format!("server-{nonce}.log"));
        // MULTISTREAMER_TEST_DATABASE=postgres: the suite against PostgreSQL (a database of
        // its own for each server, in this binary's throwaway cluster)
        if on_postgres() && !extra.iter().any(|a| a == "--database-url") {
            command.arg("--database-url").arg(postgres_url_of(dir));
        }
        let mut child = command
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--rtsp", "127.0.0.1:0", "--srt", "127.0.0.1:0"])
            .args(["--whip-udp", "127.0.0.1:0"])
            .args(extra)
            .env("MULTISTREAMER_ADMIN_PASSWORD", "first-password-1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // "  Web UI and API: http://127.0.0.1:PORT/", "  RTMP ingest:    rtmp://127.0.0.1:PORT/…"
        let port_after = |text: &str, scheme: &str| -> Option<u16> {
            let at = text.find(&format!("{scheme}://127.0.0.1:"))? + scheme.len() + "://127.0.0.1:".len();
            text[at..].split(['/', '?']).next()?.parse().ok()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let (http, rtmp, rtsp, srt) = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.contains("  Data:") {
                let ports = (
                    port_after(&text, "http"),
                    port_after(&text, "rtmp"),
                    port_after(&text, "rtsp"),
                    port_after(&text, "srt"),
                );
                if let (Some(h), Some(r), Some(t), Some(u)) = ports {
                    break (h, r, t, u);
                }
                panic!("the server printed no addresses: {text}");
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the server exited: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(wait_for_port(http, Duration::from_secs(30)), "server did not start");
        Server { child, http, rtmp, rtsp, srt, out, log }
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let st = wait_child(&mut self.child, Duration::from_secs(20));
        assert!(st.is_some_and(|s| s.success()), "clean exit on SIGTERM");
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Notes the credentials a request hands the server for the suite's secrets scan:
/// passwords, client secrets, API tokens, and destination keys (an RTMP URL's last path
/// segment, a query's values).
fn note_request_secrets(body: &str) {
    fn walk(v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("password" | "current" | "new" | "client_secret" | "token", Some(s)) => {
                            secrets::note_secret(Secret::Credential, s)
                        }
                        ("url", Some(s)) if s.starts_with("rtmp") => {
                            let (path, query) = s.split_once('?').unwrap_or((s, ""));
                            secrets::note_secret(Secret::Credential, path.rsplit('/').next().unwrap_or(""));
                            for pair in query.split('&') {
                                secrets::note_secret(Secret::Credential, pair.split_once('=').map_or("", |p| p.1));
                            }
                        }
                        _ => walk(v),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        walk(&v);
    }
}

/// A minimal HTTP/1.1 client (one request per connection).
#[derive(Default, Clone)]
struct Client {
    port: u16,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Client {
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        self.request_text(method, path, &body.map(|b| b.to_string()).unwrap_or_default())
    }

    /// A request with a body as written (JSON or not).
    fn request_text(&self, method: &str, path: &str, body: &str) -> Resp {
        note_request_secrets(body);
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if let Some(t) = &self.csrf {
            req.push_str(&format!("X-CSRF-Token: {t}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        assert_documented(method, path, status, head, body.as_bytes());
        secrets::keep_response(method, path, &body);
        if let Ok(v) = serde_json::from_str::<Value>(&body) {
            // a stream as its owner sees it: its ingest key
            if let (Some(key), true) = (v["key"].as_str(), v.get("rtmp_url").is_some()) {
                secrets::note_secret(Secret::StreamKey, key);
            }
        }
        Resp { status, headers: head.to_string(), body }
    }

    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    /// A binary GET, optionally with a `Range` header: (status, head, body bytes).
    fn download(&self, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if let Some(r) = range {
            req.push_str(&format!("Range: {r}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = raw.get(split + 4..).unwrap_or_default().to_vec();
        assert_documented("GET", path, status, &head, &body);
        (status, head, body)
    }

    fn post(&self, path: &str, body: Value) -> Resp {
        self.request("POST", path, Some(&body))
    }

    fn login(port: u16, password: &str) -> Client {
        let c = Client { port, ..Default::default() };
        let r = c.post("/api/login", json!({"username": "admin", "password": password}));
        assert_eq!(r.status, 200, "{}", r.body);
        let cookie = r
            .headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .expect("session cookie")
            .to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        let value = cookie.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_string();
        secrets::note_secret(Secret::Credential, value.split_once('=').map_or("", |v| v.1));
        Client { port, cookie: Some(value), csrf: r.json()["csrf_token"].as_str().map(String::from) }
    }
}

/// Every answer the tests see must be what openapi.json documents (JSON bodies are checked
/// against their schema).
fn assert_documented(method: &str, path: &str, status: u16, head: &str, body: &[u8]) {
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map_or("", |(_, v)| v.trim());
    let text = if content_type.starts_with("application/json") { String::from_utf8_lossy(body) } else { "".into() };
    let problems = openapi_check::check(method, path, status, content_type, &text);
    assert!(problems.is_empty(), "the response differs from openapi.json:\n{}\n{text}", problems.join("\n"));
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn api_requires_a_session_and_csrf_validates_masks_keys_and_persists() {
    let tmp = TempDir::new("server-api");
    let server = Server::start(tmp.path());
    assert!(server.stdout().contains("First login:    user admin"), "{}", server.stdout());
    let anon = Client { port: server.http, ..Default::default() };
    assert_eq!(anon.get("/healthz").status, 200);
    assert_eq!(anon.get("/api/streams").status, 401);
    assert_eq!(anon.get("/api/system").status, 401);
    assert_eq!(anon.post("/api/login", json!({"username":"admin","password":"nope"})).status, 401);
    let openapi = anon.get("/api/openapi.json");
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/api/streams"].is_object());

    let admin = Client::login(server.http, "first-password-1");
    let no_csrf = Client { csrf: None, ..admin.clone() };
    let r = no_csrf.post("/api/streams", json!({"name": "conference"}));
    assert_eq!(r.status, 403, "state changes need the CSRF token");
    let wrong_csrf = Client { csrf: Some("x".into()), ..admin.clone() };
    assert_eq!(wrong_csrf.post("/api/streams", json!({"name": "conference"})).status, 403);

    let r = admin.post("/api/streams", json!({"name": "conference"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let stream = r.json();
    let id = stream["id"].as_i64().unwrap();
    let first_key = stream["key"].as_str().unwrap().to_string();
    assert_eq!(stream["rtmp_url"], json!(format!("rtmp://127.0.0.1:{}/live/{first_key}", server.rtmp)));
    // a leaked key can be replaced
    let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"regenerate_key": true})));
    assert_eq!(r.status, 200, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    assert_ne!(key, first_key);
    assert_eq!(key.len(), 32);
    let dup = admin.post("/api/streams", json!({"name": "conference"}));
    assert_eq!(dup.status, 422);
    assert_eq!(dup.json()["error"]["field"], json!("name"));
    let empty = admin.post("/api/streams", json!({"name": "  "}));
    assert_eq!(empty.json()["error"]["field"], json!("name"));
    // Requests the API cannot read answer in the same documented shape, not plain text.
    for (method, path, body, status, code) in [
        ("POST", "/api/streams".to_string(), "{not json", 400, "bad_request"),
        ("POST", "/api/streams".to_string(), r#"{"name": 5}"#, 422, "invalid_argument"),
        ("GET", "/api/streams/abc".to_string(), "", 400, "bad_request"),
        ("PATCH", format!("/api/streams/{id}/destinations/x"), "{}", 400, "bad_request"),
    ] {
        let r = admin.request_text(method, &path, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], json!(code), "{method} {path}: {}", r.body);
        assert!(r.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    }
    // A PATCH is all or nothing: a refused field leaves the others unapplied.
    let patch = |body: Value| admin.request("PATCH", &format!("/api/streams/{id}"), Some(&body));
    let r = patch(json!({"name": "renamed", "ladder": "480p", "record_mode": "sometimes"}));
    assert_eq!((r.status, r.json()["error"]["field"].clone()), (422, json!("record_mode")), "{}", r.body);
    let r = patch(json!({"name": "renamed", "regenerate_key": true, "pull_url": "ftp://camera/1"}));
    assert_eq!((r.status, r.json()["error"]["field"].clone()), (422, json!("pull_url")), "{}", r.body);
    let s = admin.get(&format!("/api/streams/{id}")).json();
    assert_eq!((&s["name"], &s["ladder"], &s["record_mode"]), (&json!("conference"), &json!(""), &json!("off")));
    assert_eq!(s["key"], json!(key), "the key was not regenerated by the refused PATCH");

    let bad = admin.post(&format!("/api/streams/{id}/destinations"), json!({"name":"yt","url":"http://youtube.com"}));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["error"]["field"], json!("url"));
    let secret = "abcd-efgh-ijkl-mnop";
    let r = admin.post(
        &format!("/api/streams/{id}/destinations"),
        json!({"name":"YouTube","url": format!("rtmp://a.rtmp.youtube.com/live2/{secret}"), "enabled": false}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let listing = admin.get(&format!("/api/streams/{id}"));
    assert!(!listing.body.contains("efgh-ijkl"), "destination keys are masked: {}", listing.body);
    assert_eq!(listing.json()["destinations"][0]["url"], json!("rtmp://a.rtmp.youtube.com:1935/live2/abcd****"));
    assert_eq!(listing.json()["destinations"][0]["state"], json!("off"));

    let sys = admin.get("/api/system").json();
    for k in ["cpu", "memory", "disks", "networks", "gpus"] {
        assert!(!sys[k].is_null(), "{k} missing in {sys}");
    }
    assert!(sys["gpus"].is_array());
    // (each answer is also checked against openapi.json by the client)
    let history = admin.get("/api/system/history");
    assert_eq!(history.status, 200);
    assert!(history.json().as_array().is_some_and(|h| !h.is_empty()), "{}", history.body);
    assert_eq!(admin.get("/api/me").json()["username"], json!("admin"));
    let metrics = anon.get("/metrics").body;
    assert!(metrics.contains("multistreamer_streams_live 0"), "{metrics}");
    assert!(metrics.contains("# TYPE multistreamer_bytes_out counter"), "{metrics}");
    assert!(metrics.contains("multistreamer_bytes_out_total 0"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "OpenMetrics text: {metrics}");
    // the server's own memory: resident, and the allocator's live heap and what it took
    let rss = metric(&metrics, "multistreamer_process_resident_bytes").unwrap_or(0);
    let (in_use, obtained) = (
        metric(&metrics, "multistreamer_process_heap_in_use_bytes"),
        metric(&metrics, "multistreamer_process_heap_obtained_bytes"),
    );
    assert!(rss > 1 << 20, "{metrics}");
    assert!(in_use.is_some_and(|u| u > 1 << 20 && obtained.is_some_and(|o| o >= u)), "{metrics}");

    // the password can be changed, the old one stops working
    let r = admin.post("/api/password", json!({"current": "first-password-1", "new": "second-password-2"}));
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!server.log().contains(secret), "secrets never reach the logs");
    server.stop();

    // persistence across a restart
    let server = Server::start(tmp.path());
    assert!(!server.stdout().contains("password"), "no new admin on a populated database");
    assert_eq!(
        anon_port(&server).post("/api/login", json!({"username":"admin","password":"first-password-1"})).status,
        401
    );
    let admin = Client::login(server.http, "second-password-2");
    let s = admin.get(&format!("/api/streams/{id}")).json();
    assert_eq!(s["name"], json!("conference"));
    assert_eq!(s["key"], json!(key));
    assert_eq!(s["destinations"][0]["name"], json!("YouTube"));
    // logout ends the session
    assert_eq!(admin.post("/api/logout", json!({})).status, 204);
    assert_eq!(admin.get("/api/streams").status, 401);
}

/// The data of the first `count` server-sent events named `name` from `path`.
fn sse_events(client: &Client, path: &str, name: &str, count: usize) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", client.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cookie = client.cookie.clone().unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n").unwrap();
    let (mut seen, mut buf, mut out) = (String::new(), [0u8; 8192], Vec::new());
    while out.len() < count {
        let n = s.read(&mut buf).expect("the feed sends events");
        assert!(n > 0, "the feed closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        out = seen
            .split(&format!("event: {name}\n"))
            .skip(1)
            .filter_map(|e| e.split_once('\n').map(|(data, _)| data.trim_start_matches("data: ").to_string()))
            .collect();
    }
    out.truncate(count);
    let schema = if name == "sample" { "SystemSample" } else { "Stream" };
    for data in &out {
        let value: Value = serde_json::from_str(data).expect("event data is JSON");
        let problems = openapi_check::check_schema(schema, &value, &format!("{path} event {name}"));
        assert!(problems.is_empty(), "the event differs from openapi.json:\n{}", problems.join("\n"));
    }
    out
}

fn anon_port(server: &Server) -> Client {
    Client { port: server.http, ..Default::default() }
}

/// A row the code cannot decode (a database edited by hand, a bad migration) answers a
/// clear internal error; the server keeps serving.
#[test]
fn an_undecodable_row_is_an_error_response_not_a_crash() {
    let tmp = TempDir::new("server-bad-row");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let id = admin.post("/api/streams", json!({"name": "odd"})).json()["id"].as_i64().unwrap();
    let db = tmp.join("data/multistreamer.db");
    let st = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE streams SET created_at='soon'\"); c.commit()"])
        .arg(&db)
        .status()
        .unwrap();
    assert!(st.success());
    for path in ["/api/streams".to_string(), format!("/api/streams/{id}")] {
        let r = admin.get(&path);
        assert_eq!(r.status, 500, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], json!("internal"), "{path}: {}", r.body);
    }
    assert_eq!(admin.get("/healthz").status, 200, "still serving");
    assert!(server.log().contains("database"), "the cause is logged:\n{}", server.log());
}

#[test]
fn repeated_failed_logins_are_rate_limited() {
    let tmp = TempDir::new("server-limit");
    let server = Server::start(tmp.path());
    let anon = anon_port(&server);
    let codes: Vec<u16> =
        (0..7).map(|_| anon.post("/api/login", json!({"username":"admin","password":"guess"})).status).collect();
    assert_eq!(&codes[..5], &[401; 5]);
    assert_eq!(codes[6], 429, "{codes:?}");
    // even the right password is refused while limited
    assert_eq!(anon.post("/api/login", json!({"username":"admin","password":"first-password-1"})).status, 429);
}

#[test]
fn publish_to_the_shown_url_goes_live_and_a_deleted_destination_stops() {
    let tmp = TempDir::new("server-live");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 12, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "show"})).json();
    let id = stream["id"].as_i64().unwrap();
    let r = admin.post(
        &format!("/api/streams/{id}/destinations"),
        json!({"name":"nginx","url": format!("rtmp://127.0.0.1:{}/app/show-out", nginx.port)}),
    );
    assert_eq!(r.status, 201);
    let did = r.json()["id"].as_i64().unwrap();

    // a wrong key is refused
    let mut wrong = publish(&clip, &format!("rtmp://127.0.0.1:{}/live/not-a-key", server.rtmp));
    assert!(!wait_child(&mut wrong, Duration::from_secs(20)).unwrap().success());

    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        if s["live"] == json!(true) && s["destinations"][0]["state"] == json!("live") {
            break;
        }
        assert!(Instant::now() < deadline, "stream/destination never went live: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The stream page's live feed: the same JSON as GET, pushed every second.
    let events = sse_events(&admin, &format!("/api/streams/{id}/live"), "stream", 2);
    for e in &events {
        let v: Value = serde_json::from_str(e).unwrap_or(Value::Null);
        assert_eq!((&v["id"], &v["live"]), (&json!(id), &json!(true)), "{e}");
        assert_eq!(v["destinations"][0]["state"], json!("live"), "{e}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let r = admin.request("DELETE", &format!("/api/streams/{id}/destinations/{did}"), None);
    assert_eq!(r.status, 204);
    std::thread::sleep(Duration::from_secs(1));
    let rec = nginx.recordings_of("show-out");
    assert_eq!(rec.len(), 1);
    let size_after_1s = std::fs::metadata(&rec[0]).unwrap().len();
    std::thread::sleep(Duration::from_secs(3));
    let size_later = std::fs::metadata(&rec[0]).unwrap().len();
    assert_eq!(size_after_1s, size_later, "the deleted destination kept receiving");
    // The counter keeps what the deleted destination sent.
    let metrics = admin.get("/metrics").body;
    let sent = metric(&metrics, "multistreamer_bytes_out_total").unwrap_or(0);
    assert!(sent >= size_later / 2, "bytes_out_total {sent} after {size_later} bytes reached nginx:\n{metrics}");
    let got = packet_hashes(&rec[0], "v");
    assert!(got.len() >= 60, "{} packets", got.len());
    assert!(find_run(&packet_hashes(&clip, "v"), &got).is_some(), "the destination got a clean run of the stream");
    let _ = wait_child(&mut ff, Duration::from_secs(30));
    assert!(server.log().contains("unknown stream key"));
}

/// An open live-load feed (a dashboard tab) must not hold up the shutdown: SIGTERM ends the
/// feed, the server exits within 5 s, and the destination was unpublished cleanly.
#[test]
fn sigterm_with_a_dashboard_feed_open_exits_promptly_and_unpublishes() {
    let tmp = TempDir::new("server-sigterm");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 30, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let mut server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "feed"})).json();
    let id = stream["id"].as_i64().unwrap();
    let url = format!("rtmp://127.0.0.1:{}/app/feed-out", nginx.port);
    assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), json!({"name": "n", "url": url})).status, 201);
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        if s["destinations"][0]["state"] == json!("live") && s["destinations"][0]["bytes_sent"].as_u64() > Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "never live: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The dashboard's feed: read until the first sample arrives.
    let mut feed = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
    feed.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cookie = admin.cookie.clone().unwrap();
    write!(feed, "GET /api/system/live HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: sample") {
        let n = feed.read(&mut buf).expect("the feed sends samples");
        assert!(n > 0, "the feed closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status();
    let st = wait_child(&mut server.child, Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.success()), "no clean exit within 5 s of SIGTERM: {st:?}\n{}", server.log());
    // The feed was ended by the server, not cut by the test.
    let mut rest = Vec::new();
    let _ = feed.read_to_end(&mut rest);
    let log = server.log();
    assert!(log.contains("destination closed"), "the destination was not closed gracefully:\n{log}");
    let _ = wait_child(&mut ff, Duration::from_secs(10));
    let rec = nginx.recordings_of("feed-out");
    assert_eq!(rec.len(), 1, "{rec:?}");
    let got = packet_hashes(&rec[0], "v");
    assert!(got.len() >= 50, "{} packets", got.len());
    assert_eq!(&packet_hashes(&clip, "v")[..got.len()], &got[..], "a clean prefix of the stream arrived");
}

#[test]
fn a_stream_ladder_feeds_a_destination_that_asked_for_a_rendition() {
    let tmp = TempDir::new("server-ladder");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 6, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let bad = admin.post("/api/streams", json!({"name": "talk", "ladder": "720"}));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["error"]["field"], json!("ladder"));
    let r = admin.post("/api/streams", json!({"name": "talk", "ladder": "240p, 1080p"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let stream = r.json();
    let id = stream["id"].as_i64().unwrap();
    assert_eq!(stream["ladder"], json!("240p,1080p"));
    assert_eq!(stream["rendition_names"], json!(["240p", "1080p"]));
    let dests = format!("/api/streams/{id}/destinations");
    let url = format!("rtmp://127.0.0.1:{}/app/talk-240", nginx.port);
    let bad = admin.post(&dests, json!({"name": "small", "url": url, "rendition": "999p"}));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["error"]["field"], json!("rendition"));
    let r = admin.post(&dests, json!({"name": "small", "url": url, "rendition": "240p"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["rendition"], json!("240p"));
    // A rung in use cannot be removed from the ladder.
    let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"ladder": "1080p"})));
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["field"], json!("ladder"));

    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = loop {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        let frames = s["renditions"][0]["frames_encoded"].as_u64().unwrap_or(0);
        if s["destinations"][0]["state"] == json!("live") && frames > 30 {
            break s;
        }
        assert!(Instant::now() < deadline, "the rendition never went out: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(live["renditions"][0]["name"], json!("240p"));
    assert_eq!(live["renditions"][0]["width"], json!(426));
    assert_eq!(live["skipped_renditions"], json!(["1080p"]), "a 1080p rung above a 360p source is skipped");
    assert!(wait_child(&mut ff, Duration::from_secs(30)).is_some_and(|s| s.success()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while admin.get(&format!("/api/streams/{id}")).json()["destinations"][0]["state"] == json!("live") {
        assert!(Instant::now() < deadline, "the destination did not close");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rec = nginx.recordings_of("talk-240");
    assert_eq!(rec.len(), 1, "{:?}", nginx.recordings());
    let streams = probe_streams(&rec[0]);
    assert!(
        streams.iter().any(|s| s.contains("codec_name=h264") && s.contains("width=426") && s.contains("height=240")),
        "{streams:?}"
    );
    assert!(streams.iter().any(|s| s.contains("codec_name=aac")), "{streams:?}");
    assert!(packet_hashes(&rec[0], "v").len() >= 120, "most of the 180 frames arrive");
}

#[test]
fn recordings_are_listed_downloaded_with_ranges_and_deleted() {
    let tmp = TempDir::new("server-rec");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 8, "640x360");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "keynote"})).json();
    let id = stream["id"].as_i64().unwrap();
    let patch = |body: Value| admin.request("PATCH", &format!("/api/streams/{id}"), Some(&body));
    let bad = patch(json!({"record_mode": "sometimes"}));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["error"]["field"], json!("record_mode"));
    let bad = patch(json!({"record_rendition": "720p"}));
    assert_eq!(bad.json()["error"]["field"], json!("record_rendition"), "no ladder, no rendition");
    // "Record now" needs a live stream.
    let r = admin.post(&format!("/api/streams/{id}/recording"), json!({"active": true}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(patch(json!({"record_mode": "original"})).status, 200);

    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        if s["recording"]["active"] == json!(true) && s["recording"]["bytes_written"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never recorded: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = admin.get("/api/recordings").json();
    assert_eq!(list[0]["stream"], json!("keynote"));
    assert_eq!(list[0]["recording"], json!(true));
    let rid = list[0]["id"].as_i64().unwrap();
    let r = admin.request("DELETE", &format!("/api/recordings/{rid}"), None);
    assert_eq!(r.status, 409, "a file being written cannot be deleted");
    assert!(wait_child(&mut ff, Duration::from_secs(30)).is_some_and(|s| s.success()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let list = admin.get("/api/recordings").json();
        if list[0]["recording"] == json!(false) && list[0]["duration_ms"].as_u64().unwrap_or(0) > 0 {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "the recording never closed: {list}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let duration_ms = rec["duration_ms"].as_u64().unwrap();
    assert!((7500..=8100).contains(&duration_ms), "{duration_ms} ms for 8 s");
    let url = rec["download_url"].as_str().unwrap().to_string();
    let (status, head, full) = admin.download(&url, None);
    assert_eq!(status, 200, "{head}");
    assert_eq!(full.len() as u64, rec["bytes"].as_u64().unwrap());
    assert!(head.to_ascii_lowercase().contains("accept-ranges: bytes"), "{head}");
    let (status, head, part) = admin.download(&url, Some("bytes=100-199"));
    assert_eq!(status, 206, "{head}");
    assert!(head.contains(&format!("bytes 100-199/{}", full.len())), "{head}");
    assert_eq!(part, full[100..200].to_vec());
    let (status, _, tail) = admin.download(&url, Some("bytes=-50"));
    assert_eq!((status, tail.as_slice()), (206, &full[full.len() - 50..]));
    let (status, head, _) = admin.download(&url, Some(&format!("bytes={}-", full.len() + 10)));
    assert_eq!(status, 416, "{head}");
    assert_eq!(Client { port: server.http, ..Default::default() }.download(&url, None).0, 401);
    // What was downloaded is the stream as published.
    let copy = tmp.join("downloaded.mp4");
    std::fs::write(&copy, &full).unwrap();
    assert_same_packets(&copy, &clip);

    assert_eq!(admin.request("DELETE", &format!("/api/recordings/{rid}"), None).status, 204);
    assert_eq!(admin.get("/api/recordings").json(), json!([]));
    assert!(std::fs::read_dir(tmp.join("data/recordings")).unwrap().next().is_none(), "the file is gone");
}

#[test]
fn a_stream_can_be_pushed_over_rtsp_or_pulled_from_a_camera() {
    let tmp = TempDir::new("server-rtsp");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 5, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    // push: the stream shows its RTSP ingest URL beside the RTMP one
    let s = admin.post("/api/streams", json!({"name": "hall"})).json();
    let id = s["id"].as_i64().unwrap();
    let rtsp_url = s["rtsp_url"].as_str().unwrap().to_string();
    assert_eq!(rtsp_url, format!("rtsp://127.0.0.1:{}/live/{}", server.rtsp, s["key"].as_str().unwrap()));
    admin.post(
        &format!("/api/streams/{id}/destinations"),
        json!({"name": "n", "url": format!("rtmp://127.0.0.1:{}/app/hall-out", nginx.port)}),
    );
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp", &rtsp_url])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while nginx.recordings_of("hall-out").is_empty()
        || admin.get(&format!("/api/streams/{id}")).json()["live"] == json!(true)
    {
        assert!(Instant::now() < deadline, "the RTSP push was not relayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(packet_hashes(&nginx.recordings_of("hall-out")[0], "v"), packet_hashes(&clip, "v"));
    // a wrong key over RTSP is refused
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "quiet", "-re", "-t", "1", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-rtsp_transport", "tcp", "-f", "rtsp"])
        .arg(format!("rtsp://127.0.0.1:{}/live/not-a-key", server.rtsp))
        .status()
        .unwrap();
    assert!(!st.success());

    // pull: a camera URL with credentials; the password never comes back
    let cam_port = free_port();
    let mut cam = python_peer("rtsp_server.py", cam_port, &[]);
    let cam_stream = admin.post("/api/streams", json!({"name": "lobby cam"})).json();
    let cid = cam_stream["id"].as_i64().unwrap();
    let bad = admin.request("PATCH", &format!("/api/streams/{cid}"), Some(&json!({"pull_url": "ftp://cam/x"})));
    assert_eq!(bad.json()["error"]["field"], json!("pull_url"));
    let r = admin.request(
        "PATCH",
        &format!("/api/streams/{cid}"),
        Some(&json!({"pull_url": format!("rtsp://viewer:s3cret@127.0.0.1:{cam_port}/cam")})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("s3cret"), "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = admin.get(&format!("/api/streams/{cid}")).json();
        if s["live"] == json!(true)
            && s["pull"]["state"] == json!("live")
            && s["pull"]["frames"].as_u64().unwrap_or(0) > 30
        {
            break;
        }
        assert!(Instant::now() < deadline, "the camera was never pulled: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // switching the pull off ends the stream
    let r = admin.request("PATCH", &format!("/api/streams/{cid}"), Some(&json!({"pull_url": ""})));
    assert_eq!(r.json()["pull"], Value::Null);
    let _ = cam.kill();
    let _ = cam.wait();
    assert!(!server.log().contains("s3cret"));
}

#[test]
fn a_stream_is_published_over_srt_with_its_passphrase_and_sent_to_an_srt_destination() {
    let tmp = TempDir::new("server-srt");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 4, "320x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let s = admin.post("/api/streams", json!({"name": "stage"})).json();
    let id = s["id"].as_i64().unwrap();
    let key = s["key"].as_str().unwrap().to_string();
    assert_eq!(s["srt_url"], json!(format!("srt://127.0.0.1:{}?streamid=#!::r=live/{key},m=publish", server.srt)));
    assert_eq!(s["srt_passphrase"], json!(""));
    // a passphrase SRT cannot take, or one that would not survive a URL, is refused
    for bad in ["short", "has space in it", &"x".repeat(80)] {
        let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"srt_passphrase": bad})));
        assert_eq!(r.json()["error"]["field"], json!("srt_passphrase"), "{bad}: {}", r.body);
    }
    let passphrase = "stage-passphrase-42";
    secrets::note_secret(Secret::StreamKey, passphrase);
    let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"srt_passphrase": passphrase})));
    assert_eq!(r.json()["srt_passphrase"], json!(passphrase), "{}", r.body);
    // an RTMP destination and an SRT one (ffmpeg listening, as a platform's SRT ingest does)
    admin.post(
        &format!("/api/streams/{id}/destinations"),
        json!({"name": "rtmp", "url": format!("rtmp://127.0.0.1:{}/app/stage-out", nginx.port)}),
    );
    let received = tmp.join("srt-out.ts");
    let (srt_out, mut listener) = ffmpeg_srt_listener(&received, "");
    let d = admin.post(
        &format!("/api/streams/{id}/destinations"),
        json!({"name": "srt", "url": format!("srt://127.0.0.1:{srt_out}?streamid=platform-key-123")}),
    );
    assert_eq!(d.status, 201, "{}", d.body);
    assert!(!d.body.contains("platform-key-123"), "the SRT stream id is masked: {}", d.body);
    secrets::note_secret(Secret::Credential, "platform-key-123");
    let publish = |passphrase: &str| {
        Command::new("ffmpeg")
            .args(["-loglevel", "quiet", "-re", "-i"])
            .arg(&clip)
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("srt://127.0.0.1:{}?streamid=live/{key}&passphrase={passphrase}&linger=2", server.srt))
            .status()
            .unwrap()
    };
    assert!(!publish("wrong-passphrase").success(), "a wrong passphrase was accepted");
    assert!(publish(passphrase).success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while nginx.recordings_of("stage-out").is_empty()
        || admin.get(&format!("/api/streams/{id}")).json()["live"] == json!(true)
    {
        assert!(Instant::now() < deadline, "the SRT publish was not relayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(wait_child(&mut listener, Duration::from_secs(15)).is_some(), "the SRT destination never closed");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(packet_hashes(&nginx.recordings_of("stage-out")[0], "v"), packet_hashes(&clip, "v"));
    let (frames, errors) = decode_video(&received);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(frames, decode_video(&clip).0, "the SRT destination got other pictures");
    let log = server.log();
    assert!(!log.contains(passphrase) && !log.contains("platform-key-123"), "a secret was logged");
}

#[test]
fn hevc_goes_to_destinations_that_take_enhanced_rtmp_and_a_legacy_one_shows_why_not() {
    let tmp = TempDir::new("server-hevc");
    let clip = tmp.join("in.mp4");
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "4"])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1"])
        .args(["-x265-params", "keyint=30:min-keyint=30:info=0:log-level=error"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(st.success());
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let s = admin.post("/api/streams", json!({"name": "hevc"})).json();
    let id = s["id"].as_i64().unwrap();
    let key = s["key"].as_str().unwrap().to_string();
    let dests = format!("/api/streams/{id}/destinations");
    let url = |k: &str| format!("rtmp://127.0.0.1:{}/app/{k}", nginx.port);
    let bad = admin.post(&dests, json!({"name": "x", "url": url("x"), "enhanced_rtmp": "always"}));
    assert_eq!((bad.status, bad.json()["error"]["field"].clone()), (422, json!("enhanced_rtmp")), "{}", bad.body);
    let legacy = admin.post(&dests, json!({"name": "legacy", "url": url("legacy")})).json();
    assert_eq!(legacy["enhanced_rtmp"], json!("negotiate"));
    let forced = admin.post(&dests, json!({"name": "forced", "url": url("forced"), "enhanced_rtmp": "assume"})).json();
    assert_eq!(forced["enhanced_rtmp"], json!("assume"));
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=size", "-of", "csv=p=0"])
        .arg(&clip)
        .output()
        .unwrap();
    let video_bytes: u64 =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<u64>().ok()).sum();
    let mut publisher = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("srt://127.0.0.1:{}?streamid=live/{key}&linger=2", server.srt))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // while live: the legacy destination says why it gets nothing; the one set to assume
    // Enhanced RTMP is live and sending (nginx-rtmp itself drops what it cannot parse: the
    // content over Enhanced RTMP is checked against our own ingest in the CLI's tests)
    let dest = |s: &Value, name: &str| {
        s["destinations"].as_array().and_then(|d| d.iter().find(|d| d["name"] == json!(name)).cloned())
    };
    let live = wait_json(&admin, &format!("/api/streams/{id}"), 20, |s| {
        let legacy_says =
            dest(s, "legacy").is_some_and(|d| d["last_error"].as_str().is_some_and(|e| e.contains("hvc1")));
        let forced_sends = dest(s, "forced")
            .is_some_and(|d| d["state"] == json!("live") && d["bytes_sent"].as_u64().unwrap_or(0) * 4 >= video_bytes);
        legacy_says && forced_sends
    });
    let reason = dest(&live, "legacy").unwrap()["last_error"].as_str().unwrap().to_string();
    assert!(reason.contains("not sending hvc1 video: the destination did not announce Enhanced RTMP"), "{reason}");
    assert_eq!(dest(&live, "forced").unwrap()["last_error"], Value::Null);
    assert!(wait_child(&mut publisher, Duration::from_secs(30)).is_some_and(|s| s.success()));
    let log = server.log();
    assert!(log.contains("codec=hevc 320x240") || log.contains("tracks=hevc 320x240"), "HEVC not configured");
}

#[test]
fn a_stream_pulled_from_hls_is_served_as_hls_behind_the_session() {
    let tmp = TempDir::new("server-hls");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 8, "320x240");
    let www = tmp.join("www/v");
    std::fs::create_dir_all(&www).unwrap();
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .arg(www.join("index.m3u8"))
        .status()
        .unwrap();
    assert!(st.success());
    let http = HttpServer::start(&tmp.join("www"));
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let s = admin.post("/api/streams", json!({"name": "hls in"})).json();
    let id = s["id"].as_i64().unwrap();
    assert_eq!(s["hls_url"], json!(format!("/hls/{id}/index.m3u8")));
    let r = admin.request(
        "PATCH",
        &format!("/api/streams/{id}"),
        Some(&json!({"pull_url": http.url("v/index.m3u8?token=tok3n")})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("tok3n"), "the URL's query is masked: {}", r.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        let segments =
            s["hls_variants"].as_array().and_then(|v| v.first()).map_or(0, |v| v["segments"].as_u64().unwrap_or(0));
        if s["live"] == json!(true) && s["pull"]["state"] == json!("live") && segments >= 2 {
            assert_eq!(s["hls_variants"][0]["name"], json!("source"));
            assert_eq!(s["hls_variants"][0]["width"], json!(320));
            break;
        }
        assert!(Instant::now() < deadline, "the HLS input never went live: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // behind the session
    assert_eq!(anon_port(&server).get(&format!("/hls/{id}/index.m3u8")).status, 401);
    let master = admin.get(&format!("/hls/{id}/index.m3u8"));
    assert_eq!(master.status, 200);
    assert!(master.headers.to_ascii_lowercase().contains("application/vnd.apple.mpegurl"), "{}", master.headers);
    assert!(master.body.contains("RESOLUTION=320x240") && master.body.contains("source/index.m3u8"), "{}", master.body);
    let media = admin.get(&format!("/hls/{id}/source/index.m3u8"));
    assert_eq!(media.status, 200);
    let first = media.body.lines().find(|l| l.ends_with(".ts")).expect("a segment").to_string();
    let (status, head, body) = admin.download(&format!("/hls/{id}/source/{first}"), None);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body.first(), Some(&0x47), "a transport stream");
    let seg = tmp.join("segment.ts");
    std::fs::write(&seg, &body).unwrap();
    let keys = video_keyframes(&seg);
    assert!(keys.len() >= 20 && keys[0], "{} frames, first a keyframe: {:?}", keys.len(), keys.first());
    assert_eq!(admin.get(&format!("/hls/{id}/source/999999.ts")).status, 404);
    // the playback link works without a session, and a new stream key revokes it
    let play = admin.get(&format!("/api/streams/{id}")).json()["hls_play_path"].as_str().unwrap().to_string();
    let anon = anon_port(&server);
    let m = anon.get(&play);
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(m.body.contains("source/index.m3u8"), "{}", m.body);
    let base = play.trim_end_matches("index.m3u8");
    assert!(anon.get(&format!("{base}source/index.m3u8")).body.contains(".ts"));
    let (status, _, body) = anon.download(&format!("{base}source/{first}"), None);
    assert_eq!((status, body.first()), (200, Some(&0x47)));
    assert_eq!(anon.get("/play/00000000000000000000000000000000/index.m3u8").status, 404);
    let r = admin.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"regenerate_key": true})));
    assert_eq!(r.status, 200);
    let new_play = r.json()["hls_play_path"].as_str().unwrap().to_string();
    assert_ne!(new_play, play);
    assert_eq!(anon.get(&play).status, 404, "the old link is revoked");
    assert_eq!(anon.get(&new_play).status, 200);
    assert_eq!(admin.get(&format!("/hls/{id}/720p/index.m3u8")).status, 404);
    // the VOD plays once: the pull finishes and the stream ends
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = admin.get(&format!("/api/streams/{id}")).json();
        if s["pull"]["state"] == json!("finished") && s["live"] == json!(false) {
            break;
        }
        assert!(Instant::now() < deadline, "the VOD did not finish: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!server.log().contains("tok3n"), "the token was logged");
}

/// Flags pointing the server at the local platform stand-ins.
fn platform_flags(google: &FakeGoogle, mts: &FakeMtsLink) -> Vec<String> {
    [
        ("--youtube-api-base", google.youtube_base()),
        ("--google-oauth-base", google.oauth_base()),
        ("--google-auth-url", google.auth_url()),
        ("--mtslink-api-base", mts.api_base()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect()
}

/// The value of the unlabelled metric `name` in `/metrics` text.
fn metric(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `GET path` until `done` holds for its JSON (or panics after `secs`).
fn wait_json(client: &Client, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = client.get(path).json();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {path}: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Connects a YouTube account through the device flow, approving the code as the
/// operator would on Google's page; returns the account's id.
fn connect_youtube(admin: &Client, google: &FakeGoogle) -> i64 {
    let r = admin.post("/api/platforms/youtube/device", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let flow = r.json();
    assert_eq!(flow["verification_url"], json!("https://www.google.com/device"));
    let path = format!("/api/platforms/youtube/device/{}", flow["flow_id"].as_str().unwrap());
    assert_eq!(admin.get(&path).json()["state"], json!("pending"));
    google.control("approve", &json!({"user_code": flow["user_code"]}).to_string());
    let done = wait_json(admin, &path, 20, |v| v["state"] != json!("pending"));
    assert_eq!(done["state"], json!("connected"), "{done}");
    assert_eq!(done["account"]["name"], json!("Fake Channel"), "named after the channel");
    done["account"]["id"].as_i64().unwrap()
}

/// The whole round trip with the platforms stood in: connect YouTube (device flow) and
/// MTS Link (token), create a broadcast and a webinar from a stream, publish, go live on
/// both, see YouTube's health, end both — with the failures an operator meets on the way
/// (quota, a step failing midway, an expired access token, no data yet, a revoked grant).
#[test]
fn youtube_and_mtslink_broadcasts_from_connect_to_complete() {
    let tmp = TempDir::new("server-platforms");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 40, "640x360");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "live2");
    let google = FakeGoogle::start(&format!("rtmp://127.0.0.1:{}/live2", nginx.port), &nginx.dir.join("rec"));
    let mts = FakeMtsLink::start();
    assert!(wait_for_port(google.port, Duration::from_secs(10)) && wait_for_port(mts.port, Duration::from_secs(10)));
    let server = Server::start_with(tmp.path(), &platform_flags(&google, &mts));
    let admin = Client::login(server.http, "first-password-1");

    // No OAuth client yet: a clear refusal, then the one from Settings.
    let r = admin.post("/api/platforms/youtube/device", json!({}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("Settings"), "{}", r.body);
    let r = admin.request(
        "PUT",
        "/api/platforms/youtube/client",
        Some(&json!({"client_id": FakeGoogle::CLIENT_ID, "client_secret": FakeGoogle::CLIENT_SECRET})),
    );
    assert_eq!((r.status, &r.json()["configured"]), (200, &json!(true)), "{}", r.body);
    assert!(!r.body.contains(FakeGoogle::CLIENT_SECRET), "the secret is never returned");
    let yt = connect_youtube(&admin, &google);

    // MTS Link: a wrong token is refused on its field, the right one connects.
    let r = admin.post("/api/platforms/mtslink", json!({"name": "Room A", "token": "wrong"}));
    assert_eq!((r.status, &r.json()["error"]["field"]), (422, &json!("token")), "{}", r.body);
    assert_eq!(r.json()["error"]["platform_reason"], json!("unauthorized"));
    let r = admin.post("/api/platforms/mtslink", json!({"name": "Room A", "token": FakeMtsLink::TOKEN}));
    assert_eq!(r.status, 201, "{}", r.body);
    let ml = r.json()["id"].as_i64().unwrap();
    let list = admin.get("/api/platforms");
    assert_eq!(list.json().as_array().unwrap().len(), 2);
    assert!(list.json().as_array().unwrap().iter().all(|p| p["state"] == json!("connected")), "{}", list.body);
    for secret in ["ya29.", "1//", FakeMtsLink::TOKEN] {
        assert!(!list.body.contains(secret), "a credential in the API: {secret}");
    }
    let db = stored_bytes(tmp.path());
    assert!(!String::from_utf8_lossy(&db).contains(FakeMtsLink::TOKEN), "tokens are sealed in the database");

    let stream = admin.post("/api/streams", json!({"name": "Conference"})).json();
    let sid = stream["id"].as_i64().unwrap();
    let bpath = format!("/api/streams/{sid}/broadcasts");

    // quotaExceeded on the first call: the operator reads why, nothing is left anywhere.
    google.fail_next("POST", "/youtube/v3/liveBroadcasts", 403, "quotaExceeded");
    let r = admin.post(&bpath, json!({"platform_id": yt, "title": "Keynote"}));
    assert_eq!((r.status, &r.json()["error"]["platform_reason"]), (422, &json!("quotaExceeded")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("quota"), "{}", r.body);
    // A failure midway (the stream insert): the broadcast already made is deleted again.
    google.fail_next("POST", "/youtube/v3/liveStreams", 500, "backendError");
    let r = admin.post(&bpath, json!({"platform_id": yt, "title": "Keynote"}));
    assert_eq!(r.status, 502, "{}", r.body);
    let fake_state: Value = serde_json::from_str(&google.control("state", "{}")).unwrap();
    assert_eq!((&fake_state["broadcasts"], &fake_state["streams"]), (&json!([]), &json!([])), "orphans: {fake_state}");
    assert_eq!(admin.get(&bpath).json(), json!([]));
    assert_eq!(admin.get(&format!("/api/streams/{sid}")).json()["destinations"], json!([]));

    // A broadcast: created, bound, and a destination from its ingestion info.
    let r = admin.post(&bpath, json!({"platform_id": yt, "title": "Keynote", "privacy": "unlisted", "latency": "low"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    let (bid, remote) = (b["id"].as_i64().unwrap(), b["remote_id"].as_str().unwrap().to_string());
    assert_eq!((&b["platform"], &b["state"]), (&json!("youtube"), &json!("ready")), "{b}");
    assert_eq!(b["watch_url"], json!(format!("https://www.youtube.com/watch?v={remote}")));
    let s = admin.get(&format!("/api/streams/{sid}")).json();
    let dest = &s["destinations"][0];
    assert_eq!(dest["id"], b["destination_id"]);
    assert!(dest["url"].as_str().unwrap().starts_with(&format!("rtmp://127.0.0.1:{}/live2/", nginx.port)), "{dest}");

    // Before any data: YouTube's errorStreamInactive, explained. The access token expired
    // meanwhile: refreshed once, transparently.
    google.control("expire_access", "{}");
    let r = admin.post(&format!("/api/broadcasts/{bid}/transition"), json!({"to": "live"}));
    assert_eq!((r.status, &r.json()["error"]["platform_reason"]), (422, &json!("errorStreamInactive")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("no data"), "{}", r.body);
    let log: Value = serde_json::from_str(&google.control("log", "{}")).unwrap();
    assert!(log.as_array().unwrap().iter().any(|e| e["path"] == json!("/token")), "a refresh happened");
    assert_eq!(admin.get("/api/platforms").json()[0]["state"], json!("connected"));

    // MTS Link: a webinar with its room's RTMP ingest.
    let room_url = format!("rtmp://127.0.0.1:{}/live2/room-key", nginx.port);
    let r = admin.post(
        &bpath,
        json!({"platform_id": ml, "title": "Webinar", "starts_at": "2026-12-24T15:30", "timezone": "5",
               "access": "password", "password": "pw", "ingest_url": room_url}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let w = r.json();
    let wid = w["id"].as_i64().unwrap();
    assert_eq!((&w["platform"], &w["state"]), (&json!("mtslink"), &json!("ready")), "{w}");
    let events: Value = serde_json::from_str(&mts.control("events", "{}")).unwrap();
    let form = events.as_object().unwrap().values().next().unwrap();
    for (k, v) in [
        ("name", "Webinar"),
        ("startsAt[date][year]", "2026"),
        ("startsAt[date][month]", "12"),
        ("startsAt[date][day]", "24"),
        ("startsAt[time][hour]", "15"),
        ("startsAt[time][minute]", "30"),
        ("timezone", "5"),
        ("accessSettings[isPasswordRequired]", "1"),
        ("password", "pw"),
    ] {
        assert_eq!(form[k], json!(v), "{k} in {form}");
    }

    // Publish: both destinations go live, YouTube sees the data, the broadcast goes live.
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    wait_json(&admin, &format!("/api/streams/{sid}"), 20, |s| {
        s["destinations"].as_array().is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["state"] == json!("live")))
    });
    let r = admin.post(&format!("/api/broadcasts/{bid}/transition"), json!({"to": "live"}));
    assert_eq!((r.status, &r.json()["state"]), (200, &json!("live")), "{}", r.body);
    let r = admin.post(&format!("/api/broadcasts/{wid}/transition"), json!({"to": "live"}));
    assert_eq!((r.status, &r.json()["state"]), (200, &json!("live")), "{}", r.body);
    // The monitor reports YouTube's own verdict on the stream.
    let all = wait_json(&admin, &bpath, 30, |v| v[0]["health"]["stream_status"] == json!("active"));
    let health = &all[0]["health"];
    assert_eq!(health["status"], json!("good"), "{health}");
    assert_eq!(health["issues"][0]["type"], json!("gopSizeLong"), "{health}");

    // End both: the platform says complete, the destinations stop.
    let r = admin.post(&format!("/api/broadcasts/{wid}/transition"), json!({"to": "complete"}));
    assert_eq!((r.status, &r.json()["state"]), (200, &json!("complete")), "{}", r.body);
    let r = admin.post(&format!("/api/broadcasts/{bid}/transition"), json!({"to": "complete"}));
    assert_eq!((r.status, &r.json()["state"]), (200, &json!("complete")), "{}", r.body);
    let s = admin.get(&format!("/api/streams/{sid}")).json();
    assert!(s["destinations"].as_array().unwrap().iter().all(|d| d["state"] == json!("off")), "{s}");
    std::thread::sleep(Duration::from_secs(1));
    let yt_key = nginx.recordings().into_iter().find(|p| !p.to_string_lossy().contains("room-key")).unwrap();
    let size = std::fs::metadata(&yt_key).unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(std::fs::metadata(&yt_key).unwrap().len(), size, "YouTube's ingest kept receiving after the end");
    let got = packet_hashes(&yt_key, "v");
    assert!(got.len() >= 60, "{} packets reached YouTube's ingest", got.len());
    assert!(find_run(&packet_hashes(&clip, "v"), &got).is_some(), "YouTube's ingest got the stream bit-exact");
    let room = nginx.recordings_of("room-key");
    assert_eq!(room.len(), 1, "{:?}", nginx.recordings());
    assert!(find_run(&packet_hashes(&clip, "v"), &packet_hashes(&room[0], "v")).is_some());
    let _ = ff.kill();
    let _ = ff.wait();

    // After the webinar: its whole chat through the API, as a capture, and the presenter's
    // video that MTS Link converts from the session's recording; YouTube's chat only live.
    let session: u64 = w["remote_id"].as_str().unwrap().parse().unwrap();
    for t in ["спасибо за лекцию 🎉", "see you"] {
        mts.control("chat", &json!({"session": session, "author": "Анна", "text": t}).to_string());
    }
    let r = admin.post(&format!("/api/broadcasts/{wid}/chat-capture"), json!({"quality": "4k"}));
    assert_eq!((r.status, &r.json()["error"]["field"]), (422, &json!("quality")), "{}", r.body);
    let r = admin.post(&format!("/api/broadcasts/{wid}/chat-capture"), json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((&r.json()["state"], &r.json()["chat_messages"]), (&json!("finished"), &json!(2)), "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("no recording of the session"), "{}", r.body);
    mts.control("record", &json!({"session": session, "file": clip}).to_string());
    let r = admin.post(&format!("/api/broadcasts/{wid}/chat-capture"), json!({}));
    assert_eq!((r.status, &r.json()["state"]), (201, &json!("converting")), "{}", r.body);
    let cap = format!("/api/captures/{}", r.json()["id"]);
    let done = wait_json(&admin, &cap, 60, |v| v["state"] != json!("converting"));
    assert_eq!((&done["state"], &done["error"], &done["fetch"]), (&json!("finished"), &Value::Null, &Value::Null));
    let frames = probe_value(&clip, "v:0", "stream=nb_frames");
    assert_eq!(done["presenter_frames"].to_string(), frames, "{done}");
    let files = done["files"].as_array().unwrap();
    let presenter = files.iter().find(|f| f["name"] == json!("presenter.mp4")).unwrap_or_else(|| panic!("{done}"));
    assert_eq!(presenter["bytes"], json!(std::fs::metadata(&clip).unwrap().len()), "the platform's file, intact");
    assert!(done["started_at"].as_i64().unwrap() <= done["ended_at"].as_i64().unwrap(), "{done}");
    let r = admin.post(&format!("/api/broadcasts/{bid}/chat-capture"), json!({}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("live"), "{}", r.body);

    // A broadcast that aired stays on the channel (its recording); here it is forgotten
    // with its destination.
    assert_eq!(admin.request("DELETE", &format!("/api/broadcasts/{bid}"), None).status, 204);
    let fake_state: Value = serde_json::from_str(&google.control("state", "{}")).unwrap();
    assert_eq!(fake_state["broadcasts"], json!([remote]), "{fake_state}");
    assert_eq!(admin.get(&format!("/api/streams/{sid}")).json()["destinations"].as_array().unwrap().len(), 1);

    // The grant is revoked on Google's side: the account says "reconnect needed".
    google.control("revoke_all", "{}");
    let r = admin.get(&format!("/api/platforms/{yt}/upcoming"));
    assert_eq!((r.status, &r.json()["error"]["platform_reason"]), (422, &json!("invalid_grant")), "{}", r.body);
    let p = admin.get("/api/platforms").json();
    assert_eq!((&p[0]["state"], &p[1]["state"]), (&json!("reconnect_needed"), &json!("connected")), "{p}");
    assert_eq!(admin.request("DELETE", &format!("/api/platforms/{yt}"), None).status, 204);
    assert_eq!(admin.get("/api/platforms").json().as_array().unwrap().len(), 1);
    assert!(!server.log().contains(FakeMtsLink::TOKEN), "a token in the log");
    // YouTube's stream key (the nginx recording is named after it) is in no log line.
    let file = yt_key.file_name().unwrap().to_string_lossy().to_string();
    let key = &file[..24];
    assert!(key.split('-').count() == 5 && !server.log().contains(key), "the stream key {key} in the log");
}

/// With a public URL, an account also connects by redirect: the consent page (PKCE S256,
/// offline access, a single-use state) sends the browser back to the server, which
/// exchanges the code. A replayed or forged state is refused.
#[test]
fn youtube_connects_by_redirect_with_pkce_and_a_single_use_state() {
    let tmp = TempDir::new("server-oauth-code");
    let google = FakeGoogle::start("rtmp://127.0.0.1:1/live2", &tmp.join("rec"));
    let mts = FakeMtsLink::start();
    assert!(wait_for_port(google.port, Duration::from_secs(10)));
    let mut flags = platform_flags(&google, &mts);
    flags.extend(["--public-url", "https://ms.example.org/"].map(String::from));
    flags.extend(
        ["--youtube-client-id", FakeGoogle::CLIENT_ID, "--youtube-client-secret", FakeGoogle::CLIENT_SECRET]
            .map(String::from),
    );
    let server = Server::start_with(tmp.path(), &flags);
    let admin = Client::login(server.http, "first-password-1");
    let client = admin.get("/api/platforms/youtube/client").json();
    assert_eq!((&client["from_config"], &client["redirect_flow"]), (&json!(true), &json!(true)), "{client}");
    let r = admin.request("PUT", "/api/platforms/youtube/client", Some(&json!({"client_id": "other"})));
    assert_eq!(r.status, 409, "the configured client is not overridden from the UI");

    let url = admin.get("/api/platforms/youtube/authorize").json()["url"].as_str().unwrap().to_string();
    for part in ["code_challenge_method=S256", "access_type=offline", "prompt=consent", "state="] {
        assert!(url.contains(part), "{part} missing in {url}");
    }
    assert!(url.contains("redirect_uri=https%3A%2F%2Fms.example.org%2Foauth%2Fyoutube%2Fcallback"), "{url}");
    // The browser at Google's page: approved, redirected back with a code.
    let consent = Client { port: google.port, ..Default::default() }.get(&url[url.find("/o/oauth2").unwrap()..]);
    assert_eq!(consent.status, 302, "{}", consent.body);
    let location = consent.headers.lines().find_map(|l| l.strip_prefix("Location: ")).unwrap().trim().to_string();
    let back = &location[location.find("/oauth/").unwrap()..];
    let anon = Client { port: server.http, ..Default::default() };
    let r = anon.get(back);
    assert_eq!(r.status, 303);
    assert!(r.headers.contains("location: /#/settings?connected=youtube"), "{}", r.headers);
    let p = admin.get("/api/platforms").json();
    assert_eq!((&p[0]["kind"], &p[0]["state"]), (&json!("youtube"), &json!("connected")), "{p}");
    // The same redirect again (a replay): refused, no second account.
    let r = anon.get(back);
    assert!(r.headers.contains("location: /#/settings?error="), "{}", r.headers);
    let r = anon.get("/oauth/youtube/callback?code=x&state=forged");
    assert!(r.headers.contains("location: /#/settings?error="), "{}", r.headers);
    assert_eq!(admin.get("/api/platforms").json().as_array().unwrap().len(), 1);
    let yt = p[0]["id"].as_i64().unwrap();

    // A device flow the operator denies on Google's page ends as "denied".
    let flow = admin.post("/api/platforms/youtube/device", json!({})).json();
    google.control("deny", "{}");
    let path = format!("/api/platforms/youtube/device/{}", flow["flow_id"].as_str().unwrap());
    let denied = wait_json(&admin, &path, 20, |v| v["state"] != json!("pending"));
    assert_eq!(denied["state"], json!("denied"), "{denied}");

    // A broadcast with the backup ingest as a second destination; then the same (still
    // upcoming) broadcast attached to another stream reuses its bound ingest stream.
    let one = admin.post("/api/streams", json!({"name": "Hall A", "ladder": "480p"})).json()["id"].as_i64().unwrap();
    let r = admin.post(
        &format!("/api/streams/{one}/broadcasts"),
        json!({"platform_id": yt, "title": "Hall A", "backup": true, "rendition": "480p", "ingest": "rtmp"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    assert!(b["backup_destination_id"].is_i64(), "{b}");
    let dests = admin.get(&format!("/api/streams/{one}")).json()["destinations"].clone();
    assert_eq!(dests.as_array().unwrap().len(), 2, "{dests}");
    assert!(dests[1]["url"].as_str().unwrap().contains("backup=1"), "{dests}");
    assert_eq!(dests[0]["rendition"], json!("480p"), "the chosen rendition feeds the destination");
    let upcoming = admin.get(&format!("/api/platforms/{yt}/upcoming")).json();
    assert_eq!(upcoming[0]["remote_id"], b["remote_id"], "{upcoming}");
    let two = admin.post("/api/streams", json!({"name": "Hall B"})).json()["id"].as_i64().unwrap();
    let r = admin.post(&format!("/api/streams/{two}/broadcasts"), json!({"platform_id": yt, "attach": "nope"}));
    assert_eq!((r.status, &r.json()["error"]["field"]), (422, &json!("attach")), "{}", r.body);
    let r = admin.post(&format!("/api/streams/{two}/broadcasts"), json!({"platform_id": yt, "attach": b["remote_id"]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((&r.json()["remote_id"], &r.json()["title"]), (&b["remote_id"], &json!("Hall A")));
    let url_of = |id: i64| admin.get(&format!("/api/streams/{id}")).json()["destinations"][0]["url"].clone();
    assert_eq!(url_of(one), url_of(two), "the same ingest");
}

/// A webinar capture started from the API: a local room page in chromium, the chat and the
/// presenter window written while it runs (counters move), stopped, its files downloaded,
/// deleted. The room's guest token never shows.
#[test]
fn a_webinar_capture_runs_from_the_api_and_its_files_are_served() {
    let tmp = TempDir::new("server-capture");
    let room = FakeRoom::start();
    let server = Server::start(tmp.path());
    let admin = Client::login(server.http, "first-password-1");
    let stream = admin.post("/api/streams", json!({"name": "Lecture"})).json();
    let sid = stream["id"].as_i64().unwrap();
    // the lecture is recorded while the room is captured: the render pairs them
    let r = admin.request("PATCH", &format!("/api/streams/{sid}"), Some(&json!({"record_mode": "original"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let clip = tmp.join("lecture.mp4");
    make_clip(&clip, 14, "640x360");
    let path = format!("/api/streams/{sid}/captures");
    let r = admin.post(&path, json!({"url": "ftp://nope"}));
    assert_eq!((r.status, &r.json()["error"]["field"]), (422, &json!("url")), "{}", r.body);
    let url = format!("{}?token=guest-secret-123", room.url());
    let r = admin.post(
        &path,
        json!({"url": url, "name": "Lecture 1", "chat_selector": "#chat", "chat_author_selector": ".author",
               "chat_text_selector": ".text", "chat_id_attribute": "data-id", "presenter_selector": "#presenter",
               "window": "1280x720", "fps": 30}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json();
    let cid = c["id"].as_i64().unwrap();
    assert_eq!((&c["state"], &c["name"]), (&json!("running"), &json!("Lecture 1")));
    assert!(c["url"].as_str().unwrap().ends_with("?token=****"), "{c}");
    let cpath = format!("/api/captures/{cid}");
    wait_json(&admin, &cpath, 40, |v| {
        v["files"].as_array().is_some_and(|f| f.iter().any(|f| f["name"] == "chat.jsonl"))
    });
    // the page is up once its first load is counted by the room
    let deadline = Instant::now() + Duration::from_secs(30);
    while !room.state().contains("\"loads\": 1") && !room.state().contains("\"loads\":1") {
        assert!(Instant::now() < deadline, "the room was never opened");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
    room.say(&[("Анна", "Привет из комнаты 👋"), ("Bob", "<b>hi</b>")]);
    let running = wait_json(&admin, &cpath, 30, |v| v["chat_messages"].as_u64() >= Some(2));
    assert!(running["presenter_frames"].as_u64().unwrap_or(0) > 0 || running["state"] == json!("running"), "{running}");
    assert_eq!(admin.request("DELETE", &cpath, None).status, 409, "not while it runs");
    assert_eq!(admin.post(&format!("{cpath}/render"), json!({})).status, 409, "not while it runs");
    std::thread::sleep(Duration::from_secs(4));
    let stopped = admin.post(&format!("{cpath}/stop"), json!({}));
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.json()["state"], json!("stopping"));
    let done = wait_json(&admin, &cpath, 40, |v| !matches!(v["state"].as_str(), Some("running" | "stopping")));
    assert_eq!(done["state"], json!("finished"), "{done}");
    assert!(done["ended_at"].is_i64(), "{done}");
    let done = wait_json(&admin, &cpath, 20, |v| {
        v["files"].as_array().is_some_and(|f| f.len() == 3) && v["chat_messages"].as_u64() >= Some(2)
    });
    let (status, _, chat) = admin.download(&format!("{cpath}/files/chat.jsonl"), None);
    assert_eq!(status, 200);
    let chat = String::from_utf8(chat).unwrap();
    assert!(chat.contains("Привет из комнаты 👋") && chat.contains("<b>hi</b>"), "{chat}");
    let (status, _, manifest) = admin.download(&format!("{cpath}/files/capture.json"), None);
    assert_eq!(status, 200);
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["name"], json!("Lecture 1"));
    assert!(manifest["ended_at"].is_string(), "{manifest}");
    let (status, _, video) = admin.download(&format!("{cpath}/files/presenter.mp4"), Some("bytes=0-7"));
    assert_eq!((status, &video[4..8]), (206, &b"ftyp"[..]));
    assert_eq!(admin.get(&format!("{cpath}/files/secrets.txt")).status, 404);
    assert_eq!(admin.get(&path).json()[0]["id"], json!(cid));
    for text in [admin.get(&path).body, server.log()] {
        assert!(!text.contains("guest-secret-123"), "the guest token leaked");
    }
    let db = stored_bytes(tmp.path());
    assert!(!String::from_utf8_lossy(&db).contains("guest-secret-123"), "the guest token is sealed in the database");
    // render it with the stream's recording of the same time
    let _ = wait_child(&mut ff, Duration::from_secs(60));
    wait_json(&admin, "/api/recordings", 30, |v| {
        v.as_array().is_some_and(|l| l.iter().any(|r| r["kind"] == json!("original") && r["recording"] == json!(false)))
    });
    let r = admin.post(&format!("{cpath}/render"), json!({"size": "640x360", "layout": "side"}));
    assert_eq!(r.status, 202, "{}", r.body);
    let rendered = wait_json(&admin, &cpath, 120, |v| v["render"]["state"] != json!("running"));
    assert_eq!(rendered["render"]["state"], json!("finished"), "{rendered}");
    let rid = rendered["render"]["recording_id"].as_i64().unwrap();
    let list = admin.get("/api/recordings").json();
    let rec = list.as_array().unwrap().iter().find(|r| r["id"] == json!(rid)).unwrap().clone();
    assert_eq!(rec["kind"], json!("rendered"), "{rec}");
    let (status, _, body) = admin.download(rec["download_url"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    let file = tmp.join("rendered.mp4");
    std::fs::write(&file, body).unwrap();
    assert_eq!(probe_value(&file, "v", "stream=width"), "640");
    assert_eq!(probe_value(&file, "a", "stream=codec_name"), "aac", "the lecture's audio");
    assert_eq!(admin.request("DELETE", &cpath, None).status, 204);
    assert_eq!(admin.get(&cpath).status, 404);
    assert!(!tmp.join(&format!("data/captures/capture-{cid}")).exists(), "its files are gone");
    let _ = done;
}

mod ui {
    //! The web UI in Debian's chromium, driven by headless_chrome.
    use std::ffi::OsStr;
    use std::sync::Arc;

    use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
    use headless_chrome::{Browser, LaunchOptions, Tab};

    use super::*;

    /// Saves a screenshot of the page into the test output directory when a test fails.
    struct ScreenshotOnFailure(Arc<Tab>);

    impl Drop for ScreenshotOnFailure {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-failure.png");
                if let Ok(png) = self.0.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true) {
                    let _ = std::fs::write(&path, png);
                    eprintln!("screenshot of the failing page: {}", path.display());
                }
            }
        }
    }

    fn js(tab: &Tab, expr: &str) -> Value {
        tab.evaluate(expr, false).unwrap().value.unwrap_or(Value::Null)
    }

    fn wait_js(tab: &Tab, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if js(tab, expr) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("timed out waiting for: {expr}");
    }

    fn fill(tab: &Tab, selector: &str, text: &str) {
        let e = tab.wait_for_element(selector).unwrap();
        e.click().unwrap();
        e.type_into(text).unwrap();
    }

    /// Debian's chromium, headless, on the server's web UI, signed in as admin.
    fn signed_in(server: &Server) -> (Browser, Arc<Tab>, ScreenshotOnFailure) {
        signed_in_with(server, &[])
    }

    /// [`signed_in`] with more chromium flags.
    fn signed_in_with(server: &Server, extra: &[&str]) -> (Browser, Arc<Tab>, ScreenshotOnFailure) {
        let args: Vec<&OsStr> = [
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ]
        .iter()
        .chain(extra)
        .map(OsStr::new)
        .collect();
        let options = LaunchOptions::default_builder()
            .path(Some("/usr/bin/chromium".into()))
            .sandbox(false)
            .headless(true)
            .window_size(Some((1280, 1000)))
            .idle_browser_timeout(Duration::from_secs(300))
            .args(args)
            .build()
            .unwrap();
        let browser = Browser::new(options).expect("chromium must be installed (make deps-test)");
        let tab = browser.new_tab().unwrap();
        let shot = ScreenshotOnFailure(tab.clone());
        tab.set_default_timeout(Duration::from_secs(20));
        tab.navigate_to(&format!("http://127.0.0.1:{}/", server.http)).unwrap().wait_until_navigated().unwrap();
        fill(&tab, "#login-username", "admin");
        fill(&tab, "#login-password", "first-password-1");
        tab.wait_for_element("#login-submit").unwrap().click().unwrap();
        tab.wait_for_element("#chart-cpu").unwrap();
        (browser, tab, shot)
    }

    fn screenshot(tab: &Tab, name: &str) {
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join(name), png);
    }

    /// "Go live from this browser": chromium's fake camera and microphone, published from
    /// the stream page over WHIP, reach nginx-rtmp as H.264 and AAC that decode, as a 360p
    /// rendition at a second destination, as HLS and as the original recording; Stop ends
    /// the session and the stream. Offers the server cannot use are refused with the reason.
    #[test]
    fn go_live_from_the_stream_page_in_chromium() {
        let tmp = TempDir::new("server-ui-whip");
        let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "live");
        let server = Server::start(tmp.path());
        assert!(server.stdout().contains("WHIP ingest:"), "{}", server.stdout());
        let admin = Client::login(server.http, "first-password-1");
        let stream = admin.post("/api/streams", json!({"name": "from a browser", "ladder": "360p"})).json();
        let sid = stream["id"].as_i64().unwrap();
        let key = stream["key"].as_str().unwrap().to_string();
        assert_eq!(stream["whip_path"], json!("/whip/live"));
        let r = admin.request("PATCH", &format!("/api/streams/{sid}"), Some(&json!({"record_mode": "original"})));
        assert_eq!(r.status, 200, "{}", r.body);
        let url = format!("rtmp://127.0.0.1:{}/live/browser", nginx.port);
        assert_eq!(
            admin.post(&format!("/api/streams/{sid}/destinations"), json!({"name": "n", "url": url})).status,
            201
        );
        let small =
            json!({"name": "small", "url": format!("rtmp://127.0.0.1:{}/live/small", nginx.port), "rendition": "360p"});
        assert_eq!(admin.post(&format!("/api/streams/{sid}/destinations"), small).status, 201);

        // what a WHIP client hears when its offer cannot be taken
        let bearer = format!("Bearer {key}");
        let sdp = [("Content-Type", "application/sdp")];
        let with_key = [("Content-Type", "application/sdp"), ("Authorization", bearer.as_str())];
        let vp8 = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";
        let (status, _, body) = http_text(server.http, "POST", "/whip/live", &with_key, vp8);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("VP8 only") && body.contains("H.264"), "{body}");
        let (status, _, body) = http_text(server.http, "POST", "/whip/live", &with_key, "not sdp");
        assert_eq!(status, 400, "{body}");
        let (status, _, body) = http_text(server.http, "POST", "/whip/live", &sdp, vp8);
        assert_eq!(status, 401, "no key: {body}");
        let wrong = [("Content-Type", "application/sdp"), ("Authorization", "Bearer not-a-key")];
        let h264 = vp8.replace("VP8", "H264");
        let (status, _, body) = http_text(server.http, "POST", "/whip/live", &wrong, &h264);
        assert_eq!(status, 401, "a wrong key: {body}");
        let (status, _, _) = http_text(server.http, "POST", "/whip/live", &[("Authorization", bearer.as_str())], &h264);
        assert_eq!(status, 415);
        let (status, _, _) = http_text(server.http, "DELETE", "/whip/session/0123", &[], "");
        assert_eq!(status, 404);
        assert!(!admin.get(&format!("/api/streams/{sid}")).json()["live"].as_bool().unwrap(), "nothing went live");

        let (_browser, tab, _shot) = signed_in_with(
            &server,
            &[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
            ],
        );
        tab.navigate_to(&format!("http://127.0.0.1:{}/#/streams/{sid}", server.http)).unwrap();
        tab.wait_for_element("#golive").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#golive-state').textContent === 'live from this browser'",
            Duration::from_secs(30),
        );
        // the destination receives it; ten seconds of it recorded there
        wait_json(&admin, &format!("/api/streams/{sid}"), 60, |s| {
            s["live"] == json!(true)
                && s["destinations"].as_array().is_some_and(|d| d.iter().all(|d| d["state"] == json!("live")))
                && s["hls_variants"][0]["segments"].as_u64().unwrap_or(0) > 0
                && s["recording"]["bytes_written"].as_u64().unwrap_or(0) > 0
        });
        let rec = || nginx.recordings_of("browser").first().cloned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if rec().is_some_and(|r| video_keyframes(&r).len() >= 300) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not get 300 video frames: {:?}",
                rec().map(|r| probe_streams(&r))
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        screenshot(&tab, "ui-go-live.png");
        tab.wait_for_element("#golive").unwrap().click().unwrap();
        wait_js(&tab, "document.querySelector('#golive').textContent === 'Go live'", Duration::from_secs(10));
        wait_json(&admin, &format!("/api/streams/{sid}"), 30, |s| s["destinations"][0]["state"] != json!("live"));
        assert!(server.log().contains("WHIP session stopped"), "Stop sent DELETE: {}", server.log());

        let recording = rec().unwrap();
        let streams = probe_streams(&recording);
        assert!(streams.iter().any(|s| s.contains("codec_name=h264")), "{streams:?}");
        assert!(streams.iter().any(|s| s.contains("codec_name=aac") && s.contains("sample_rate=48000")), "{streams:?}");
        let (frames, errors) = decode_video(&recording);
        assert!(frames.len() >= 300, "{} frames decoded", frames.len());
        assert!(errors.trim().is_empty(), "the H.264 decodes without errors: {errors}");
        // the fake camera moves: the pictures are not all the same
        let distinct: std::collections::HashSet<&String> = frames.iter().collect();
        assert!(distinct.len() > frames.len() / 2, "{} distinct pictures of {}", distinct.len(), frames.len());
        let audio = decode_audio_seconds(&recording);
        assert!(audio >= 8.0, "{audio} s of audio decoded");

        // the ladder's rendition, and the server's own recording of the original
        let small = nginx.recordings_of("small");
        let small = small.first().expect("the 360p destination recorded");
        let streams = probe_streams(small);
        assert!(streams.iter().any(|s| s.contains("codec_name=h264") && s.contains("height=360")), "{streams:?}");
        assert!(decode_video(small).0.len() >= 100, "the 360p rendition decodes");
        let list = wait_json(&admin, "/api/recordings", 30, |v| v[0]["recording"] == json!(false));
        let (status, _, body) = admin.download(list[0]["download_url"].as_str().unwrap(), None);
        assert_eq!(status, 200);
        let original = tmp.join("original.mp4");
        std::fs::write(&original, body).unwrap();
        let (frames, errors) = decode_video(&original);
        assert!(frames.len() >= 300 && errors.trim().is_empty(), "{} frames recorded: {errors}", frames.len());
        assert!(probe_streams(&original).iter().any(|s| s.contains("codec_name=aac")), "the recording has the AAC");

        // live from the tab again, then SIGTERM: the server ends the session and exits cleanly
        tab.wait_for_element("#golive").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#golive-state').textContent === 'live from this browser'",
            Duration::from_secs(30),
        );
        wait_json(&admin, &format!("/api/streams/{sid}"), 30, |s| s["live"] == json!(true));
        let log = server.log.clone();
        server.stop();
        let log = std::fs::read_to_string(log).unwrap();
        assert!(log.contains("WHIP session stopped"), "the session ended with the server: {log}");
    }

    /// Seconds of audio that decode from the first audio stream.
    fn decode_audio_seconds(file: &Path) -> f64 {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(file)
            .args(["-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "8000", "-"])
            .output()
            .unwrap();
        assert!(out.stderr.is_empty(), "the AAC decodes without errors: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout.len() as f64 / 16_000.0
    }

    /// Settings → Platforms connects YouTube with the device flow; the stream page creates a
    /// broadcast that goes live by itself once YouTube receives the stream, shows YouTube's
    /// verdict on it, and ends it.
    #[test]
    fn youtube_from_connect_to_live_in_chromium() {
        let tmp = TempDir::new("server-ui-platforms");
        let clip = tmp.join("in.mp4");
        make_clip(&clip, 40, "640x360");
        let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "live2");
        let google = FakeGoogle::start(&format!("rtmp://127.0.0.1:{}/live2", nginx.port), &nginx.dir.join("rec"));
        let mts = FakeMtsLink::start();
        assert!(wait_for_port(google.port, Duration::from_secs(10)));
        let mut flags = platform_flags(&google, &mts);
        flags.extend(
            ["--youtube-client-id", FakeGoogle::CLIENT_ID, "--youtube-client-secret", FakeGoogle::CLIENT_SECRET]
                .map(String::from),
        );
        let server = Server::start_with(tmp.path(), &flags);
        let (_browser, tab, _shot) = signed_in(&server);
        // confirmation dialogs are answered "yes"
        let yes = "window.confirm = () => true; true";

        tab.navigate_to(&format!("http://127.0.0.1:{}/#/settings", server.http)).unwrap();
        tab.wait_for_element("#connect-youtube").unwrap().click().unwrap();
        let code = tab.wait_for_element("#device-code").unwrap().get_inner_text().unwrap();
        assert_eq!(js(&tab, "document.querySelector('#device-url').href"), json!("https://www.google.com/device"));
        google.control("approve", &json!({ "user_code": code }).to_string());
        wait_js(
            &tab,
            "document.querySelector('#device-state').textContent.includes('Connected: Fake Channel') && \
             document.querySelector('tr[data-platform-id] .platform-state').textContent === 'connected'",
            Duration::from_secs(20),
        );
        screenshot(&tab, "ui-platforms.png");

        let admin = Client::login(server.http, "first-password-1");
        let stream = admin.post("/api/streams", json!({"name": "UI conference"})).json();
        let sid = stream["id"].as_i64().unwrap();
        tab.navigate_to(&format!("http://127.0.0.1:{}/#/streams/{sid}", server.http)).unwrap();
        fill(&tab, "#bc-title", "UI keynote");
        tab.wait_for_element("#bc-auto-live").unwrap().click().unwrap();
        tab.wait_for_element("#bc-submit").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#broadcast-list tr[data-broadcast-id] .bc-state')?.textContent === 'ready' && \
             !!document.querySelector('tr[data-dest-id]')",
            Duration::from_secs(20),
        );

        // data flows: YouTube sees it, the broadcast goes live by itself, its health shows
        let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
        wait_js(
            &tab,
            "document.querySelector('#broadcast-list .bc-state').textContent === 'live' && \
             document.querySelector('#broadcast-list .bc-health-status')?.textContent === 'good'",
            Duration::from_secs(60),
        );
        let issue = js(&tab, "document.querySelector('#broadcast-list .bc-issue').textContent");
        assert!(issue.as_str().is_some_and(|t| t.contains("keyframe")), "{issue}");
        js(&tab, "document.querySelector('#broadcasts').scrollIntoView()");
        screenshot(&tab, "ui-broadcast-live.png");

        js(&tab, yes);
        tab.wait_for_element("#broadcast-list .bc-end").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#broadcast-list .bc-state').textContent === 'complete' && \
             document.querySelector('tr[data-dest-id] .dest-state').textContent === 'off'",
            Duration::from_secs(20),
        );
        let _ = ff.kill();
        let _ = ff.wait();
        let got = packet_hashes(&nginx.recordings()[0], "v");
        assert!(find_run(&packet_hashes(&clip, "v"), &got).is_some(), "YouTube's ingest got the stream bit-exact");
    }

    /// The stream page starts a capture of a room, shows its counters move, stops it,
    /// renders it with the stream's recording and links the result.
    #[test]
    fn capture_and_render_from_the_stream_page_in_chromium() {
        let tmp = TempDir::new("server-ui-capture");
        let room = FakeRoom::start();
        let clip = tmp.join("lecture.mp4");
        make_clip(&clip, 14, "640x360");
        let server = Server::start(tmp.path());
        let (_browser, tab, _shot) = signed_in(&server);
        let admin = Client::login(server.http, "first-password-1");
        let stream = admin.post("/api/streams", json!({"name": "UI lecture"})).json();
        let sid = stream["id"].as_i64().unwrap();
        admin.request("PATCH", &format!("/api/streams/{sid}"), Some(&json!({"record_mode": "original"})));
        tab.navigate_to(&format!("http://127.0.0.1:{}/#/streams/{sid}", server.http)).unwrap();
        fill(&tab, "#cap-url", &room.url());
        fill(&tab, "#cap-chat", "#chat");
        fill(&tab, "#cap-author", ".author");
        fill(&tab, "#cap-text", ".text");
        fill(&tab, "#cap-id-attr", "data-id");
        fill(&tab, "#cap-presenter", "#presenter");
        tab.wait_for_element("#cap-submit").unwrap().click().unwrap();
        tab.wait_for_element("#capture-list tr[data-capture-id] .cap-stop").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !room.state().replace(' ', "").contains("\"loads\":1") {
            assert!(Instant::now() < deadline, "the room was never opened");
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut ff = publish(&clip, stream["rtmp_url"].as_str().unwrap());
        room.say(&[("Анна", "вопрос из зала 🙋"), ("Bob", "great")]);
        wait_js(
            &tab,
            "Number(document.querySelector('#capture-list .cap-chat')?.textContent || 0) >= 2 && \
             Number(document.querySelector('#capture-list .cap-frames')?.textContent || 0) > 0",
            Duration::from_secs(30),
        );
        screenshot(&tab, "ui-capture-running.png");
        std::thread::sleep(Duration::from_secs(3));
        tab.wait_for_element("#capture-list .cap-stop").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#capture-list .cap-state')?.textContent.startsWith('finished') && \
             !!document.querySelector('#capture-list .cap-render')",
            Duration::from_secs(40),
        );
        let _ = wait_child(&mut ff, Duration::from_secs(60));
        // the recording of the stream is closed once the publisher is gone
        let deadline = Instant::now() + Duration::from_secs(30);
        while !admin.get("/api/recordings").body.contains("\"recording\":false") {
            assert!(Instant::now() < deadline, "the recording never closed");
            std::thread::sleep(Duration::from_millis(300));
        }
        js(&tab, "document.querySelector('#capture-list .cap-size').value = '1280x720'");
        tab.wait_for_element("#capture-list .cap-render").unwrap().click().unwrap();
        wait_js(&tab, "!!document.querySelector('#capture-list a.cap-result')", Duration::from_secs(120));
        screenshot(&tab, "ui-capture-rendered.png");
        let href = js(&tab, "document.querySelector('#capture-list a.cap-result').getAttribute('href')");
        let (status, _, body) = admin.download(href.as_str().unwrap(), None);
        assert_eq!(status, 200);
        let file = tmp.join("rendered.mp4");
        std::fs::write(&file, body).unwrap();
        assert_eq!(probe_value(&file, "v", "stream=width"), "1280", "rendered at the size chosen");
        let files =
            js(&tab, "[...document.querySelectorAll('#capture-list a.cap-file')].map(a => a.textContent).join(' ')");
        assert!(files.as_str().is_some_and(|f| f.contains("chat.jsonl") && f.contains("presenter.mp4")), "{files}");
    }

    #[test]
    fn web_ui_end_to_end_in_chromium() {
        let tmp = TempDir::new("server-ui");
        let clip = tmp.join("in.mp4");
        make_clip(&clip, 16, "640x360");
        let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "app");
        let server = Server::start(tmp.path());
        let (_browser, tab, _shot) = signed_in(&server);

        // the dashboard's load charts receive live samples
        let samples =
            || js(&tab, "Number(document.querySelector('#chart-cpu').dataset.samples)").as_f64().unwrap_or(0.0);
        let before = samples();
        std::thread::sleep(Duration::from_millis(3500));
        let after = samples();
        assert!(after >= before + 2.0, "charts got {before} then {after} samples");
        let gpu_label = js(&tab, "document.querySelector('#chart-gpu').parentElement.querySelector('h3').textContent");
        assert!(gpu_label.as_str().is_some_and(|s| s.contains('%') || s.contains("no GPU detected")), "{gpu_label}");
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-dashboard.png"), png);

        // a field error for a bad input, then a stream
        tab.wait_for_element("#new-stream-submit").unwrap().click().unwrap();
        wait_js(&tab, "document.querySelector('[data-error-for=name]').textContent.length > 0", Duration::from_secs(5));
        fill(&tab, "#new-stream-name", "E2E show");
        tab.wait_for_element("#new-stream-submit").unwrap().click().unwrap();
        tab.wait_for_element("#ingest-url").unwrap();
        let ingest = js(&tab, "document.querySelector('#ingest-url').value").as_str().unwrap().to_string();
        assert!(ingest.starts_with(&format!("rtmp://127.0.0.1:{}/live/", server.rtmp)), "{ingest}");
        let rtsp = js(&tab, "document.querySelector('#ingest-rtsp').value").as_str().unwrap_or("").to_string();
        assert!(rtsp.starts_with(&format!("rtsp://127.0.0.1:{}/live/", server.rtsp)), "{rtsp}");

        // a destination pointing at nginx-rtmp
        fill(&tab, "#dest-name", "nginx");
        fill(&tab, "#dest-server", &format!("rtmp://127.0.0.1:{}/app", nginx.port));
        fill(&tab, "#dest-key", "e2e-out");
        tab.wait_for_element("#dest-submit").unwrap().click().unwrap();
        tab.wait_for_element("tr[data-dest-id]").unwrap();
        assert!(!js(&tab, "document.body.innerText").as_str().unwrap_or("").contains("e2e-out"), "the key is masked");

        // a ladder: a bad one shows a field error, a good one offers its rung to destinations
        fill(&tab, "#ladder-input", "240");
        tab.wait_for_element("#ladder-submit").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#ladder-form [data-error-for=ladder]').textContent.includes('240')",
            Duration::from_secs(5),
        );
        js(&tab, "document.querySelector('#ladder-input').value = ''");
        fill(&tab, "#ladder-input", "240p");
        tab.wait_for_element("#ladder-submit").unwrap().click().unwrap();
        wait_js(
            &tab,
            "[...document.querySelectorAll('#dest-rendition option')].some(o => o.value === '240p')",
            Duration::from_secs(5),
        );

        // publish to the shown ingest URL: the stream and the destination turn live
        let mut ff = publish(&clip, &ingest);
        wait_js(
            &tab,
            "document.querySelector('#stream-live').textContent === 'live' && \
             document.querySelector('tr[data-dest-id] .dest-state').textContent === 'live'",
            Duration::from_secs(20),
        );
        // the rendition is encoded while live, and the page shows it
        wait_js(
            &tab,
            "Number(document.querySelector('#rendition-list tr[data-rendition=\"240p\"] .rendition-frames')?.textContent || 0) > 0",
            Duration::from_secs(20),
        );
        // the preview player (hls.js) plays the stream's HLS in the page
        wait_js(&tab, "document.querySelector('#preview').currentTime > 1", Duration::from_secs(30));
        js(&tab, "document.querySelector('#preview').scrollIntoView()");
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-preview.png"), png);
        // "Record now" on the live stream: the page shows the recording growing
        tab.wait_for_element("#record-now").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('#record-status').textContent.includes('original') && \
             document.querySelector('#record-now').textContent === 'Stop recording'",
            Duration::from_secs(10),
        );
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-stream-live.png"), png);
        std::thread::sleep(Duration::from_secs(2));

        // switch the destination off: nginx stops receiving
        tab.wait_for_element("tr[data-dest-id] input.dest-toggle").unwrap().click().unwrap();
        wait_js(
            &tab,
            "document.querySelector('tr[data-dest-id] .dest-state').textContent === 'off'",
            Duration::from_secs(5),
        );
        std::thread::sleep(Duration::from_secs(1));
        let rec = nginx.recordings_of("e2e-out");
        assert_eq!(rec.len(), 1, "{:?}", nginx.recordings());
        let size = std::fs::metadata(&rec[0]).unwrap().len();
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(std::fs::metadata(&rec[0]).unwrap().len(), size, "nginx kept receiving after the toggle");
        let got = packet_hashes(&rec[0], "v");
        assert!(got.len() >= 30, "{} packets reached nginx", got.len());
        assert!(find_run(&packet_hashes(&clip, "v"), &got).is_some());
        let _ = wait_child(&mut ff, Duration::from_secs(30));

        // the recordings page lists the file, with a download link
        tab.navigate_to(&format!("http://127.0.0.1:{}/#/recordings", server.http)).unwrap();
        wait_js(
            &tab,
            "!!document.querySelector('tr[data-recording-id] a.rec-download') && \
             document.querySelector('tr[data-recording-id] a.rec-download').textContent.endsWith('.mp4')",
            Duration::from_secs(15),
        );
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-recordings.png"), png);
    }

    /// The dashboard shows streams a page (50) at a time with the total, and pages on.
    #[test]
    fn the_dashboard_pages_through_many_streams() {
        let tmp = TempDir::new("server-ui-pages");
        let server = Server::start(tmp.path());
        let admin = Client::login(server.http, "first-password-1");
        for i in 0..53 {
            assert_eq!(admin.post("/api/streams", json!({"name": format!("room-{i:02}")})).status, 201);
        }
        let (_browser, tab, _shot) = signed_in(&server);
        let rows = "[...document.querySelectorAll('#stream-list .stream-link')].map(a => a.textContent)";
        wait_js(&tab, "document.querySelectorAll('#stream-list .stream-link').length === 50", Duration::from_secs(10));
        let info = "document.querySelector('#stream-page-info')?.textContent.trim()";
        assert_eq!(js(&tab, info), json!("page 1 of 2 · 53 streams"));
        assert_eq!(js(&tab, &format!("{rows}[0]")), json!("room-00"));
        assert_eq!(js(&tab, "document.querySelector('#stream-page-prev').disabled"), json!(true));
        tab.wait_for_element("#stream-page-next").unwrap().click().unwrap();
        wait_js(&tab, "document.querySelectorAll('#stream-list .stream-link').length === 3", Duration::from_secs(10));
        assert_eq!(js(&tab, &format!("JSON.stringify({rows})")), json!(r#"["room-50","room-51","room-52"]"#));
        assert_eq!(js(&tab, info), json!("page 2 of 2 · 53 streams"));
        assert_eq!(js(&tab, "document.querySelector('#stream-page-next').disabled"), json!(true));
        tab.wait_for_element("#stream-page-prev").unwrap().click().unwrap();
        wait_js(&tab, "document.querySelectorAll('#stream-list .stream-link').length === 50", Duration::from_secs(10));
    }

    /// Names and chat text are shown as text: markup in a stream's, a destination's, a
    /// platform account's or a capture's name never runs or becomes an element, on the
    /// dashboard, the stream page, the settings and the recordings page.
    #[test]
    fn markup_in_names_is_shown_as_text_and_never_runs() {
        let tmp = TempDir::new("server-ui-xss");
        let google = FakeGoogle::start("rtmp://127.0.0.1:1/live2", &tmp.join("rec"));
        let mts = FakeMtsLink::start();
        assert!(wait_for_port(mts.port, Duration::from_secs(10)));
        let server = Server::start_with(tmp.path(), &platform_flags(&google, &mts));
        let admin = Client::login(server.http, "first-password-1");
        let evil = |n: u32| format!("<img src=x onerror=\"window.__pwned={n}\"><b id=injected{n}>x</b>");
        let s = admin.post("/api/streams", json!({"name": evil(1)}));
        assert_eq!(s.status, 201, "{}", s.body);
        let id = s.json()["id"].as_i64().unwrap();
        let d = json!({"name": evil(2), "url": "rtmp://127.0.0.1:1/app/key"});
        assert_eq!(admin.post(&format!("/api/streams/{id}/destinations"), d).status, 201);
        let p = admin.post("/api/platforms/mtslink", json!({"name": evil(3), "token": FakeMtsLink::TOKEN}));
        assert_eq!(p.status, 201, "{}", p.body);
        let c =
            json!({"url": "http://127.0.0.1:1/room", "name": evil(4), "chat_selector": "#chat", "presenter": false});
        let c = admin.post(&format!("/api/streams/{id}/captures"), c);
        assert_eq!(c.status, 201, "{}", c.body);
        let (_browser, tab, _shot) = signed_in(&server);
        for (page, shown) in
            [("#/", 1), (&format!("#/streams/{id}") as &str, 2), ("#/settings", 3), (&format!("#/streams/{id}"), 4)]
        {
            js(&tab, &format!("location.hash = {}", json!(page)));
            let expect = json!(format!("window.__pwned={shown}"));
            wait_js(&tab, &format!("document.body.innerText.includes({expect})"), Duration::from_secs(20));
            assert_eq!(js(&tab, "typeof window.__pwned"), json!("undefined"), "markup ran on {page}");
            let injected = js(&tab, "document.querySelectorAll('[id^=injected], img[src=x]').length");
            assert_eq!(injected, json!(0), "markup became elements on {page}");
        }
        let _ = admin.request("POST", &format!("/api/captures/{}/stop", c.json()["id"]), None);
    }
}
