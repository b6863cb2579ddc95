// The dashboard: every stream with its destinations, and the machine's load.
import { api, apiPage } from "./api.js";
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
  // a page of streams at a time: thousands of them stay quick to show
  const PAGE = 50;
  let page = 0;
  const pager = el("div", { class: "pager", id: "stream-pager" });
  const refresh = async () => {
    const { items: streams, total } = await apiPage(`/api/streams?limit=${PAGE}&offset=${page * PAGE}`);
    const pages = Math.max(1, Math.ceil(total / PAGE));
    if (page >= pages) { page = pages - 1; return refresh(); }
    const go = (to) => { page = to; refresh().catch(() => {}); };
    const prev = el("button", { id: "stream-page-prev", type: "button" }, "‹ Previous");
    const next = el("button", { id: "stream-page-next", type: "button" }, "Next ›");
    prev.disabled = page === 0;
    next.disabled = page + 1 >= pages;
    prev.addEventListener("click", () => go(page - 1));
    next.addEventListener("click", () => go(page + 1));
    pager.replaceChildren(...(pages > 1 ? [prev, el("span", { class: "muted", id: "stream-page-info" }, ` page ${page + 1} of ${pages} · ${total} streams `), next] : []));
    list.replaceChildren(...streams.map((s) => el("tr", { "data-stream-id": s.id },
      el("td", {}, el("a", { class: "stream-link", href: "#/streams/" + s.id }, s.name)),
      el("td", {}, badge(s.live ? "live" : "offline"), s.node ? el("span", { class: "muted stream-node" }, " " + s.node) : ""),
      el("td", {}, s.destinations.length ? s.destinations.map((d) => el("div", {}, d.name, " ", badge(d.state), " ", fmtRate(d.bitrate_bps), ` · reconnects ${fmtReconnects(d)}`)) : el("span", { class: "muted" }, "no destinations")))));
    if (!streams.length) list.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No streams yet.")));
    // several nodes on one database: each with its load (one node: nothing to show)
    const all = await api("GET", "/api/nodes");
    nodes.replaceChildren(...(all.length > 1 ? [el("h2", {}, "Nodes"), el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "State"), el("th", {}, "Streams"), el("th", {}, "CPU"), el("th", {}, "Network in / out"))),
      el("tbody", { id: "node-list" }, ...all.map((n) => el("tr", { "data-node-id": n.id },
        el("td", {}, el("a", { href: n.http_url }, n.id), n.this_node ? el("span", { class: "muted" }, " (this node)") : ""),
        el("td", {}, badge(n.alive ? "live" : "offline")),
        el("td", {}, String(n.load.streams)),
        el("td", {}, `${Math.round(n.load.cpu_percent)}%`),
        el("td", {}, `${fmtRate(Math.round(n.load.rx_bytes_per_s * 8))} / ${fmtRate(Math.round(n.load.tx_bytes_per_s * 8))}`)))))] : []));
  };
  const nodes = el("section", { id: "nodes" });
  app.replaceChildren(
    el("h1", {}, "Dashboard"),
    el("section", {}, el("h2", {}, "Streams"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Stream"), el("th", {}, "Ingest"), el("th", {}, "Destinations"))), list), pager, form),
    nodes,
    loadCharts());
  await refresh();
  every(2000, () => refresh().catch(() => {}));
}
