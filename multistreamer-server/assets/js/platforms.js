// Settings → Platforms: the YouTube OAuth client, connected accounts, connecting YouTube
// (device flow, or by redirect when the server has a public URL) and MTS Link (API token).
import { api } from "./api.js";
import { badge, el, field, fieldError } from "./dom.js";
import { every, onLeave } from "./page.js";

const HOW_TO = [
  "Create the OAuth client once, in the Google Cloud console of a project of yours:",
  "1. APIs & Services → Library: enable \"YouTube Data API v3\".",
  "2. OAuth consent screen: External; add yourself as a test user, then \"Publish app\" — while it stays in \"Testing\", Google ends the connection after 7 days and the account must be connected again.",
  "3. Credentials → Create credentials → OAuth client ID → \"TVs and Limited Input devices\" (the device flow below works from a LAN-only server). With a public https URL (--public-url), a \"Web application\" client with the redirect URI {public URL}/oauth/youtube/callback works too.",
  "4. Paste its client ID and secret here (or start the server with --youtube-client-id / --youtube-client-secret).",
];

export async function platformsSection() {
  const section = el("section", { id: "platforms" }, el("h2", {}, "Platforms"));
  const rows = el("tbody", { id: "platforms-list" });
  const notice = el("div", { class: "muted", id: "platforms-notice" });
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  if (q.get("connected")) notice.textContent = "YouTube account connected.";
  if (q.get("error")) notice.textContent = `Connecting failed: ${q.get("error")}`;

  const refresh = async () => {
    const list = await api("GET", "/api/platforms");
    rows.replaceChildren(...list.map((p) => {
      const del = el("button", { class: "small platform-disconnect", type: "button" }, "Disconnect");
      del.addEventListener("click", async () => {
        if (!confirm(`Disconnect "${p.name}"? Its broadcasts are forgotten here; their destinations stay.`)) return;
        try { await api("DELETE", `/api/platforms/${p.id}`); } catch (e) { alert(e.message); }
        await refresh();
      });
      const label = { connected: "connected", reconnect_needed: "reconnect needed", error: "error" }[p.state] || p.state;
      return el("tr", { "data-platform-id": p.id, "data-kind": p.kind },
        el("td", {}, p.kind === "youtube" ? "YouTube" : "webinar.ru / MTS Link"), el("td", { class: "platform-name" }, p.name),
        el("td", { class: "platform-state" }, el("span", { class: "badge " + (p.state === "connected" ? "live" : "failed") }, label)),
        el("td", { class: "muted" }, p.last_error || ""), el("td", {}, del));
    }));
    if (!list.length) rows.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No account connected yet.")));
  };

  // YouTube: the OAuth client, then the device flow
  const client = await api("GET", "/api/platforms/youtube/client");
  const clientForm = el("form", { class: "inline", id: "oauth-client-form" },
    field("OAuth client ID", el("input", { id: "oauth-client-id", name: "client_id", value: client.client_id || "", placeholder: "….apps.googleusercontent.com" }), "client_id"),
    field("Client secret", el("input", { id: "oauth-client-secret", name: "client_secret", type: "password", autocomplete: "off", placeholder: client.configured ? "(kept)" : "" }), "client_secret"),
    el("button", { class: "primary", id: "oauth-client-save", type: "submit" }, "Save"),
    el("span", { class: "error", "data-error-for": "form" }));
  clientForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("PUT", "/api/platforms/youtube/client", { client_id: clientForm.client_id.value, client_secret: clientForm.client_secret.value }); fieldError(clientForm, { message: "Saved." }); }
    catch (e) { fieldError(clientForm, e); }
  });
  const device = el("div", { id: "device-flow", class: "device-flow", hidden: true });
  let polling = null;
  const stopPolling = () => { if (polling) clearInterval(polling); polling = null; };
  onLeave(stopPolling);
  const connectYt = el("button", { class: "primary", id: "connect-youtube", type: "button" }, "Connect YouTube");
  connectYt.addEventListener("click", async () => {
    stopPolling();
    try {
      const f = await api("POST", "/api/platforms/youtube/device", {});
      const state = el("div", { id: "device-state", class: "muted" }, "Waiting for your approval…");
      device.replaceChildren(
        el("p", {}, "On any device, open ", el("a", { id: "device-url", href: f.verification_url, target: "_blank", rel: "noopener" }, f.verification_url),
          ", sign in with the channel's Google account and enter this code:"),
        el("div", { id: "device-code", class: "device-code" }, f.user_code), state);
      device.hidden = false;
      polling = setInterval(async () => {
        const s = await api("GET", `/api/platforms/youtube/device/${f.flow_id}`).catch((e) => ({ state: "error", error: e.message }));
        if (s.state === "pending") return;
        stopPolling();
        state.textContent = s.state === "connected" ? `Connected: ${s.account.name}.` : `Not connected: ${s.error || s.state}.`;
        state.className = s.state === "connected" ? "" : "error";
        await refresh();
      }, 2000);
    } catch (e) { device.hidden = false; device.replaceChildren(el("p", { class: "error" }, e.message)); }
  });
  const redirect = el("button", { class: "small", id: "connect-youtube-redirect", type: "button", hidden: !client.redirect_flow }, "Connect by redirect instead");
  redirect.addEventListener("click", async () => {
    try { location.href = (await api("GET", "/api/platforms/youtube/authorize")).url; } catch (e) { alert(e.message); }
  });

  // MTS Link: an API token, checked before it is stored
  const mtsForm = el("form", { class: "inline", id: "mts-form" },
    field("Name", el("input", { id: "mts-name", name: "name", placeholder: "webinar.ru" }), "name"),
    field("API key (cabinet: Business → API/Webhooks → API → Add)", el("input", { id: "mts-token", name: "token", type: "password", autocomplete: "off" }), "token"),
    el("button", { class: "primary", id: "mts-submit", type: "submit" }, "Connect webinar.ru"),
    el("span", { class: "error", "data-error-for": "form" }));
  mtsForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/api/platforms/mtslink", { name: mtsForm.name.value, token: mtsForm.token.value }); mtsForm.reset(); await refresh(); }
    catch (e) { fieldError(mtsForm, e); }
  });

  section.append(notice,
    el("table", {}, el("thead", {}, el("tr", {}, ["Platform", "Account", "State", "Last error", ""].map((h) => el("th", {}, h)))), rows),
    el("h3", {}, "YouTube"),
    client.from_config ? el("p", { class: "muted" }, `OAuth client ${client.client_id} (set by the server's configuration).`)
      : el("details", { open: !client.configured }, el("summary", {}, client.configured ? "OAuth client (configured)" : "OAuth client (needed once)"),
        ...HOW_TO.map((l) => el("p", { class: "muted" }, l)), clientForm),
    el("div", { class: "copy-row" }, connectYt, redirect), device,
    el("h3", {}, "webinar.ru / MTS Link"), mtsForm);
  await refresh();
  every(10000, () => refresh().catch(() => {}));
  return section;
}
