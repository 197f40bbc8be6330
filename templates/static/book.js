// /book: visit type → day → free time → mode → reason → book (with an Idempotency-Key), or join the
// on-demand queue. Policy refusals are shown with their reasons in the page language.
import { announce, busy, call, clearError, fmtDateTime, h, isKo, newKey, pageData, showError, t } from "./live.js";

const data = pageData();
const $ = (id) => document.getElementById(id);
const form = $("book-form");
const errorBox = $("book-error");
const status = $("book-status");
const state = { types: [], type: null, slot: null, key: newKey(), tz: "Asia/Seoul" };

function patient() {
  const sel = $("book-patient");
  const id = sel ? sel.value : data.patients[0].id;
  return data.patients.find((p) => p.id === id) ?? data.patients[0];
}

function typeName(vt) {
  return isKo() && vt.name_ko ? vt.name_ko : vt.name;
}

function today(tz) {
  // YYYY-MM-DD in the clinic's time zone.
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date());
}

function nextDay(iso) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

function refreshButtons() {
  $("book-submit").disabled = !(state.type && state.slot);
  $("on-demand-button").disabled = !state.type;
}

function resetKey() {
  state.key = newKey();
}

async function loadTypes() {
  const p = patient();
  state.tz = p.timezone || "Asia/Seoul";
  const box = $("visit-types");
  try {
    const res = await call("GET", `/api/v1/organizations/${p.organization_id}/visit-types`);
    state.types = res.items.filter((v) => v.active);
  } catch (err) {
    showError(errorBox, err);
    state.types = [];
  }
  box.replaceChildren();
  if (!state.types.length) {
    box.append(h("p", { class: "hint", "data-testid": "no-visit-types" }, t("no_visit_types")));
    return;
  }
  for (const vt of state.types) {
    const id = `vt-${vt.id}`;
    const input = h("input", { type: "radio", name: "visit_type", id, value: vt.id,
      "data-testid": "visit-type-option", "data-code": vt.code });
    input.addEventListener("change", () => selectType(vt));
    box.append(h("label", { for: id, class: "choice" }, input, " ", h("span", {}, typeName(vt)),
      h("span", { class: "muted" }, ` · ${vt.duration_minutes} ${t("minutes")}`)));
  }
  if (state.types.length === 1) {
    box.querySelector("input").checked = true;
    selectType(state.types[0]);
  }
}

function selectType(vt) {
  state.type = vt;
  state.slot = null;
  resetKey();
  const mode = $("book-mode");
  mode.replaceChildren(...vt.modes.map((m) => h("option", { value: m }, t(`mode_${m}`))));
  refreshButtons();
  loadSlots();
}

async function loadSlots() {
  const box = $("slots");
  const day = $("book-date").value;
  // Only the newest request may render, and a choice made meanwhile survives a re-render of the same day.
  const gen = (state.gen = (state.gen ?? 0) + 1);
  const keep = state.slot && state.slotDay === day && state.slotType === state.type?.id ? state.slot.start : null;
  state.slot = null;
  refreshButtons();
  if (!state.type || !day) return;
  const p = patient();
  box.replaceChildren(h("p", { class: "hint", role: "status" }, h("progress", { class: "progress" }), " ",
    t("loading")));
  box.setAttribute("aria-busy", "true");
  const q = new URLSearchParams({ visit_type_id: state.type.id, from: day, to: nextDay(day), tz: state.tz });
  try {
    const res = await call("GET", `/api/v1/organizations/${p.organization_id}/slots?${q}`);
    if (gen !== state.gen) return;
    box.replaceChildren();
    if (!res.items.length) {
      box.append(h("p", { class: "hint", "data-testid": "no-slots" }, t("no_slots")));
    }
    const seen = new Set();
    for (const slot of res.items) {
      // Several doctors may be free at the same time; one button per time is enough for the patient.
      if (seen.has(slot.start)) continue;
      seen.add(slot.start);
      const btn = h("button", { type: "button", class: "slot secondary", "aria-pressed": "false",
        "data-testid": "slot", "data-start": slot.start }, slot.local_start.slice(11, 16));
      const choose = () => {
        for (const b of box.querySelectorAll("button[aria-pressed]")) b.setAttribute("aria-pressed", "false");
        btn.setAttribute("aria-pressed", "true");
        state.slot = slot;
        state.slotDay = day;
        state.slotType = state.type.id;
        refreshButtons();
      };
      btn.addEventListener("click", () => { choose(); resetKey(); });
      box.append(btn);
      if (slot.start === keep) choose();
    }
    announce(status, `${seen.size} ${t("slots_found")}`);
  } catch (err) {
    if (gen !== state.gen) return;
    box.replaceChildren();
    showError(errorBox, err);
  } finally {
    if (gen === state.gen) box.removeAttribute("aria-busy");
  }
}

function confirm(appt, title) {
  $("confirm-h").textContent = title;
  $("confirm-when").textContent = fmtDateTime(appt.start, state.tz);
  $("confirm-type").textContent = state.type ? typeName(state.type) : "";
  $("confirm-mode").textContent = t(`mode_${appt.mode}`);
  $("confirm-calendar").hidden = appt.kind === "on_demand";
  const pay = $("confirm-pay");
  if (data.links.pay && state.type?.fee_amount > 0) {
    pay.href = `/pay/${appt.id}`;
    pay.hidden = false;
  }
  $("book-form-card").hidden = true;
  const card = $("book-confirmation");
  card.hidden = false;
  card.focus();
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearError(errorBox);
  if (!state.type || !state.slot) {
    showError(errorBox, new Error(t("pick_slot_first")));
    return;
  }
  const p = patient();
  await busy($("book-submit"), async () => {
    try {
      const appt = await call("POST", "/api/v1/appointments", {
        patient_id: p.id, practitioner_id: state.slot.practitioner_id, visit_type_id: state.type.id,
        start: state.slot.start, mode: $("book-mode").value, reason: $("book-reason").value.trim(),
      }, { idempotencyKey: state.key });
      announce(status, t("booked"));
      confirm(appt, t("booked"));
    } catch (err) {
      showError(errorBox, err);
      errorBox.focus?.();
      resetKey();
    }
  });
});

$("on-demand-button").addEventListener("click", async (ev) => {
  clearError(errorBox);
  if (!state.type) {
    showError(errorBox, new Error(t("pick_type_first")));
    return;
  }
  const p = patient();
  await busy(ev.currentTarget, async () => {
    try {
      const appt = await call("POST", `/api/v1/organizations/${p.organization_id}/on-demand`, {
        patient_id: p.id, visit_type_id: state.type.id, mode: $("book-mode").value,
        reason: $("book-reason").value.trim(),
      }, { idempotencyKey: newKey() });
      announce(status, t("on_demand_ok"));
      confirm(appt, t("on_demand_title"));
    } catch (err) {
      showError(errorBox, err);
    }
  });
});

$("book-again").addEventListener("click", () => {
  $("book-confirmation").hidden = true;
  $("book-form-card").hidden = false;
  resetKey();
  loadSlots();
  $("book-date").focus();
});

$("book-date").addEventListener("change", () => { resetKey(); loadSlots(); });
$("book-mode").addEventListener("change", resetKey);
$("book-patient")?.addEventListener("change", () => { state.type = null; loadTypes(); });

const dateInput = $("book-date");
dateInput.min = today(patient().timezone || "Asia/Seoul");
dateInput.value = dateInput.min;
errorBox.setAttribute("tabindex", "-1");
loadTypes();
