//! Two server processes on one PostgreSQL database behind nginx's `stream` module as the
//! RTMP balancer, with nginx-rtmp as the destination: one Multistreamer to the operator,
//! and a node killed with SIGKILL costs seconds.

use super::*;

/// Polls `client`'s view of stream `id` until `done`; the last view.
fn wait_stream(client: &Client, id: i64, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    wait_json(client, &format!("/api/streams/{id}"), secs, done)
}

/// Publishes `clip` through the balancer until `accepted` says a node took it (a refused
/// publish ends by itself); the publisher, how many were refused and when the accepted
/// one started.
fn publish_until_accepted(clip: &Path, url: &str, secs: u64, accepted: impl Fn() -> bool) -> (Child, u32, Instant) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut refused = 0;
    loop {
        let mut ff = publish(clip, url);
        let started = Instant::now();
        // decided by the server's state, not by how long ffmpeg takes to give up
        while started.elapsed() < Duration::from_secs(10) && ff.try_wait().unwrap().is_none() {
            if accepted() {
                return (ff, refused, started);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = ff.kill();
        let _ = ff.wait();
        refused += 1;
        assert!(Instant::now() < deadline, "no node accepted the publish in {secs} s ({refused} refused)");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// GETs `path` until it answers 200; its body.
fn wait_json_text(client: &Client, path: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = client.get(path);
        if r.status == 200 {
            return r.body;
        }
        assert!(Instant::now() < deadline, "{path}: {} {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits for nginx to hold `count` recordings of `stream`, the last one with video; the last.
fn wait_recordings(nginx: &Nginx, stream: &str, count: usize, secs: u64) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let files = nginx.recordings_of(stream);
        if files.len() >= count
            && let Some(last) = files.last()
            && std::fs::metadata(last).map(|m| m.len()).unwrap_or(0) > 50_000
        {
            return last.clone();
        }
        assert!(Instant::now() < deadline, "nginx got {} recordings of {stream}, waiting for {count}", files.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_nodes_on_postgresql_behind_a_balancer_act_as_one_and_survive_a_kill() {
    let tmp = TempDir::new("scale-out");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 8, "640x360");
    let long_clip = tmp.join("long.mp4");
    make_clip(&long_clip, 40, "640x360");
    let pg = Postgres::shared();
    let url = pg.create_database();
    let node = |name: &str| {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let extra = ["--database-url", &url, "--node-id", name].map(String::from);
        Server::start_with(&dir, &extra)
    };
    let mut nodes = vec![node("node-a"), node("node-b")];
    let names = ["node-a", "node-b"];

    // nginx: the destination (RTMP) and the balancer in front of both nodes' RTMP ingest
    let lb = free_port();
    let balancer = format!(
        "stream {{ upstream multistreamer {{ server 127.0.0.1:{}; server 127.0.0.1:{}; }}\n\
         server {{ listen 127.0.0.1:{lb}; proxy_pass multistreamer; proxy_connect_timeout 1s; }} }}",
        nodes[0].rtmp, nodes[1].rtmp
    );
    let nginx = Nginx::start_with(&tmp.join("nginx"), free_port(), "app", &balancer);
    assert!(wait_for_port(lb, Duration::from_secs(10)), "the balancer did not listen");

    // One operator, either node: a stream and a destination made through node A.
    let a = Client::login(nodes[0].http, "first-password-1");
    let b = Client::login(nodes[1].http, "first-password-1");
    let listed = wait_json(&b, "/api/nodes", 10, |v| v.as_array().is_some_and(|n| n.len() == 2));
    assert_eq!(listed[0]["id"], json!("node-b"), "the answering node first: {listed}");
    assert_eq!(listed[0]["this_node"], json!(true));
    assert!(listed.as_array().unwrap().iter().all(|n| n["alive"] == json!(true)), "{listed}");
    assert_eq!(listed[1]["http_url"], json!(format!("http://127.0.0.1:{}", nodes[0].http)), "{listed}");
    let stream = a.post("/api/streams", json!({"name": "room-1"})).json();
    let id = stream["id"].as_i64().unwrap();
    // the original is recorded, on the disk of the node that runs the stream
    let r = a.request("PATCH", &format!("/api/streams/{id}"), Some(&json!({"record_mode": "original"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let key = stream["key"].as_str().unwrap().to_string();
    let dest = |name: &str| json!({"name": name, "url": format!("rtmp://127.0.0.1:{}/app/{name}", nginx.port)});
    assert_eq!(a.post(&format!("/api/streams/{id}/destinations"), dest("out-1")).status, 201);
    assert_eq!(b.get(&format!("/api/streams/{id}")).json()["destinations"][0]["name"], json!("out-1"));

    // Published through the balancer: live on whichever node got it, seen live from both.
    let via_lb = format!("rtmp://127.0.0.1:{lb}/live/{key}");
    let mut ff = publish(&clip, &via_lb);
    let seen = wait_stream(&a, id, 20, |s| s["live"] == json!(true) && s["destinations"][0]["state"] == json!("live"));
    let owner = seen["node"].as_str().expect("a live stream names its node").to_string();
    let (own, other) = if owner == "node-a" { (0, 1) } else { (1, 0) };
    assert_eq!(owner, names[own]);
    let other_client = if other == 0 { &a } else { &b };
    let remote = wait_stream(other_client, id, 10, |s| {
        s["live"] == json!(true) && s["destinations"][0]["state"] == json!("live")
    });
    assert_eq!(remote["node"], json!(owner), "{remote}");
    // HLS through the node that does not run the stream: asked of the owner, same session
    let master = wait_json_text(other_client, &format!("/hls/{id}/index.m3u8"), 10);
    assert!(master.contains("source/index.m3u8"), "{master}");
    let media = wait_json_text(other_client, &format!("/hls/{id}/source/index.m3u8"), 10);
    let first = media.lines().find(|l| l.ends_with(".ts")).expect("a segment").to_string();
    let (status, head, body) = other_client.download(&format!("/hls/{id}/source/{first}"), None);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body.first(), Some(&0x47), "a transport stream");
    assert_eq!(anon_port(&nodes[other]).get(&format!("/hls/{id}/index.m3u8")).status, 401);
    // the other node refuses the same key, naming the owner
    let mut second = publish(&clip, &format!("rtmp://127.0.0.1:{}/live/{key}", nodes[other].rtmp));
    assert!(!wait_child(&mut second, Duration::from_secs(20)).unwrap().success());
    assert!(nodes[other].log().contains(&format!("the stream is live on node {owner}")), "{}", nodes[other].log());

    // A destination added through the node that does not run the stream starts on the owner.
    let added = Instant::now();
    assert_eq!(other_client.post(&format!("/api/streams/{id}/destinations"), dest("out-2")).status, 201);
    let out2 = wait_recordings(&nginx, "out-2", 1, 10);
    eprintln!("a destination added through the other node reached nginx after {} ms", added.elapsed().as_millis());
    let _ = wait_child(&mut ff, Duration::from_secs(30));
    // bit-exact at the destination, and a clean run of it at the one added mid-stream
    let out1 = wait_recordings(&nginx, "out-1", 1, 10);
    std::thread::sleep(Duration::from_secs(2));
    assert_same_packets(&out1, &clip);
    let got = packet_hashes(&out2, "v");
    assert!(got.len() >= 30, "{} packets", got.len());
    assert!(find_run(&packet_hashes(&clip, "v"), &got).is_some(), "out-2 got a clean run of the stream");
    wait_stream(&a, id, 20, |s| s["live"] == json!(false) && s["node"].is_null());
    // The recording, listed and downloaded through either node: the same bytes.
    let listed = wait_json(other_client, "/api/recordings", 20, |v| {
        v.as_array().is_some_and(|r| r.len() == 1 && r[0]["recording"] == json!(false))
    });
    let download = listed[0]["download_url"].as_str().unwrap().to_string();
    let (status, _, from_owner) = [&a, &b][own].download(&download, None);
    assert_eq!(status, 200);
    let (status, head, from_other) = other_client.download(&download, Some("bytes=0-"));
    assert_eq!(status, 206, "{head}");
    assert!(
        from_owner.len() > 100_000 && from_owner == from_other,
        "{} and {} bytes",
        from_owner.len(),
        from_other.len()
    );
    let copy = tmp.join("recording.mp4");
    std::fs::write(&copy, &from_other).unwrap();
    assert_eq!(packet_hashes(&copy, "v"), packet_hashes(&clip, "v"), "the original, recorded where it ran");

    // Failover: the owner of a live stream is killed; the publisher comes back through the
    // balancer, the survivor takes the stream once the lease has expired and the
    // destinations carry on in a new session.
    let mut ff = publish(&long_clip, &via_lb);
    let seen = wait_stream(&a, id, 20, |s| s["live"] == json!(true) && s["destinations"][0]["state"] == json!("live"));
    let owner = seen["node"].as_str().unwrap().to_string();
    let (dead, survivor) = if owner == "node-a" { (0, 1) } else { (1, 0) };
    let before = nginx.recordings_of("out-1").len();
    let last = wait_recordings(&nginx, "out-1", before, 10);
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    let _ = nodes[dead].child.kill();
    let _ = nodes[dead].child.wait();
    let _ = wait_child(&mut ff, Duration::from_secs(20));
    let survivor_client = if survivor == 0 { &a } else { &b };
    // (until the dead node's lease expires, the survivor shows the stream as that node
    // last reported it)
    let taken = || {
        let s = survivor_client.get(&format!("/api/streams/{id}")).json();
        s["live"] == json!(true) && s["node"] == json!(names[survivor])
    };
    let (mut ff, refused, accepted) = publish_until_accepted(&long_clip, &via_lb, 60, taken);
    let accepted_ms = accepted.duration_since(killed).as_millis();
    let s = wait_stream(survivor_client, id, 20, |s| {
        s["live"] == json!(true)
            && s["node"] == json!(names[survivor])
            && s["destinations"][0]["state"] == json!("live")
    });
    assert_eq!(s["node"], json!(names[survivor]), "{s}");
    let resumed = wait_recordings(&nginx, "out-1", before + 1, 20);
    // the gap at the destination: the old session's last write to the new one's first
    let gap_ms = match (
        std::fs::metadata(&last).and_then(|m| m.modified()),
        std::fs::metadata(&resumed).and_then(|m| m.created()),
    ) {
        (Ok(end), Ok(start)) => start.duration_since(end).map_or(0, |d| d.as_millis()).to_string(),
        _ => "(no file birth times here)".into(),
    };
    eprintln!(
        "failover: {} killed; the publish that {} accepted started {accepted_ms} ms later ({refused} refused while \
         the lease held); gap at the destination {gap_ms} ms",
        names[dead], names[survivor]
    );
    assert!(packet_hashes(&last, "v").len() >= 60, "out-1 got the stream before the kill");
    std::thread::sleep(Duration::from_secs(3));
    let got = packet_hashes(&resumed, "v");
    assert!(got.len() >= 60, "{} packets after the takeover", got.len());
    assert!(find_run(&packet_hashes(&long_clip, "v"), &got).is_some(), "a clean run after the takeover");
    let listed = wait_json(survivor_client, "/api/nodes", 20, |v| {
        v.as_array().is_some_and(|n| n.iter().any(|n| n["id"] == json!(names[dead]) && n["alive"] == json!(false)))
    });
    assert_eq!(listed[0]["load"]["streams"], json!(1), "{listed}");
    let _ = ff.kill();
    let _ = ff.wait();
    nodes.remove(survivor).stop();
}
