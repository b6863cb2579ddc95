// Recordings: list, download, delete.
import { api } from "./api.js";
import { app, badge, el, fmtBytes, fmtDuration } from "./dom.js";
import { every } from "./page.js";

export async function showRecordings() {
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
  every(2000, () => refresh().catch(() => {}));
}
