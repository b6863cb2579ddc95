// DOM helpers and formatting shared by every page.

export const app = document.getElementById("app");
export const nav = document.getElementById("nav");

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

export function fieldError(form, err) {
  form.querySelectorAll(".error").forEach((e) => (e.textContent = ""));
  form.querySelectorAll("input").forEach((i) => i.classList.remove("invalid"));
  const target = err.field && form.querySelector(`[data-error-for="${err.field}"]`);
  (target || form.querySelector("[data-error-for=form]")).textContent = err.message;
  const input = err.field && form.querySelector(`[name="${err.field}"]`);
  if (input) input.classList.add("invalid");
}

export function field(label, input, errFor) {
  return el("div", { class: "field" }, el("label", { for: input.id }, label), input, el("span", { class: "error", "data-error-for": errFor }));
}

export function fmtRate(bps) {
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " Mbit/s";
  if (bps >= 1e3) return (bps / 1e3).toFixed(0) + " kbit/s";
  return bps + " bit/s";
}

// Reconnections, and the attempts that failed: a destination that never gets through shows
// its failed attempts rather than a reassuring 0.
export function fmtReconnects(d) {
  return d.failed_connects ? `${d.reconnects} (${d.failed_connects} failed)` : String(d.reconnects);
}

export function fmtBytes(n) {
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; let v = n;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return i ? `${v.toFixed(1)} ${u[i]}` : `${n} B`;
}
export function fmtDuration(ms) {
  const s = Math.round(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + ":" + String(s % 60).padStart(2, "0");
}
export function badge(state) { return el("span", { class: "badge " + state }, state); }

export function copyRow(id, value) {
  const input = el("input", { id, readonly: true, value });
  const btn = el("button", { class: "small", type: "button", onclick: () => { input.select(); navigator.clipboard?.writeText(value).catch(() => document.execCommand("copy")); btn.textContent = "Copied"; setTimeout(() => (btn.textContent = "Copy"), 1200); } }, "Copy");
  return el("div", { class: "copy-row" }, input, btn);
}
