// A stream's page: ingest addresses, preview, destinations, recording, transcoding. Its
// live state arrives over server-sent events.
import { api } from "./api.js";
import { app, badge, copyRow, el, field, fieldError, fmtBytes, fmtRate, fmtReconnects } from "./dom.js";
import { feed, onLeave, rerender } from "./page.js";
import { broadcastsSection } from "./broadcasts.js";
import { capturesSection } from "./captures.js";
import { goLiveSection } from "./golive.js";
import { PreviewPlayer } from "./preview.js";

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

export async function showStream(id) {
  const s = await api("GET", `/api/streams/${id}`);
  const server = s.rtmp_url.slice(0, s.rtmp_url.length - s.key.length - 1);
  const liveBadge = el("span", { id: "stream-live", class: "badge" }, "…");
  const rows = el("tbody", { id: "dest-list" });
  const preset = el("select", { id: "dest-preset", name: "preset" }, Object.entries(PRESETS).map(([k, p]) => el("option", { value: k }, p.label)));
  const rendition = el("select", { id: "dest-rendition", name: "rendition" },
    el("option", { value: "source" }, "Source (as published)"), ...s.rendition_names.map((n) => el("option", { value: n }, n)));
  const enhanced = el("select", { id: "dest-enhanced", name: "enhanced_rtmp", title: "HEVC and AV1 sources go over Enhanced RTMP" },
    el("option", { value: "negotiate" }, "If it says it takes them (or YouTube)"), el("option", { value: "assume" }, "Always"));
  const form = el("form", { class: "inline", id: "dest-form" },
    field("Platform", preset, "preset"),
    field("Sends", rendition, "rendition"),
    field("HEVC/AV1", enhanced, "enhanced_rtmp"),
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
      await api("POST", `/api/streams/${id}/destinations`, { name: form.name.value, url: key ? `${base}/${key}` : base, enabled: true, rendition: rendition.value, enhanced_rtmp: enhanced.value });
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
    try { await api("PATCH", `/api/streams/${id}`, { ladder: ladderForm.ladder.value }); rerender(); }
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
  // SRT: the passphrase publishers encrypt with
  const srtForm = el("form", { class: "inline", id: "srt-form" },
    field("SRT passphrase (10 to 79 letters, digits, - _ . ~; empty = no encryption)", el("input", { id: "srt-passphrase", name: "srt_passphrase", value: s.srt_passphrase, autocomplete: "off" }), "srt_passphrase"),
    el("button", { class: "primary", id: "srt-save", type: "submit" }, "Save passphrase"),
    el("span", { class: "error", "data-error-for": "form" }));
  srtForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("PATCH", `/api/streams/${id}`, { srt_passphrase: srtForm.srt_passphrase.value }); fieldError(srtForm, { message: "Saved." }); await refresh(); }
    catch (e) { fieldError(srtForm, e); }
  });
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
  const preview = PreviewPlayer(video, previewNote);
  onLeave(() => preview.stop());
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
    // with several nodes, the one running the stream
    liveBadge.textContent = cur.live ? (cur.node ? `live on ${cur.node}` : "live") : "offline"; liveBadge.className = "badge " + (cur.live ? "live" : "");
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
    try { await api("PATCH", `/api/streams/${id}`, { regenerate_key: true }); rerender(); } catch (e) { alert(e.message); }
  });
  const broadcasts = await broadcastsSection(s);
  const captures = await capturesSection(s);
  const delStream = el("button", { class: "small", type: "button" }, "Delete stream");
  delStream.addEventListener("click", async () => { if (confirm(`Delete stream "${s.name}"? Its publisher is disconnected.`)) { await api("DELETE", `/api/streams/${id}`); location.hash = "#/"; } });
  app.replaceChildren(
    el("h1", {}, s.name, " ", liveBadge),
    el("section", {}, el("h2", {}, "Ingest (OBS: Settings → Stream → Custom)"),
      el("div", { class: "muted" }, "Full URL"), copyRow("ingest-url", s.rtmp_url),
      el("div", { class: "muted" }, "Server"), copyRow("ingest-server", server),
      el("div", { class: "muted" }, "Stream key"), copyRow("ingest-key", s.key), newKey,
      ...(s.rtsp_url ? [el("div", { class: "muted" }, "RTSP (ffmpeg -f rtsp, GStreamer rtspclientsink; TCP)"), copyRow("ingest-rtsp", s.rtsp_url)] : []),
      ...(s.srt_url ? [el("div", { class: "muted" }, "SRT (OBS: Settings → Stream → Custom, the whole URL as Server; MPEG-TS, H.264 + AAC)"), copyRow("ingest-srt", s.srt_url + (s.srt_passphrase ? "&passphrase=" + s.srt_passphrase : "")), srtForm] : []),
      pullForm, pullStatus),
    goLiveSection(s),
    el("section", {}, el("h2", {}, "Preview"), el("div", { class: "copy-row" }, field("Watch", previewSel, "variant")), video, previewNote,
      el("div", { class: "muted" }, "Playback link for other players (VLC, a web page): anyone with it can watch; a new stream key revokes it"),
      copyRow("hls-play-url", location.origin + s.hls_play_path)),
    el("section", {}, el("h2", {}, "Destinations"),
      el("div", { class: "table-wrap" }, el("table", { class: "destinations" }, el("thead", {}, el("tr", {}, ["On", "Name", "URL", "Sends", "State", "Bitrate", "Reconnects", "Drops", "Last error", ""].map((h) => el("th", {}, h)))), rows)), form),
    broadcasts,
    captures,
    el("section", {}, el("h2", {}, "Recording"), recForm, el("div", { class: "copy-row" }, recNow, recStatus),
      el("p", { class: "muted" }, "Files are listed under ", el("a", { href: "#/recordings" }, "Recordings"), ".")),
    el("section", {}, el("h2", {}, "Transcoding"),
      el("p", { class: "muted" }, "Decoded once, each rendition encoded once (H.264, keyframes every 2 s on the same frames) whatever the number of destinations that use it."),
      ladderForm, ladderNote,
      el("table", {}, el("thead", {}, el("tr", {}, ["Rendition", "Size", "Target", "Frames", "Dropped"].map((h) => el("th", {}, h)))), rungRows)),
    el("section", {}, delStream));
  await refresh();
  feed(`/api/streams/${id}/live`).addEventListener("stream", (ev) => render(JSON.parse(ev.data)));
}
