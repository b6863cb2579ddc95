// Sign in.
import { api, setCsrf } from "./api.js";
import { app, el, field, fieldError, nav } from "./dom.js";
import { leavePage, rerender } from "./page.js";

export function showLogin() {
  leavePage(); nav.hidden = true; setCsrf(null);
  const form = el("form", { class: "login", id: "login-form" },
    el("h1", {}, "Sign in"),
    field("Username", el("input", { id: "login-username", name: "username", autocomplete: "username", required: true }), "username"),
    field("Password", el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true }), "password"),
    el("span", { class: "error", "data-error-for": "form" }),
    el("button", { class: "primary", id: "login-submit", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/login", { username: form.username.value, password: form.password.value });
      setCsrf(r.csrf_token); nav.hidden = false; location.hash = "#/"; rerender();
    } catch (e) { fieldError(form, e); }
  });
  app.replaceChildren(form);
}
