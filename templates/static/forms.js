// Progressive enhancement: forms with data-api submit JSON to the API and report inline.
import { api } from "./api.js";

for (const form of document.querySelectorAll("form[data-api]")) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = form.querySelector(".status");
    const body = Object.fromEntries(new FormData(form).entries());
    try {
      await api(form.dataset.method ?? "POST", form.dataset.api, body);
      if (status) { status.textContent = form.dataset.ok ?? "✓"; status.className = "status ok"; }
      form.reset();
    } catch (err) {
      if (status) { status.textContent = err.message; status.className = "status error"; }
    }
  });
}
