// Settings: connected platforms and the password.
import { api } from "./api.js";
import { app, el, field, fieldError } from "./dom.js";
import { platformsSection } from "./platforms.js";

export async function showSettings() {
  const form = el("form", { class: "inline", id: "password-form" },
    field("Current password", el("input", { id: "pw-current", name: "current", type: "password", autocomplete: "current-password" }), "current"),
    field("New password (10+ characters)", el("input", { id: "pw-new", name: "new", type: "password", autocomplete: "new-password" }), "new"),
    el("button", { class: "primary", id: "pw-submit", type: "submit" }, "Change password"),
    el("span", { class: "error", "data-error-for": "form" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/api/password", { current: form.current.value, new: form.new.value }); form.reset(); fieldError(form, { message: "Password changed." }); }
    catch (e) { fieldError(form, e); }
  });
  app.replaceChildren(el("h1", {}, "Settings"), await platformsSection(), el("section", {}, el("h2", {}, "Password"), form));
}
