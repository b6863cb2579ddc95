// Multistreamer web UI: plain JavaScript; the one library, hls.js (the preview player), is
// served by the server itself from /vendor/ (works offline).
"use strict";

const app = document.getElementById("app");
const nav = document.getElementById("nav");
let csrf = null;
let timers = [];
let liveFeed = null;
let streamFeed = null;
let preview = null;

const PRESETS = {
  custom: { label: "Custom RTMP/RTMPS", server: "" },
  youtube: { label: "YouTube", server: "rtmp://a.rtmp.youtube.com/live2" },
  webinar: { label: "webinar.ru / MTS Link", server: "" },
  twitch: { label: "Twitch", server: "rtmp://ingest.global-contribute.live-video.net/app" },
  facebook: { label: "Facebook (RTMPS)", server: "rtmps://live-api-s.facebook.com:443/rtmp" },
  vk: { label: "VK Video", server: "rtmp://ovsu.okcdn.ru/input" },
  rutube: { label: "Rutube", server: "rtmp://rtmp-lb.m9.rutube.ru/live_push" },
  telegram: { label: "Telegram (RTMPS)", server: "rtmps://dc4-1.rtmp.t.me/s" },
};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (r.status === 401 && path !== "/api/login") { showLogin(); throw new Error("signed out"); }
  if (!r.ok) { const e = new Error(data?.error?.message || r.statusText); e.field = data?.error?.field; e.status = r.status; throw e; }
  return data;
}

function clearTimers() {
  timers.forEach(clearInterval); timers = [];
  if (liveFeed) { liveFeed.close(); liveFeed = null; }
  if (streamFeed) { streamFeed.close(); streamFeed = null; }
  if (preview) { preview.stop(); preview = null; }
}

// ---------- preview player (hls.js, loaded on first use) ----------
let hlsLoading = null;
function loadHls() {
  if (window.Hls) return Promise.resolve(window.Hls);
  if (!hlsLoading) {
    hlsLoading = new Promise((resolve, reject) => {
      const script = el("script", { src: "/vendor/hls.light.min.js" });
      script.onload = () => resolve(window.Hls);
      script.onerror = () => { hlsLoading = null; reject(new Error("the player could not be loaded")); };
      document.head.append(script);
    });
  }
  return hlsLoading;
}

// Plays /hls/ID/index.m3u8 (adaptive) or one variant in `video`; restarts after errors
// while the stream is live.
function PreviewPlayer(video, note) {
  let hls = null, url = null;
  const stop = () => { if (hls) { hls.destroy(); hls = null; } url = null; video.removeAttribute("src"); };
  const play = async (src) => {
    if (src === url && hls) return;
    stop(); url = src;
    let Hls;
    try { Hls = await loadHls(); } catch (e) { note.textContent = e.message; return; }
    if (!Hls.isSupported()) { note.textContent = "This browser cannot play HLS (no Media Source Extensions)."; return; }
    if (url !== src) return;
    hls = new Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 3, levelLoadingMaxRetry: 4 });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.fatal) { note.textContent = `Player: ${data.details}; retrying…`; stop(); }
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => { note.textContent = ""; video.play().catch(() => {}); });
    hls.loadSource(src); hls.attachMedia(video);
  };
  return { play, stop, get playing() { return hls !== null; } };
}

function fieldError(form, err) {
  form.querySelectorAll(".error").forEach((e) => (e.textContent = ""));
  form.querySelectorAll("input").forEach((i) => i.classList.remove("invalid"));
  const target = err.field && form.querySelector(`[data-error-for="${err.field}"]`);
  (target || form.querySelector("[data-error-for=form]")).textContent = err.message;
  const input = err.field && form.querySelector(`[name="${err.field}"]`);
  if (input) input.classList.add("invalid");
}

function field(label, input, errFor) {
  return el("div", { class: "field" }, el("label", { for: input.id }, label), input, el("span", { class: "error", "data-error-for": errFor }));
}

function fmtRate(bps) {
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " Mbit/s";
  if (bps >= 1e3) return (bps / 1e3).toFixed(0) + " kbit/s";
  return bps + " bit/s";
}

// Reconnections, and the attempts that failed: a destination that never gets through shows
// its failed attempts rather than a reassuring 0.
function fmtReconnects(d) {
  return d.failed_connects ? `${d.reconnects} (${d.failed_connects} failed)` : String(d.reconnects);
}

function fmtBytes(n) {
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; let v = n;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return i ? `${v.toFixed(1)} ${u[i]}` : `${n} B`;
}
function fmtDuration(ms) {
  const s = Math.round(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + ":" + String(s % 60).padStart(2, "0");
}
function badge(state) { return el("span", { class: "badge " + state }, state); }

// ---------- sign in ----------
function showLogin() {
  clearTimers(); nav.hidden = true; csrf = null;
  const form = el("form", { class: "login", id: "login-form" },
    el("h1", {}, "Sign in"),
    field("Username", el("input", { id: "login-username", name: "username", autocomplete: "username", required: true }), "username"),
    field("Password", el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true }), "password"),
    el("span", { class: "error", "data-error-for": "form" }),
    el("button", { class: "primary", id: "login-submit", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/login", { username: form.username.value, password: form.password.value });
      csrf = r.csrf_token; nav.hidden = false; location.hash = "#/"; route();
    } catch (e) { fieldError(form, e); }
  });
  app.replaceChildren(form);
}

// ---------- charts ----------
class Chart {
  constructor(id, title, unit, series) {
    this.canvas = el("canvas", { id, "data-samples": "0", width: 600, height: 160 });
    this.value = el("span", {}, "–");
    this.node = el("div", { class: "chart" }, el("h3", {}, title, this.value), this.canvas);
    this.unit = unit; this.series = series; this.points = [];
  }
  push(values, label) {
    this.points.push(values); if (this.points.length > 300) this.points.shift();
    this.canvas.dataset.samples = String(Number(this.canvas.dataset.samples) + 1);
    this.value.textContent = label; this.draw();
  }
  draw() {
    const c = this.canvas, g = c.getContext("2d"), w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    const max = Math.max(this.unit === "%" ? 100 : 1, ...this.points.flat());
    g.strokeStyle = "#e3e6ea"; g.lineWidth = 1;
    for (let i = 1; i < 4; i++) { g.beginPath(); g.moveTo(0, (h * i) / 4); g.lineTo(w, (h * i) / 4); g.stroke(); }
    const colors = ["#2457d6", "#1f8a4c", "#b86e00"];
    this.series.forEach((_, s) => {
      g.strokeStyle = colors[s % colors.length]; g.lineWidth = 2; g.beginPath();
      this.points.forEach((p, i) => {
        const x = (w * i) / 299, y = h - (h * p[s]) / max;
        i ? g.lineTo(x, y) : g.moveTo(x, y);
      });
      g.stroke();
    });
  }
}

function loadCharts() {
  const cpu = new Chart("chart-cpu", "CPU", "%", ["cpu"]);
  const gpu = new Chart("chart-gpu", "GPU", "%", ["util", "enc", "dec"]);
  const disk = new Chart("chart-disk", "Disk (read / write)", "MB/s", ["r", "w"]);
  const net = new Chart("chart-net", "Network (rx / tx)", "Mbit/s", ["rx", "tx"]);
  const add = (s) => {
    cpu.push([s.cpu.total_percent], s.cpu.total_percent.toFixed(0) + " %");
    if (s.gpus.length) {
      const g0 = s.gpus[0];
      gpu.push([g0.utilization_percent, g0.encoder_percent ?? 0, g0.decoder_percent ?? 0], `${g0.utilization_percent} % · enc ${g0.encoder_percent ?? "–"} · dec ${g0.decoder_percent ?? "–"}`);
    } else {
      gpu.push([0, 0, 0], s.gpu_status || "no GPU detected");
    }
    const r = s.disks.reduce((a, d) => a + d.read_bytes_per_s, 0) / 1e6, w = s.disks.reduce((a, d) => a + d.write_bytes_per_s, 0) / 1e6;
    disk.push([r, w], `${r.toFixed(1)} / ${w.toFixed(1)} MB/s`);
    const ext = s.networks.filter((n) => n.interface !== "lo");
    const rx = ext.reduce((a, n) => a + n.rx_bytes_per_s, 0) * 8 / 1e6, tx = ext.reduce((a, n) => a + n.tx_bytes_per_s, 0) * 8 / 1e6;
    net.push([rx, tx], `${rx.toFixed(1)} / ${tx.toFixed(1)} Mbit/s`);
  };
  api("GET", "/api/system/history").then((h) => h.forEach(add)).catch(() => {});
  liveFeed = new EventSource("/api/system/live");
  liveFeed.addEventListener("sample", (ev) => add(JSON.parse(ev.data)));
  return el("section", {}, el("h2", {}, "Machine load"), el("div", { class: "charts" }, cpu.node, gpu.node, disk.node, net.node));
}

// ---------- dashboard ----------
async function showDashboard() {
  const list = el("tbody", { id: "stream-list" });
  const form = el("form", { class: "inline", id: "new-stream-form" },
    field("New stream", el("input", { id: "new-stream-name", name: "name", placeholder: "e.g. Conference hall A" }), "name"),
    el("button", { class: "primary", id: "new-stream-submit", type: "submit" }, "Create"),
    el("span", { class: "error", "data-error-for": "form" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { const s = await api("POST", "/api/streams", { name: form.name.value }); location.hash = "#/streams/" + s.id; }
    catch (e) { fieldError(form, e); }
  });
  const refresh = async () => {
    const streams = await api("GET", "/api/streams");
    list.replaceChildren(...streams.map((s) => el("tr", { "data-stream-id": s.id },
      el("td", {}, el("a", { class: "stream-link", href: "#/streams/" + s.id }, s.name)),
      el("td", {}, badge(s.live ? "live" : "offline")),
      el("td", {}, s.destinations.length ? s.destinations.map((d) => el("div", {}, d.name, " ", badge(d.state), " ", fmtRate(d.bitrate_bps), ` · reconnects ${fmtReconnects(d)}`)) : el("span", { class: "muted" }, "no destinations")))));
    if (!streams.length) list.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No streams yet.")));
  };
  app.replaceChildren(
    el("h1", {}, "Dashboard"),
    el("section", {}, el("h2", {}, "Streams"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Stream"), el("th", {}, "Ingest"), el("th", {}, "Destinations"))), list), form),
    loadCharts());
  await refresh();
  timers.push(setInterval(() => refresh().catch(() => {}), 2000));
}

// ---------- stream page ----------
function copyRow(id, value) {
  const input = el("input", { id, readonly: true, value });
  const btn = el("button", { class: "small", type: "button", onclick: () => { input.select(); navigator.clipboard?.writeText(value).catch(() => document.execCommand("copy")); btn.textContent = "Copied"; setTimeout(() => (btn.textContent = "Copy"), 1200); } }, "Copy");
  return el("div", { class: "copy-row" }, input, btn);
}

async function showStream(id) {
  const s = await api("GET", `/api/streams/${id}`);
  const server = s.rtmp_url.slice(0, s.rtmp_url.length - s.key.length - 1);
  const liveBadge = el("span", { id: "stream-live", class: "badge" }, "…");
  const rows = el("tbody", { id: "dest-list" });
  const preset = el("select", { id: "dest-preset", name: "preset" }, Object.entries(PRESETS).map(([k, p]) => el("option", { value: k }, p.label)));
  const rendition = el("select", { id: "dest-rendition", name: "rendition" },
    el("option", { value: "source" }, "Source (as published)"), ...s.rendition_names.map((n) => el("option", { value: n }, n)));
  const form = el("form", { class: "inline", id: "dest-form" },
    field("Platform", preset, "preset"),
    field("Sends", rendition, "rendition"),
    field("Name", el("input", { id: "dest-name", name: "name", placeholder: "YouTube main" }), "name"),
    field("Server URL", el("input", { id: "dest-server", name: "url", placeholder: "rtmp://host/app" }), "url"),
    field("Stream key", el("input", { id: "dest-key", name: "key", type: "password", autocomplete: "off" }), "key"),
    el("button", { class: "primary", id: "dest-submit", type: "submit" }, "Add destination"),
    el("span", { class: "error", "data-error-for": "form" }));
  preset.addEventListener("change", () => {
    const p = PRESETS[preset.value]; form.url.value = p.server;
    if (!form.name.value || Object.values(PRESETS).some((x) => x.label === form.name.value)) form.name.value = preset.value === "custom" ? "" : p.label;
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const base = form.url.value.trim().replace(/\/+$/, "");
    const key = form.key.value.trim();
    try {
      await api("POST", `/api/streams/${id}/destinations`, { name: form.name.value, url: key ? `${base}/${key}` : base, enabled: true, rendition: rendition.value });
      form.reset(); await refresh();
    } catch (e) { fieldError(form, e); }
  });
  // transcoding ladder
  const ladderForm = el("form", { class: "inline", id: "ladder-form" },
    field("Renditions (e.g. 1080p,720p,480p or 1280x720@30:3000k; empty = none)", el("input", { id: "ladder-input", name: "ladder", value: s.ladder, placeholder: "1080p,720p,480p" }), "ladder"),
    el("button", { class: "primary", id: "ladder-submit", type: "submit" }, "Save ladder"),
    el("span", { class: "error", "data-error-for": "form" }));
  ladderForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("PATCH", `/api/streams/${id}`, { ladder: ladderForm.ladder.value }); await route(); }
    catch (e) { fieldError(ladderForm, e); }
  });
  // or pull from a camera
  const pullForm = el("form", { class: "inline", id: "pull-form" },
    field("Or pull from a camera or an HLS stream (rtsp://user:pass@camera/stream or https://…/index.m3u8; empty = publishers push)", el("input", { id: "pull-url", name: "pull_url", value: s.pull_url, placeholder: "rtsp://… or https://….m3u8" }), "pull_url"),
    el("button", { class: "primary", id: "pull-save", type: "submit" }, "Save source"),
    el("span", { class: "error", "data-error-for": "form" }));
  pullForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("PATCH", `/api/streams/${id}`, { pull_url: pullForm.pull_url.value }); fieldError(pullForm, { message: "Saved." }); await refresh(); }
    catch (e) { fieldError(pullForm, e); }
  });
  const pullStatus = el("div", { class: "muted", id: "pull-status" });
  // recording
  const modeSel = el("select", { id: "record-mode", name: "record_mode" },
    ["off", "original", "raw"].map((m) => el("option", { value: m, selected: m === s.record_mode },
      { off: "Off", original: "Original (not re-encoded, crash-safe MP4)", raw: "Uncompressed (raw video + PCM)" }[m])));
  const recRendition = el("select", { id: "record-rendition", name: "record_rendition" },
    el("option", { value: "source" }, "Source"), ...s.rendition_names.map((n) => el("option", { value: n, selected: n === s.record_rendition }, n)));
  const recForm = el("form", { class: "inline", id: "record-form" },
    field("Record every session", modeSel, "record_mode"), field("Of", recRendition, "record_rendition"),
    el("button", { class: "primary", id: "record-save", type: "submit" }, "Save"),
    el("span", { class: "error", "data-error-for": "form" }));
  recForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("PATCH", `/api/streams/${id}`, { record_mode: modeSel.value, record_rendition: recRendition.value }); fieldError(recForm, { message: "Saved." }); await refresh(); }
    catch (e) { fieldError(recForm, e); }
  });
  const recNow = el("button", { class: "small", id: "record-now", type: "button" }, "Record now");
  const recStatus = el("div", { class: "muted", id: "record-status" });
  let recActive = false;
  recNow.addEventListener("click", async () => {
    recNow.disabled = true;
    try { await api("POST", `/api/streams/${id}/recording`, { active: !recActive }); } catch (e) { alert(e.message); }
    recNow.disabled = false; await refresh();
  });
  // live preview of the source or a rendition
  const video = el("video", { id: "preview", controls: true, muted: true, autoplay: true, playsinline: true, width: 640 });
  const previewNote = el("div", { class: "muted", id: "preview-note" });
  const previewSel = el("select", { id: "preview-variant" },
    el("option", { value: "auto" }, "Adaptive (all renditions)"), el("option", { value: "source" }, "Source"),
    ...s.rendition_names.map((n) => el("option", { value: n }, n)));
  preview = PreviewPlayer(video, previewNote);
  const previewUrl = () => previewSel.value === "auto" ? s.hls_url : `/hls/${id}/${encodeURIComponent(previewSel.value)}/index.m3u8`;
  previewSel.addEventListener("change", () => { if (preview.playing) preview.play(previewUrl()); });
  const rungRows = el("tbody", { id: "rendition-list" });
  const ladderNote = el("div", { class: "muted", id: "ladder-note" });
  let shape = null;
  // Live state arrives over server-sent events (one per second); refresh() re-reads it at
  // once after an action.
  const refresh = async () => render(await api("GET", `/api/streams/${id}`));
  const render = (cur) => {
    rungRows.replaceChildren(...cur.renditions.map((r) => el("tr", { "data-rendition": r.name },
      el("td", {}, r.name), el("td", {}, `${r.width}×${r.height}`), el("td", {}, `${r.bitrate_kbps} kbit/s`),
      el("td", { class: "rendition-frames" }, String(r.frames_encoded)), el("td", {}, String(r.frames_dropped)))));
    const notes = [];
    if (cur.ladder && !cur.live) notes.push("Transcoding starts when the stream goes live.");
    if (cur.skipped_renditions.length) notes.push(`Skipped (above the source's resolution): ${cur.skipped_renditions.join(", ")}.`);
    if (cur.ladder_input_dropped) notes.push(`${cur.ladder_input_dropped} source packets were dropped before decoding: this machine cannot keep up with the ladder (use a faster preset or fewer renditions).`);
    if (cur.ladder_error) notes.push(`Transcoding stopped: ${cur.ladder_error}`);
    ladderNote.textContent = notes.join(" ");
    pullStatus.replaceChildren(cur.pull
      ? el("span", {}, "Pull: ", badge(cur.pull.state), ` · ${cur.pull.frames} frames · reconnects ${cur.pull.reconnects}` + (cur.pull.last_error && cur.pull.state !== "live" ? ` · last error: ${cur.pull.last_error}` : ""))
      : el("span", {}, ""));
    const r = cur.recording;
    recActive = r.active;
    recNow.textContent = r.active ? "Stop recording" : "Record now";
    // With recording set to "off", the operator records ad hoc; otherwise every session is recorded.
    recNow.hidden = !cur.live || cur.record_mode !== "off";
    recStatus.replaceChildren(r.active
      ? el("span", {}, badge("recording"), ` ${r.kind} → ${r.file || "waiting for a keyframe"} · ${fmtBytes(r.bytes_written)}` + (r.frames_dropped ? ` · ${r.frames_dropped} dropped` : ""))
      : el("span", {}, r.error ? `Not recording: ${r.error}` : (cur.record_mode !== "off" ? "Records when the stream goes live." : "Not recording.")));
    liveBadge.textContent = cur.live ? "live" : "offline"; liveBadge.className = "badge " + (cur.live ? "live" : "");
    const ready = cur.live && cur.hls_variants.some((v) => !v.ended && (previewSel.value === "auto" || v.name === previewSel.value));
    if (ready && !preview.playing) preview.play(previewUrl());
    if (!cur.live && preview.playing) preview.stop();
    if (!cur.live) previewNote.textContent = "The preview starts when the stream is live.";
    else if (!ready) previewNote.textContent = "Waiting for the first segment…";
    const newShape = JSON.stringify(cur.destinations.map((d) => [d.id, d.name, d.url, d.enabled, d.rendition]));
    if (newShape === shape) {
      // same rows: update the live figures in place so controls are never replaced under the pointer
      for (const d of cur.destinations) {
        const tr = rows.querySelector(`tr[data-dest-id="${d.id}"]`);
        if (!tr) continue;
        tr.querySelector(".dest-state").replaceChildren(badge(d.state));
        tr.querySelector(".dest-rate").textContent = fmtRate(d.bitrate_bps);
        tr.querySelector(".dest-reconnects").textContent = fmtReconnects(d);
        tr.querySelector(".dest-drops").textContent = String(d.dropped);
        tr.querySelector(".dest-error").textContent = d.last_error && d.state !== "live" ? d.last_error : "";
      }
      return;
    }
    shape = newShape;
    rows.replaceChildren(...cur.destinations.map((d) => {
      const toggle = el("input", { type: "checkbox", class: "dest-toggle", checked: d.enabled, title: "On/off" });
      toggle.addEventListener("change", async () => {
        toggle.disabled = true;
        try { await api("PATCH", `/api/streams/${id}/destinations/${d.id}`, { enabled: toggle.checked }); } catch (e) { alert(e.message); }
        await refresh();
      });
      const del = el("button", { class: "small dest-delete", type: "button" }, "Delete");
      del.addEventListener("click", async () => { if (confirm(`Delete destination "${d.name}"?`)) { await api("DELETE", `/api/streams/${id}/destinations/${d.id}`); await refresh(); } });
      const edit = el("button", { class: "small dest-edit", type: "button" }, "Edit");
      edit.addEventListener("click", async () => {
        const url = prompt(`New URL for "${d.name}" (including the stream key)`, "");
        if (url) { try { await api("PATCH", `/api/streams/${id}/destinations/${d.id}`, { url }); await refresh(); } catch (e) { alert(e.message); } }
      });
      return el("tr", { "data-dest-id": d.id },
        el("td", {}, toggle), el("td", {}, d.name), el("td", { class: "muted dest-url" }, d.url), el("td", { class: "dest-rendition" }, d.rendition),
        el("td", { class: "dest-state" }, badge(d.state)), el("td", { class: "dest-rate" }, fmtRate(d.bitrate_bps)),
        el("td", { class: "dest-reconnects" }, fmtReconnects(d)), el("td", { class: "dest-drops" }, String(d.dropped)),
        el("td", { class: "muted dest-error" }, d.last_error && d.state !== "live" ? d.last_error : ""), el("td", {}, edit, " ", del));
    }));
    if (!cur.destinations.length) rows.replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No destinations yet: add YouTube, webinar.ru or any RTMP server below.")));
  };
  const newKey = el("button", { class: "small", id: "regenerate-key", type: "button" }, "New stream key");
  newKey.addEventListener("click", async () => {
    if (!confirm("Replace the stream key? Publishers must use the new one, and the playback link changes.")) return;
    try { await api("PATCH", `/api/streams/${id}`, { regenerate_key: true }); await route(); } catch (e) { alert(e.message); }
  });
  const delStream = el("button", { class: "small", type: "button" }, "Delete stream");
  delStream.addEventListener("click", async () => { if (confirm(`Delete stream "${s.name}"? Its publisher is disconnected.`)) { await api("DELETE", `/api/streams/${id}`); location.hash = "#/"; } });
  app.replaceChildren(
    el("h1", {}, s.name, " ", liveBadge),
    el("section", {}, el("h2", {}, "Ingest (OBS: Settings → Stream → Custom)"),
      el("div", { class: "muted" }, "Full URL"), copyRow("ingest-url", s.rtmp_url),
      el("div", { class: "muted" }, "Server"), copyRow("ingest-server", server),
      el("div", { class: "muted" }, "Stream key"), copyRow("ingest-key", s.key), newKey,
      ...(s.rtsp_url ? [el("div", { class: "muted" }, "RTSP (ffmpeg -f rtsp, GStreamer rtspclientsink; TCP)"), copyRow("ingest-rtsp", s.rtsp_url)] : []),
      pullForm, pullStatus),
    el("section", {}, el("h2", {}, "Preview"), el("div", { class: "copy-row" }, field("Watch", previewSel, "variant")), video, previewNote,
      el("div", { class: "muted" }, "Playback link for other players (VLC, a web page): anyone with it can watch; a new stream key revokes it"),
      copyRow("hls-play-url", location.origin + s.hls_play_path)),
    el("section", {}, el("h2", {}, "Destinations"),
      el("div", { class: "table-wrap" }, el("table", { class: "destinations" }, el("thead", {}, el("tr", {}, ["On", "Name", "URL", "Sends", "State", "Bitrate", "Reconnects", "Drops", "Last error", ""].map((h) => el("th", {}, h)))), rows)), form),
    el("section", {}, el("h2", {}, "Recording"), recForm, el("div", { class: "copy-row" }, recNow, recStatus),
      el("p", { class: "muted" }, "Files are listed under ", el("a", { href: "#/recordings" }, "Recordings"), ".")),
    el("section", {}, el("h2", {}, "Transcoding"),
      el("p", { class: "muted" }, "Decoded once, each rendition encoded once (H.264, keyframes every 2 s on the same frames) whatever the number of destinations that use it."),
      ladderForm, ladderNote,
      el("table", {}, el("thead", {}, el("tr", {}, ["Rendition", "Size", "Target", "Frames", "Dropped"].map((h) => el("th", {}, h)))), rungRows)),
    el("section", {}, delStream));
  await refresh();
  streamFeed = new EventSource(`/api/streams/${id}/live`);
  streamFeed.addEventListener("stream", (ev) => render(JSON.parse(ev.data)));
}

// ---------- recordings ----------
async function showRecordings() {
  const rows = el("tbody", { id: "recording-list" });
  const refresh = async () => {
    const recs = await api("GET", "/api/recordings");
    rows.replaceChildren(...recs.map((r) => {
      const del = el("button", { class: "small rec-delete", type: "button", disabled: r.recording }, "Delete");
      del.addEventListener("click", async () => {
        if (!confirm(`Delete ${r.file}?`)) return;
        try { await api("DELETE", `/api/recordings/${r.id}`); } catch (e) { alert(e.message); }
        await refresh();
      });
      return el("tr", { "data-recording-id": r.id },
        el("td", {}, r.stream), el("td", {}, new Date(r.started_at * 1000).toLocaleString()),
        el("td", { class: "rec-duration" }, r.recording ? "…" : fmtDuration(r.duration_ms)),
        el("td", { class: "rec-size" }, fmtBytes(r.bytes)), el("td", {}, r.kind),
        el("td", {}, r.recording ? badge("recording") : ""),
        el("td", {}, el("a", { class: "rec-download", href: r.download_url, download: r.file }, r.file)), el("td", {}, del));
    }));
    if (!recs.length) rows.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No recordings yet: turn recording on for a stream, or press Record now while it is live.")));
  };
  app.replaceChildren(el("h1", {}, "Recordings"),
    el("section", {}, el("table", {}, el("thead", {}, el("tr", {}, ["Stream", "Started", "Duration", "Size", "Kind", "", "File", ""].map((h) => el("th", {}, h)))), rows)));
  await refresh();
  timers.push(setInterval(() => refresh().catch(() => {}), 2000));
}

// ---------- settings ----------
function showSettings() {
  const form = el("form", { class: "inline", id: "password-form" },
    field("Current password", el("input", { id: "pw-current", name: "current", type: "password", autocomplete: "current-password" }), "current"),
    field("New password (10+ characters)", el("input", { id: "pw-new", name: "new", type: "password", autocomplete: "new-password" }), "new"),
    el("button", { class: "primary", id: "pw-submit", type: "submit" }, "Change password"),
    el("span", { class: "error", "data-error-for": "form" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/api/password", { current: form.current.value, new: form.new.value }); form.reset(); fieldError(form, { message: "Password changed." }); }
    catch (e) { fieldError(form, e); }
  });
  app.replaceChildren(el("h1", {}, "Settings"), el("section", {}, el("h2", {}, "Password"), form));
}

// ---------- routing ----------
async function route() {
  clearTimers();
  if (!csrf) {
    try { csrf = (await api("GET", "/api/me")).csrf_token; nav.hidden = false; } catch { return; }
  }
  const h = location.hash || "#/";
  const m = h.match(/^#\/streams\/(\d+)/);
  try {
    if (m) await showStream(m[1]);
    else if (h.startsWith("#/settings")) showSettings();
    else if (h.startsWith("#/recordings")) await showRecordings();
    else await showDashboard();
  } catch (e) {
    if (e.message !== "signed out") app.replaceChildren(el("section", {}, el("p", { class: "error" }, e.message)));
  }
}

document.getElementById("logout").addEventListener("click", async () => { await api("POST", "/api/logout", {}).catch(() => {}); csrf = null; showLogin(); });
window.addEventListener("hashchange", route);
route();
