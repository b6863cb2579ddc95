// A stream's broadcasts on YouTube and webinar.ru: create one (its destination follows),
// go live, watch the platform's verdict on the stream, end it. State and health come from
// the server's monitor (it polls the platform); this page only reads the server.
import { api } from "./api.js";
import { badge, el, field, fieldError } from "./dom.js";
import { every } from "./page.js";

const ROOM_HELP = "The webinar.ru API does not hand out an RTMP input: when your plan has one, the webinar room shows its server URL and stream key to the presenter (ask MTS Link support if you cannot find it). Paste them here as rtmp://SERVER/APP/KEY. The room exists once the webinar is created, so this can be set later.";

function healthCell(b) {
  const h = b.health;
  if (!h) return el("span", { class: "muted" }, b.state === "complete" ? "" : "not polled yet (polled while the stream is live)");
  const parts = [el("span", { class: "bc-stream-status" }, h.stream_status)];
  const tone = h.status === "good" || h.status === "ok" ? "live" : h.status === "noData" ? "" : "failed";
  if (h.status) parts.push(" · ", el("span", { class: `badge ${tone} bc-health-status`, title: "YouTube's health verdict" }, h.status));
  const issues = h.issues.map((i) => el("li", { class: "bc-issue " + i.severity }, `${i.severity}: ${i.description}`));
  return el("div", {}, ...parts, issues.length ? el("ul", { class: "bc-issues" }, ...issues) : "");
}

export async function broadcastsSection(stream) {
  const id = stream.id;
  const rows = el("tbody", { id: "broadcast-list" });
  const accounts = await api("GET", "/api/platforms");
  let last = null;
  const refresh = async () => {
    const list = await api("GET", `/api/streams/${id}/broadcasts`);
    // rows are rebuilt only when something changed: buttons stay put under the pointer
    const text = JSON.stringify(list);
    if (text === last) return;
    last = text;
    rows.replaceChildren(...list.map((b) => {
      const busy = (btn, label, fn) => btn.addEventListener("click", async () => {
        btn.disabled = true; const was = btn.textContent; btn.textContent = label;
        try { await fn(); } catch (e) { alert(e.message); }
        btn.disabled = false; btn.textContent = was; await refresh();
      });
      const goLive = el("button", { class: "small bc-golive", type: "button", hidden: !["created", "ready", "testing"].includes(b.state) }, "Go live");
      busy(goLive, "Going live…", () => api("POST", `/api/broadcasts/${b.id}/transition`, { to: "live" }));
      const end = el("button", { class: "small bc-end", type: "button", hidden: !["live", "liveStarting", "testing"].includes(b.state) }, "End broadcast");
      busy(end, "Ending…", async () => { if (confirm(`End "${b.title}" for the viewers?`)) await api("POST", `/api/broadcasts/${b.id}/transition`, { to: "complete" }); });
      const del = el("button", { class: "small bc-delete", type: "button" }, "Delete");
      busy(del, "Deleting…", async () => { if (confirm(`Delete "${b.title}"? Its destination is removed; a broadcast that never aired is deleted on the platform too.`)) await api("DELETE", `/api/broadcasts/${b.id}`); });
      const auto = el("input", { type: "checkbox", class: "bc-auto", checked: b.auto_live, title: "Go live by itself when the platform receives the stream" });
      auto.addEventListener("change", async () => { try { await api("PATCH", `/api/broadcasts/${b.id}`, { auto_live: auto.checked }); } catch (e) { alert(e.message); } await refresh(); });
      const ingest = el("button", { class: "small bc-ingest", type: "button", hidden: b.platform !== "mtslink" }, b.destination_id ? "Room RTMP URL…" : "Set room RTMP URL…");
      // after the webinar: its whole chat through the API, as a capture (YouTube's only live)
      const chatAfter = el("button", { class: "small bc-chat-capture", type: "button", hidden: b.platform !== "mtslink", title: "Build a capture from the session through the API: its whole chat, and the presenter's video that webinar.ru converts from the session's recording (Webinar capture card)" }, "After the webinar → capture");
      busy(chatAfter, "Fetching…", () => api("POST", `/api/broadcasts/${b.id}/chat-capture`, {}));
      ingest.addEventListener("click", async () => {
        const url = prompt(ROOM_HELP, "");
        if (url) { try { await api("PATCH", `/api/broadcasts/${b.id}`, { ingest_url: url }); } catch (e) { alert(e.message); } await refresh(); }
      });
      return el("tr", { "data-broadcast-id": b.id },
        el("td", {}, b.platform === "youtube" ? "YouTube" : "webinar.ru", el("div", { class: "muted" }, b.platform_name)),
        el("td", {}, el("a", { href: b.watch_url, target: "_blank", rel: "noopener" }, b.title)),
        el("td", { class: "bc-state" }, badge(b.state)),
        el("td", { class: "bc-health" }, healthCell(b)),
        el("td", {}, el("label", {}, auto, " auto")),
        el("td", { class: "muted bc-error" }, b.last_error || (b.platform === "mtslink" && !b.destination_id ? "No room RTMP URL yet." : "")),
        el("td", {}, goLive, " ", end, " ", ingest, " ", chatAfter, " ", del));
    }));
    if (!list.length) rows.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No broadcast yet.")));
  };

  // the new-broadcast form; its fields follow the chosen account's platform
  const platformSel = el("select", { id: "bc-platform", name: "platform_id" }, accounts.map((p) => el("option", { value: p.id, "data-kind": p.kind }, `${p.kind === "youtube" ? "YouTube" : "webinar.ru"}: ${p.name}`)));
  const yt = (...c) => el("span", { class: "bc-yt", style: "display:contents" }, ...c);
  const mts = (...c) => el("span", { class: "bc-mts", style: "display:contents" }, ...c);
  const select = (id, name, opts) => el("select", { id, name }, opts.map(([v, l]) => el("option", { value: v }, l)));
  const upcoming = el("select", { id: "bc-attach", name: "attach" }, el("option", { value: "" }, "A new broadcast"));
  const loadUpcoming = el("button", { class: "small", type: "button", id: "bc-load-upcoming" }, "List upcoming");
  loadUpcoming.addEventListener("click", async () => {
    try {
      const list = await api("GET", `/api/platforms/${platformSel.value}/upcoming`);
      upcoming.replaceChildren(el("option", { value: "" }, "A new broadcast"), ...list.map((u) => el("option", { value: u.remote_id }, `${u.title} (${u.scheduled_start || u.state})`)));
    } catch (e) { fieldError(form, e); }
  });
  const form = el("form", { class: "inline", id: "broadcast-form" },
    field("Account", platformSel, "platform_id"),
    field("Title", el("input", { id: "bc-title", name: "title", maxlength: 100, placeholder: "Conference — day 1" }), "title"),
    field("Description", el("input", { id: "bc-description", name: "description" }), "description"),
    field("Starts (your local time; empty = now)", el("input", { id: "bc-starts", name: "starts_at", type: "datetime-local" }), "starts_at"),
    field("Sends", select("bc-rendition", "rendition", [["source", "Source (as published)"], ...stream.rendition_names.map((n) => [n, n])]), "rendition"),
    yt(field("Or attach", upcoming, "attach"), loadUpcoming,
      field("Privacy", select("bc-privacy", "privacy", [["unlisted", "Unlisted"], ["public", "Public"], ["private", "Private"]]), "privacy"),
      field("Latency", select("bc-latency", "latency", [["normal", "Normal"], ["low", "Low"], ["ultraLow", "Ultra low"]]), "latency"),
      field("Ingest", select("bc-ingest", "ingest", [["rtmps", "RTMPS"], ["rtmp", "RTMP"]]), "ingest"),
      el("label", { class: "check" }, el("input", { type: "checkbox", id: "bc-backup", name: "backup" }), " also the backup ingest"),
      el("label", { class: "check" }, el("input", { type: "checkbox", id: "bc-dvr", name: "dvr", checked: true }), " DVR"),
      el("label", { class: "check" }, el("input", { type: "checkbox", id: "bc-kids", name: "made_for_kids" }), " made for kids"),
      el("label", { class: "check" }, el("input", { type: "checkbox", id: "bc-monitor", name: "monitor_stream" }), " preview (testing) first")),
    mts(field("Type", select("bc-type", "type", [["webinar", "Webinar"], ["meeting", "Meeting"]]), "type"),
      field("Access", select("bc-access", "access", [["free", "Free"], ["password", "With password"], ["registration", "Registration"]]), "access"),
      field("Password", el("input", { id: "bc-password", name: "password", type: "password", autocomplete: "off" }), "password"),
      field("Timezone id (empty: the account's)", el("input", { id: "bc-timezone", name: "timezone" }), "timezone"),
      field("Room RTMP URL with key", el("input", { id: "bc-ingest-url", name: "ingest_url", placeholder: "rtmp://…/KEY", title: ROOM_HELP }), "ingest_url")),
    el("label", { class: "check" }, el("input", { type: "checkbox", id: "bc-auto-live", name: "auto_live" }), " go live when the data flows"),
    el("button", { class: "primary", id: "bc-submit", type: "submit" }, "New broadcast"),
    el("span", { class: "error", "data-error-for": "form" }));
  const kind = () => platformSel.selectedOptions[0]?.dataset.kind;
  const showKind = () => {
    form.querySelectorAll(".bc-yt").forEach((e) => { e.hidden = kind() !== "youtube"; e.style.display = kind() === "youtube" ? "contents" : "none"; });
    form.querySelectorAll(".bc-mts").forEach((e) => { e.hidden = kind() !== "mtslink"; e.style.display = kind() === "mtslink" ? "contents" : "none"; });
  };
  platformSel.addEventListener("change", showKind);
  showKind();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = { platform_id: Number(platformSel.value), title: f.title.value, description: f.description.value, rendition: f.rendition.value, auto_live: f.auto_live.checked };
    const starts = f.starts_at.value;
    if (kind() === "youtube") {
      Object.assign(body, { privacy: f.privacy.value, latency: f.latency.value, ingest: f.ingest.value, backup: f.backup.checked, dvr: f.dvr.checked, made_for_kids: f.made_for_kids.checked, monitor_stream: f.monitor_stream.checked });
      if (f.attach.value) body.attach = f.attach.value;
      if (starts) body.starts_at = new Date(starts).toISOString();
    } else {
      Object.assign(body, { type: f.type.value, access: f.access.value, password: f.password.value, timezone: f.timezone.value, ingest_url: f.ingest_url.value });
      if (starts) body.starts_at = starts;
    }
    const submit = form.querySelector("#bc-submit");
    submit.disabled = true; submit.textContent = "Creating…";
    try { await api("POST", `/api/streams/${id}/broadcasts`, body); form.reset(); showKind(); fieldError(form, { message: "" }); await refresh(); }
    catch (e) { fieldError(form, e); }
    submit.disabled = false; submit.textContent = "New broadcast";
  });
  await refresh();
  every(3000, () => refresh().catch(() => {}));
  return el("section", { id: "broadcasts" }, el("h2", {}, "Broadcasts on YouTube and webinar.ru"),
    el("table", { class: "broadcasts" }, el("thead", {}, el("tr", {}, ["Platform", "Title", "State", "Platform's view of the stream", "Auto", "Note", ""].map((h) => el("th", {}, h)))), rows),
    accounts.length ? form : el("p", { class: "muted" }, "Connect a YouTube or webinar.ru account in ", el("a", { href: "#/settings" }, "Settings → Platforms"), " to create broadcasts here."));
}
