// /book: visit type → doctor (any, or one) → day → free time → mode → reason → book (with an Idempotency-Key),
// or join the on-demand queue. Policy refusals are shown with their reasons in the page language.
//
// The free times are one radio group (name="slot"), grouped by doctor and time of day: Tab enters and leaves the
// whole list in one step, the arrow keys move between times, and every time says whose it is.
import { announce, busy, call, clearError, fmtDateTime, h, isKo, newKey, pageData, showError, t } from "./live.js";

const data = pageData();
const $ = (id) => document.getElementById(id);

// An API refusal as one sentence in the page's language, chosen by its error code (the server's message is
// English). Policy refusals keep their reasons, which come in both languages; our own messages pass through.
const form = $("book-form");
const errorBox = $("book-error");
const status = $("book-status");
const state = { types: [], type: null, slot: null, key: newKey(), tz: "Asia/Seoul", doctors: new Map(), doctor: "" };
const PERIODS = [["morning", 12], ["afternoon", 17], ["evening", 24]];

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

// --- doctors ------------------------------------------------------------------------------------------------

const languageNames = (() => {
  try { return new Intl.DisplayNames([isKo() ? "ko" : "en"], { type: "language" }); } catch { return null; }
})();

function doctorName(id) {
  return state.doctors.get(id)?.display_name || t("doctor");
}

// "Family medicine · Speaks: Korean, English", translated where the specialty is a common one.
function doctorDetails(doc) {
  const parts = [];
  if (doc?.specialty) {
    const key = `sp_${doc.specialty}`;
    const translated = t(key);
    parts.push(translated === key ? doc.specialty : translated);
  }
  if (doc?.languages?.length) {
    const names = doc.languages.map((code) => languageNames?.of(code) ?? code);
    parts.push(`${t("languages")} ${names.join(", ")}`);
  }
  return parts.join(" · ");
}

function doctorChoice(value, title, details) {
  const id = `doc-${value || "any"}`;
  const input = h("input", { type: "radio", name: "doctor", id, value, "data-testid": "doctor-option",
    "data-practitioner-id": value });
  input.checked = value === state.doctor;
  input.addEventListener("change", () => {
    state.doctor = value;
    resetKey();
    loadSlots();
  });
  return h("label", { for: id, class: "choice doctor-choice" }, input,
    h("span", { class: "doctor-text" }, h("strong", { translate: value ? "no" : null }, title),
      details ? h("span", { class: "muted" }, details) : null));
}

async function loadDoctors() {
  const p = patient();
  const box = $("doctors");
  state.doctors = new Map();
  try {
    const res = await call("GET", `/api/v1/organizations/${p.organization_id}/practitioners`);
    state.doctors = new Map(res.items.map((d) => [d.user_id, d]));
  } catch (err) {
    showError(errorBox, err);
  }
  if (!state.doctors.has(state.doctor)) state.doctor = "";
  box.replaceChildren(doctorChoice("", t("any_doctor"), t("any_doctor_hint")),
    ...[...state.doctors.values()].map((d) => doctorChoice(d.user_id, d.display_name, doctorDetails(d))));
}

// --- visit types --------------------------------------------------------------------------------------------

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
    box.append(h("label", { for: id, class: "choice" }, input, " ", h("span", { lang: isKo() && !vt.name_ko ? "en" : null }, typeName(vt)),
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

// --- free times ---------------------------------------------------------------------------------------------

function period(slot) {
  const hour = Number(slot.local_start.slice(11, 13));
  return PERIODS.find(([, until]) => hour < until)[0];
}

function showChoice() {
  const s = state.slot;
  $("slot-choice").textContent = s
    ? t("you_chose").replace("{time}", s.local_start.slice(11, 16)).replace("{doctor}", doctorName(s.practitioner_id))
    : "";
}

// Slots by doctor (the doctor free earliest first), then morning / afternoon / evening.
function groupSlots(items) {
  const byDoctor = new Map();
  for (const slot of items) {
    if (!byDoctor.has(slot.practitioner_id)) byDoctor.set(slot.practitioner_id, new Map());
    const periods = byDoctor.get(slot.practitioner_id);
    const key = period(slot);
    if (!periods.has(key)) periods.set(key, []);
    periods.get(key).push(slot);
  }
  return byDoctor;
}

async function loadSlots() {
  const box = $("slots");
  const day = $("book-date").value;
  // Only the newest request may render, and a choice made meanwhile survives a re-render of the same day.
  const gen = (state.gen = (state.gen ?? 0) + 1);
  const prev = state.slot;
  const keep = prev && state.slotDay === day && state.slotType === state.type?.id ? prev : null;
  state.slot = null;
  showChoice();
  refreshButtons();
  if (!state.type || !day) return;
  const p = patient();
  box.replaceChildren(h("p", { class: "hint", role: "status" }, h("progress", { class: "progress" }), " ",
    t("loading")));
  box.setAttribute("aria-busy", "true");
  const q = new URLSearchParams({ visit_type_id: state.type.id, from: day, to: nextDay(day), tz: state.tz });
  if (state.doctor) q.set("practitioner_id", state.doctor);
  try {
    const res = await call("GET", `/api/v1/organizations/${p.organization_id}/slots?${q}`);
    if (gen !== state.gen) return;
    box.replaceChildren();
    if (!res.items.length) {
      box.append(h("p", { class: "hint", "data-testid": "no-slots" }, t(state.doctor ? "no_slots_doctor" : "no_slots")));
    }
    let n = 0;
    for (const [doctorId, periods] of groupSlots(res.items)) {
      const name = doctorName(doctorId);
      const headId = `slots-doc-${doctorId}`;
      const group = h("section", { class: "slot-doctor", "aria-labelledby": headId, "data-testid": "slot-doctor",
        "data-practitioner-id": doctorId },
        h("h3", { id: headId, class: "slot-doctor-name", translate: "no" }, name),
        doctorDetails(state.doctors.get(doctorId)) ? h("p", { class: "muted" },
          doctorDetails(state.doctors.get(doctorId))) : null);
      for (const [key] of PERIODS) {
        const slots = periods.get(key);
        if (!slots) continue;
        const labelId = `${headId}-${key}`;
        const grid = h("div", { class: "slot-grid" });
        for (const slot of slots) {
          const id = `slot-${n++}`;
          const input = h("input", { type: "radio", name: "slot", id, value: slot.start, "data-testid": "slot-input" });
          const choose = () => {
            state.slot = slot;
            state.slotDay = day;
            state.slotType = state.type.id;
            showChoice();
            refreshButtons();
          };
          input.addEventListener("change", () => { choose(); resetKey(); });
          // The time is what the eye needs; the doctor's name is in the heading and in what a screen reader says.
          grid.append(h("label", { for: id, class: "slot", "data-testid": "slot", "data-start": slot.start,
            "data-practitioner-id": doctorId }, input, h("span", {}, slot.local_start.slice(11, 16)),
            h("span", { class: "visually-hidden" }, `, ${name}`)));
          if (keep && slot.start === keep.start && doctorId === keep.practitioner_id) {
            input.checked = true;
            choose();
          }
        }
        group.append(h("div", { class: "slot-period", role: "group", "aria-labelledby": labelId },
          h("p", { id: labelId, class: "slot-period-label" }, `${t(`period_${key}`)} (${slots.length})`), grid));
      }
      box.append(group);
    }
    announce(status, `${res.items.length} ${t("slots_found")}`);
  } catch (err) {
    if (gen !== state.gen) return;
    box.replaceChildren();
    showError(errorBox, err);
  } finally {
    if (gen === state.gen) box.removeAttribute("aria-busy");
  }
}

// --- booking ------------------------------------------------------------------------------------------------

function confirm(appt, title) {
  $("confirm-h").textContent = title;
  $("confirm-when").textContent = fmtDateTime(appt.start, state.tz);
  const doc = appt.practitioner_id ? state.doctors.get(appt.practitioner_id) : null;
  const docBox = $("confirm-doctor");
  docBox.replaceChildren(appt.practitioner_id
    ? h("span", { translate: "no" }, doctorName(appt.practitioner_id)) : t("next_available"));
  if (doc && doctorDetails(doc)) docBox.append(h("span", { class: "muted" }, ` · ${doctorDetails(doc)}`));
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
$("book-patient")?.addEventListener("change", async () => {
  state.type = null;
  await loadDoctors();
  loadTypes();
});

const dateInput = $("book-date");
dateInput.min = today(patient().timezone || "Asia/Seoul");
dateInput.value = dateInput.min;
errorBox.setAttribute("tabindex", "-1");
// Doctors first: the free times name them.
loadDoctors().then(loadTypes);
