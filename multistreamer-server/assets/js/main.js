// Multistreamer web UI: plain JavaScript modules, no build step. The one library, hls.js
// (the preview player), is served by the server itself from /vendor/ (works offline).
import { api, hasSession, setCsrf, whenSignedOut } from "./api.js";
import { app, el, nav } from "./dom.js";
import { showDashboard } from "./dashboard.js";
import { showLogin } from "./login.js";
import { leavePage } from "./page.js";
import { showRecordings } from "./recordings.js";
import { showSettings } from "./settings.js";
import { showStream } from "./stream.js";

whenSignedOut(showLogin);

async function route() {
  leavePage();
  if (!hasSession()) {
    try { setCsrf((await api("GET", "/api/me")).csrf_token); nav.hidden = false; } catch { return; }
  }
  const h = location.hash || "#/";
  const m = h.match(/^#\/streams\/(\d+)/);
  try {
    if (m) await showStream(m[1]);
    else if (h.startsWith("#/settings")) await showSettings();
    else if (h.startsWith("#/recordings")) await showRecordings();
    else await showDashboard();
  } catch (e) {
    if (e.message !== "signed out") app.replaceChildren(el("section", {}, el("p", { class: "error" }, e.message)));
  }
}

document.getElementById("logout").addEventListener("click", async () => { await api("POST", "/api/logout", {}).catch(() => {}); setCsrf(null); showLogin(); });
window.addEventListener("hashchange", route);
route();
