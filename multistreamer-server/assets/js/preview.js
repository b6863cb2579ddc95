// The preview player: hls.js, served by the server itself from /vendor/ (works offline)
// and loaded on first use.
import { el } from "./dom.js";

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
export function PreviewPlayer(video, note) {
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
