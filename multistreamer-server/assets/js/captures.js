// A stream's webinar captures: start one on a room's page (its chat and presenter window),
// watch its counters, stop it, render it with the stream's recording of the same time,
// download the files and the result.
import { api } from "./api.js";
import { badge, el, field, fieldError, fmtBytes, fmtDuration } from "./dom.js";
import { every } from "./page.js";

const PROFILES = [["generic", "Any page (give the selectors)"], ["mtslink", "webinar.ru / MTS Link room"], ["youtube", "YouTube watch page"]];

export async function capturesSection(stream) {
  const id = stream.id;
  const rows = el("tbody", { id: "capture-list" });
  const broadcasts = await api("GET", `/api/streams/${id}/broadcasts`).catch(() => []);
  let last = null;
  const fetchInfo = (f) => f.state === "waiting_for_account" ? " · webinar.ru is converting another record of the account: waiting"
    : f.state === "downloading" ? ` · downloading the presenter video (${fmtBytes(f.bytes)})`
    : ` · webinar.ru is converting the presenter video${f.percent != null ? ` (${f.percent.toFixed(0)} %)` : ""}`;
  const extra = (c) => c.fetch ? fetchInfo(c.fetch)
    : (c.state === "running" || c.state === "stopping") ? ` · ${c.presenter_fps.toFixed(1)} fps · ${fmtDuration(c.duration_ms)}` : "";
  const renderInfo = (r) => !r ? "" : r.state === "running" ? `rendering ${r.percent.toFixed(0)} % · ${r.speed.toFixed(2)}× · ETA ${r.eta_s} s`
    : r.state === "failed" ? `render failed: ${r.error}` : "";
  const refresh = async () => {
    const list = await api("GET", `/api/streams/${id}/captures`);
    // rows are rebuilt only when their shape changes; counters are updated in place, so a
    // button is never replaced under the pointer
    const shape = JSON.stringify(list.map((c) => [c.id, c.state, c.error, c.files.map((f) => f.name), c.render && [c.render.state, c.render.recording_id]]));
    // (a capture converting after the fact changes shape when it ends: its state changes)
    if (shape === last) {
      for (const c of list) {
        const tr = rows.querySelector(`tr[data-capture-id="${c.id}"]`);
        if (!tr) continue;
        tr.querySelector(".cap-chat").textContent = String(c.chat_messages);
        tr.querySelector(".cap-frames").textContent = String(c.presenter_frames);
        tr.querySelector(".cap-extra").textContent = extra(c);
        tr.querySelector(".cap-render-status").textContent = renderInfo(c.render);
      }
      return;
    }
    last = shape;
    rows.replaceChildren(...list.map((c) => {
      const act = (label, cls, fn) => {
        const b = el("button", { class: "small " + cls, type: "button" }, label);
        b.addEventListener("click", async () => { b.disabled = true; try { await fn(); } catch (e) { alert(e.message); } b.disabled = false; last = null; await refresh(); });
        return b;
      };
      const running = c.state === "running" || c.state === "stopping" || c.state === "converting";
      const layout = el("select", { class: "cap-layout" }, el("option", { value: "side" }, "side"), el("option", { value: "overlay" }, "overlay"));
      const size = el("select", { class: "cap-size" }, ["1920x1080", "1280x720", "854x480"].map((v) => el("option", { value: v }, v)));
      const r = c.render;
      return el("tr", { "data-capture-id": c.id },
        el("td", {}, c.name, el("div", { class: "muted" }, c.url)),
        el("td", { class: "cap-state" }, badge(c.state === "running" ? "live" : c.state), c.error ? el("div", { class: "muted" }, c.error) : "", c.last_error && running ? el("div", { class: "muted" }, c.last_error) : ""),
        el("td", {}, el("span", { class: "cap-chat" }, String(c.chat_messages)), " messages · ", el("span", { class: "cap-frames" }, String(c.presenter_frames)), " frames",
          el("span", { class: "cap-extra" }, extra(c))),
        el("td", {}, ...c.files.map((f) => el("a", { class: "cap-file", href: f.url, download: "" }, `${f.name} (${fmtBytes(f.bytes)})`)).flatMap((a) => [a, " "])),
        el("td", {},
          running ? act(c.state === "converting" ? "Stop waiting" : "Stop", "cap-stop", () => api("POST", `/api/captures/${c.id}/stop`, {})) : "",
          !running ? layout : "", !running ? size : "",
          !running ? act("Render", "cap-render", () => api("POST", `/api/captures/${c.id}/render`, { layout: layout.value, size: size.value })) : "",
          el("span", { class: "muted cap-render-status" }, renderInfo(r)),
          r && r.recording_id ? el("a", { class: "cap-result", href: `/api/recordings/${r.recording_id}/file`, download: "" }, "rendered MP4") : "",
          " ", !running ? act("Delete", "cap-delete", async () => { if (confirm(`Delete capture "${c.name}" and its files?`)) await api("DELETE", `/api/captures/${c.id}`); }) : ""));
    }));
    if (!list.length) rows.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No capture yet.")));
  };
  const form = el("form", { class: "inline", id: "capture-form" },
    field("Page (the room's guest link, a YouTube watch page, any page)", el("input", { id: "cap-url", name: "url", placeholder: "https://…" }), "url"),
    field("Profile", el("select", { id: "cap-profile", name: "profile" }, PROFILES.map(([v, l]) => el("option", { value: v }, l))), "profile"),
    field("Chat container (CSS)", el("input", { id: "cap-chat", name: "chat_selector", placeholder: "#chat" }), "chat_selector"),
    field("Author in a message", el("input", { id: "cap-author", name: "chat_author_selector", placeholder: ".author" }), "chat_author_selector"),
    field("Text in a message", el("input", { id: "cap-text", name: "chat_text_selector", placeholder: ".text" }), "chat_text_selector"),
    field("Message id attribute", el("input", { id: "cap-id-attr", name: "chat_id_attribute", placeholder: "data-id" }), "chat_id_attribute"),
    field("Presenter window (CSS; empty: the whole page)", el("input", { id: "cap-presenter", name: "presenter_selector", placeholder: "#speaker video" }), "presenter_selector"),
    field("Join as", el("input", { id: "cap-guest", name: "guest_name", placeholder: "Recorder" }), "guest_name"),
    field("Also read the chat of", el("select", { id: "cap-broadcast", name: "broadcast_id" }, el("option", { value: "" }, "— the page only —"),
      ...broadcasts.map((b) => el("option", { value: b.id }, `${b.platform === "youtube" ? "YouTube" : "webinar.ru"}: ${b.title}`))), "broadcast_id"),
    el("label", { class: "check" }, el("input", { type: "checkbox", id: "cap-presenter-on", name: "presenter", checked: true }), " presenter video"),
    el("button", { class: "primary", id: "cap-submit", type: "submit" }, "Capture webinar"),
    el("span", { class: "error", "data-error-for": "form" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = { url: f.url.value.trim(), profile: f.profile.value, presenter: f.presenter.checked };
    for (const k of ["chat_selector", "chat_author_selector", "chat_text_selector", "chat_id_attribute", "presenter_selector", "guest_name"]) {
      if (f[k].value.trim()) body[k] = f[k].value.trim();
    }
    if (f.broadcast_id.value) body.broadcast_id = Number(f.broadcast_id.value);
    try { await api("POST", `/api/streams/${id}/captures`, body); fieldError(form, { message: "" }); last = null; await refresh(); }
    catch (e) { fieldError(form, e); }
  });
  await refresh();
  every(2000, () => refresh().catch(() => {}));
  return el("section", { id: "captures" }, el("h2", {}, "Webinar capture"),
    el("p", { class: "muted" }, "Opens the room in a browser on this server and keeps its chat (as text, with times) and the presenter window (as video). Afterwards, Render puts them beside the stream's recording of the same time, in one MP4 — record the stream while capturing. The chat can also be read through a broadcast's platform API; after a webinar.ru session, its whole chat and the presenter's video (converted by webinar.ru from the session's recording) can be fetched from the broadcast's row (After the webinar → capture). YouTube's chat is only complete when read live."),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["Capture", "State", "So far", "Files", ""].map((h) => el("th", {}, h)))), rows)),
    form);
}
