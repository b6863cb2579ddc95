// The dashboard: every stream with its destinations, and the machine's load.
import { api } from "./api.js";
import { loadCharts } from "./charts.js";
import { app, badge, el, field, fieldError, fmtRate, fmtReconnects } from "./dom.js";
import { every } from "./page.js";

export async function showDashboard() {
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
  every(2000, () => refresh().catch(() => {}));
}
