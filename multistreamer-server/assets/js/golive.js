// Going live from the stream page itself: camera and microphone, or a screen, published to
// the server over WHIP (WebRTC). The broadcast belongs to the browser tab, not to the page:
// moving to another page keeps it going; Stop, or closing the tab, ends it.
import { copyRow, el } from "./dom.js";

// The tab's broadcast: { streamId, pc, media, location, state }.
let current = null;

function setState(text) {
  if (current) current.state = text;
  const e = document.getElementById("golive-state");
  if (e) e.textContent = text;
}

async function capture(kind) {
  if (kind === "screen") {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: true });
    // the microphone beside the screen, when the screen brings no sound of its own
    if (!screen.getAudioTracks().length) {
      try {
        const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
        mic.getAudioTracks().forEach((t) => screen.addTrack(t));
      } catch (_) { /* a screen without sound */ }
    }
    return screen;
  }
  return navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 }, audio: true });
}

// Resolves once the offer holds every candidate (WHIP without trickle), or after 2 s.
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000);
  });
}

async function start(s, kind) {
  const media = await capture(kind);
  const pc = new RTCPeerConnection();
  current = { streamId: s.id, pc, media, location: null, state: "" };
  setState("connecting…");
  for (const track of media.getTracks()) {
    const tr = pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
    if (track.kind === "video") {
      // the server takes H.264 as sent (no transcoding on the way in)
      const h264 = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType === "video/H264");
      if (!h264.length) throw new Error("this browser cannot send H.264 video");
      tr.setCodecPreferences(h264);
      const params = tr.sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      params.encodings = (params.encodings && params.encodings.length ? params.encodings : [{}]).map((e) => ({ ...e, maxBitrate: 4_000_000 }));
      await tr.sender.setParameters(params).catch(() => {});
    }
  }
  pc.addEventListener("connectionstatechange", () => {
    const st = pc.connectionState;
    if (st === "connected") setState("live from this browser");
    else if (st === "failed") setState("the connection failed: is the server's WHIP UDP port reachable?");
    else if (st === "disconnected") setState("connection interrupted…");
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(s.whip_path, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + s.key },
    body: pc.localDescription.sdp,
  });
  const text = await r.text();
  if (r.status !== 201) {
    let message = text;
    try { message = JSON.parse(text).error.message; } catch (_) { /* plain text */ }
    throw new Error(`the server refused the broadcast (${r.status}): ${message}`);
  }
  current.location = r.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: text });
}

async function stop() {
  const c = current;
  current = null;
  if (!c) return;
  if (c.location) await fetch(c.location, { method: "DELETE" }).catch(() => {});
  c.pc.close();
  c.media.getTracks().forEach((t) => t.stop());
}

window.addEventListener("pagehide", () => {
  if (current && current.location) fetch(current.location, { method: "DELETE", keepalive: true });
});

/** The "Go live from this browser" section of stream `s`, and its WHIP address for OBS. */
export function goLiveSection(s) {
  if (!s.whip_path) return el("section", {});
  const source = el("select", { id: "golive-source" },
    el("option", { value: "camera" }, "Camera and microphone"), el("option", { value: "screen" }, "Screen (and microphone)"));
  const button = el("button", { id: "golive", type: "button" }, "Go live");
  const state = el("span", { id: "golive-state", class: "muted" }, "");
  const preview = el("video", { id: "golive-preview", muted: true, autoplay: true, playsinline: true, width: 320 });
  const show = () => {
    const mine = current && current.streamId === s.id;
    button.textContent = mine ? "Stop" : "Go live";
    button.disabled = !!current && !mine;
    state.textContent = mine ? current.state : current ? "this tab is live on another stream" : "";
    preview.srcObject = mine ? current.media : null;
    preview.hidden = !mine;
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (current) await stop();
      else await start(s, source.value);
    } catch (e) {
      await stop();
      show();
      state.textContent = e.message;
      button.disabled = false;
      return;
    }
    show();
  });
  show();
  return el("section", {}, el("h2", {}, "Go live from this browser"),
    el("p", { class: "muted" }, "Camera and microphone or a screen, sent over WebRTC (WHIP) to this server and on to every destination: no OBS needed."),
    el("div", { class: "copy-row" }, source, button, state), preview,
    el("div", { class: "muted" }, "WHIP for OBS 30+ (Settings → Stream → Service: WHIP; Server: this URL; Bearer Token: the stream key; H.264 + Opus)"),
    copyRow("ingest-whip", location.origin + s.whip_path));
}
