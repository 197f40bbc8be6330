// /portal: the patient's visits (join, cancel, change time), documents, prescriptions (code/QR, pharmacy,
// tracking), consents, data export and erasure. Everything goes through the JSON API.
import { CallError, announce, busy, call, clearError, fmtDateTime, h, isKo, newKey, pageData, showError, t } from "./live.js";

const data = pageData();
const $ = (id) => document.getElementById(id);

// An API refusal as one sentence in the page's language, chosen by its error code (the server's message is
// English). Policy refusals keep their reasons, which come in both languages; our own messages pass through.
const errorBox = $("portal-error");
const status = $("portal-status");
const JOIN_EARLY_MS = 30 * 60 * 1000;
let types = new Map();
let doctors = new Map();

function patient() {
  const sel = $("portal-patient");
  const id = sel ? sel.value : data.patients[0].id;
  return data.patients.find((p) => p.id === id) ?? data.patients[0];
}

function fail(err) {
  showError(errorBox, err);
  errorBox.focus();
}

function ok(text) {
  announce(status, text);
}

function nextDay(iso) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

// --- visits -------------------------------------------------------------------------------------------

function canJoin(appt, enc, now) {
  if (!enc || !["booked", "checked_in", "in_consult"].includes(enc.status)) return false;
  if (enc.status !== "booked" || appt.kind === "on_demand") return true;
  return new Date(appt.start).getTime() - now <= JOIN_EARLY_MS && now < new Date(appt.end).getTime();
}

function visitRow(appt, enc, now) {
  const p = patient();
  const vt = types.get(appt.visit_type_id);
  const name = vt ? (isKo() && vt.name_ko ? vt.name_ko : vt.name) : "";
  const statusKey = enc && enc.status !== "booked" ? enc.status : appt.status;
  const doctor = appt.practitioner_id ? doctors.get(appt.practitioner_id)?.display_name : "";
  const li = h("li", { class: "row", "data-testid": "visit-row", "data-appointment-id": appt.id,
    "data-status": statusKey },
    h("div", { class: "row-main" },
      h("strong", {}, appt.kind === "on_demand" ? t("on_demand") : fmtDateTime(appt.start, p.timezone)),
      " ", h("span", { class: "badge", "data-testid": "visit-status" }, t(`st_${statusKey}`)),
      doctor ? h("div", { "data-testid": "visit-doctor" }, `${t("doctor")}: `, h("span", { translate: "no" }, doctor))
        : null,
      h("div", { class: "muted" },
        // a visit type the clinic named only in English is marked as English on a Korean page
        name ? [h("span", { lang: isKo() && !vt.name_ko ? "en" : null }, name), " · "] : null,
        t(`mode_${appt.mode}`), appt.reason ? [" · ", h("span", { translate: "no" }, appt.reason)] : null)));
  const actions = h("div", { class: "actions" });
  if (canJoin(appt, enc, now)) {
    actions.append(h("a", { class: "button", href: `/visit/${enc.id}`, "data-testid": "join-link" }, t("join")));
  } else if (enc && enc.status === "booked" && appt.status === "booked") {
    actions.append(h("span", { class: "hint" }, t("join_opens")));
  }
  const future = new Date(appt.end).getTime() > now;
  if (future && ["booked", "proposed"].includes(appt.status) && (!enc || enc.status === "booked")) {
    if (data.links.pay) {
      actions.append(h("a", { class: "button secondary small", href: `/pay/${appt.id}`,
        "data-testid": "pay-link" }, t("pay")));
    }
    if (appt.kind === "scheduled") actions.append(rescheduleControl(appt));
    actions.append(cancelControl(appt));
  }
  li.append(actions);
  return li;
}

function cancelControl(appt) {
  const wrap = h("span", { class: "inline-confirm" });
  const start = h("button", { type: "button", class: "secondary small", "data-testid": "cancel-appointment" },
    t("cancel_visit"));
  const yes = h("button", { type: "button", class: "danger small", "data-testid": "cancel-confirm", hidden: true },
    t("cancel_confirm"));
  const no = h("button", { type: "button", class: "secondary small", hidden: true }, t("keep_visit"));
  const close = () => { start.hidden = false; yes.hidden = true; no.hidden = true; start.focus(); };
  start.addEventListener("click", () => { start.hidden = true; yes.hidden = false; no.hidden = false; yes.focus(); });
  no.addEventListener("click", close);
  wrap.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !yes.hidden) { ev.preventDefault(); close(); }
  });
  yes.addEventListener("click", () => busy(yes, async () => {
    try {
      await call("POST", `/api/v1/appointments/${appt.id}/cancel`, { reason: "" });
      ok(t("cancelled_ok"));
      await loadVisits();
    } catch (err) { fail(err); }
  }));
  wrap.append(start, yes, no);
  return wrap;
}

function rescheduleControl(appt) {
  const p = patient();
  const details = h("details", { class: "reschedule" });
  const summary = h("summary", { "data-testid": "reschedule-button" }, t("reschedule"));
  const id = `rs-${appt.id}`;
  const day = h("input", { type: "date", id, "data-testid": "reschedule-date" });
  day.value = new Intl.DateTimeFormat("en-CA", { timeZone: p.timezone }).format(new Date(appt.start));
  const slots = h("div", { class: "slot-grid", "aria-live": "polite" });
  async function load() {
    slots.replaceChildren(h("progress", { class: "progress" }));
    const q = new URLSearchParams({ visit_type_id: appt.visit_type_id, from: day.value, to: nextDay(day.value),
      tz: p.timezone });
    if (appt.practitioner_id) q.set("practitioner_id", appt.practitioner_id);
    try {
      const res = await call("GET", `/api/v1/organizations/${appt.organization_id}/slots?${q}`);
      slots.replaceChildren();
      if (!res.items.length) slots.append(h("p", { class: "hint" }, t("no_slots")));
      for (const s of res.items) {
        const b = h("button", { type: "button", class: "slot secondary", "data-testid": "reschedule-slot" },
          s.local_start.slice(11, 16));
        b.addEventListener("click", () => busy(b, async () => {
          try {
            await call("POST", `/api/v1/appointments/${appt.id}/reschedule`, { start: s.start },
              { idempotencyKey: newKey() });
            ok(t("reschedule_ok"));
            await loadVisits();
          } catch (err) { fail(err); }
        }));
        slots.append(b);
      }
    } catch (err) { slots.replaceChildren(); fail(err); }
  }
  details.addEventListener("toggle", () => { if (details.open) load(); });
  day.addEventListener("change", load);
  details.append(summary, h("label", { for: id }, t("reschedule_day")), day, slots);
  return details;
}

function docRow(enc) {
  const p = patient();
  return h("li", { class: "row", "data-testid": "document-row" },
    h("span", {}, `${t("visit_of")} ${fmtDateTime(enc.started_at || enc.scheduled_start || enc.checked_in_at, p.timezone)}`),
    h("span", { class: "actions" },
      h("a", { href: `/api/v1/encounters/${enc.id}/documents/visit-summary.pdf`, "data-testid": "doc-summary" },
        t("visit_summary")),
      h("a", { href: `/api/v1/encounters/${enc.id}/documents/medical-certificate.pdf`,
        "data-testid": "doc-certificate" }, t("certificate"))));
}

async function loadVisits() {
  const p = patient();
  const up = $("upcoming");
  const past = $("past");
  const docs = $("documents");
  try {
    const [appts, encs, vts, staff] = await Promise.all([
      call("GET", `/api/v1/appointments?patient_id=${p.id}&limit=200`),
      call("GET", `/api/v1/patients/${p.id}/encounters`),
      types.size ? Promise.resolve(null) : call("GET", `/api/v1/organizations/${p.organization_id}/visit-types?include_inactive=true`)
        .catch(() => null),
      doctors.size ? Promise.resolve(null) : call("GET", `/api/v1/organizations/${p.organization_id}/practitioners`)
        .catch(() => null),
    ]);
    if (vts) types = new Map(vts.items.map((v) => [v.id, v]));
    if (staff) doctors = new Map(staff.items.map((d) => [d.user_id, d]));
    const byAppt = new Map(encs.items.filter((e) => e.appointment_id).map((e) => [e.appointment_id, e]));
    const now = Date.now();
    const upcoming = [];
    const done = [];
    for (const a of appts.items) {
      const enc = byAppt.get(a.id);
      const finished = ["cancelled", "noshow", "fulfilled"].includes(a.status) ||
        (enc && ["completed", "cancelled", "no_show", "abandoned"].includes(enc.status)) ||
        (new Date(a.end).getTime() < now && !(enc && ["checked_in", "in_consult"].includes(enc.status)));
      (finished ? done : upcoming).push([a, enc]);
    }
    upcoming.sort((x, y) => new Date(x[0].start) - new Date(y[0].start));
    done.sort((x, y) => new Date(y[0].start) - new Date(x[0].start));
    up.replaceChildren(...upcoming.map(([a, e]) => visitRow(a, e, now)));
    if (!upcoming.length) up.append(h("li", { class: "hint" }, t("no_upcoming")));
    past.replaceChildren(...done.map(([a, e]) => visitRow(a, e, now)));
    if (!done.length) past.append(h("li", { class: "hint" }, t("no_past")));
    const completed = encs.items.filter((e) => e.status === "completed");
    docs.replaceChildren(...completed.map(docRow));
    if (!completed.length) docs.append(h("li", { class: "hint" }, t("no_documents")));
  } catch (err) {
    up.replaceChildren();
    fail(err);
  } finally {
    up.removeAttribute("aria-busy");
  }
}

// --- prescriptions ------------------------------------------------------------------------------------

function pharmacySearch(onPick, pickLabel, testid) {
  const id = `ph-q-${Math.random().toString(36).slice(2)}`;
  const input = h("input", { id, type: "search", "data-testid": "pharmacy-search", autocomplete: "off" });
  const results = h("ul", { class: "list", "aria-live": "polite", "data-testid": "pharmacy-results" });
  const btn = h("button", { type: "button", class: "secondary small", "data-testid": "pharmacy-search-button" },
    t("search"));
  async function run() {
    try {
      const res = await call("GET", `/api/v1/pharmacies?q=${encodeURIComponent(input.value.trim())}&limit=20`);
      results.replaceChildren();
      if (!res.items.length) results.append(h("li", { class: "hint" }, t("no_pharmacies")));
      for (const ph of res.items) {
        const pick = h("button", { type: "button", class: "small", "data-testid": testid }, pickLabel);
        pick.addEventListener("click", () => busy(pick, () => onPick(ph)));
        results.append(h("li", { class: "row", "data-testid": "pharmacy-option" },
          h("span", { translate: "no" }, h("strong", {}, ph.name), h("br"), h("span", { class: "muted" },
            `${ph.address} ${ph.postal_code}`)), pick));
      }
    } catch (err) { fail(err); }
  }
  btn.addEventListener("click", run);
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); run(); } });
  return h("div", { class: "stack" }, h("label", { for: id }, t("search_pharmacy")),
    h("div", { class: "search-row" }, input, btn), results);
}

function rxRow(rx) {
  const li = h("li", { class: "row", "data-testid": "rx-row", "data-rx-id": rx.id },
    h("div", { class: "row-main" }, h("strong", { translate: "no" }, rx.rx_number), " ",
      h("span", { class: "badge", "data-testid": "rx-row-status" }, t(`rx_${rx.status}`)),
      h("div", { class: "muted" }, fmtDateTime(rx.created_at, patient().timezone))));
  const actions = h("div", { class: "actions" },
    h("a", { class: "button secondary small", href: `/rx/${rx.id}`, "data-testid": "rx-track-link" }, t("track")));
  const extra = h("div", { class: "rx-extra" });
  if (["signed", "sent", "rejected"].includes(rx.status)) {
    const tok = h("button", { type: "button", class: "secondary small", "data-testid": "rx-token-button" },
      t("show_code"));
    tok.addEventListener("click", () => busy(tok, async () => {
      try {
        const res = await call("POST", `/api/v1/prescriptions/${rx.id}/token`);
        const qr = h("div", { class: "qr", "data-testid": "rx-qr" });
        qr.innerHTML = res.qr_svg; // server-generated SVG (segno), no user input
        extra.replaceChildren(h("div", { class: "token-box", "data-testid": "rx-token" },
          qr, h("dl", { class: "facts" },
            h("dt", {}, t("rx_number")), h("dd", {}, h("code", {}, res.rx_number)),
            h("dt", {}, t("access_code")), h("dd", {}, h("code", { "data-testid": "rx-access-code" }, res.access_code))),
          h("p", { class: "hint" }, t("code_hint"))));
      } catch (err) { fail(err); }
    }));
    const pdf = h("button", { type: "button", class: "secondary small", "data-testid": "rx-pdf-button" },
      t("print_pdf"));
    pdf.addEventListener("click", () => busy(pdf, async () => {
      try {
        // A POST: printing issues a fresh access code for the QR on the paper copy.
        const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
        const resp = await fetch(`/api/v1/prescriptions/${rx.id}/token.pdf?lang=${isKo() ? "ko" : "en"}`,
          { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
        if (!resp.ok) throw new CallError(resp.status, await resp.json().catch(() => null));
        window.open(URL.createObjectURL(await resp.blob()), "_blank", "noopener");
      } catch (err) { fail(err); }
    }));
    actions.append(tok, pdf);
  }
  if (["signed", "rejected"].includes(rx.status)) {
    const d = h("details", {}, h("summary", { "data-testid": "rx-choose-pharmacy" }, t("choose_pharmacy")),
      pharmacySearch(async (ph) => {
        try {
          await call("POST", `/api/v1/prescriptions/${rx.id}/send`, { pharmacy_id: ph.id }, { idempotencyKey: newKey() });
          ok(t("sent_ok"));
          await loadPrescriptions();
        } catch (err) { fail(err); }
      }, t("send_here"), "pharmacy-send"));
    extra.append(d);
  }
  li.append(actions, extra);
  return li;
}

async function loadPrescriptions() {
  const p = patient();
  const list = $("prescriptions");
  $("nominated-name").textContent = p.nominated_pharmacy_name || t("no_nominated");
  $("nominated-name").translate = !p.nominated_pharmacy_name; // a pharmacy's name is a name, not text to translate
  try {
    const res = await call("GET", `/api/v1/patients/${p.id}/prescriptions`);
    const visible = res.items.filter((r) => r.status !== "draft");
    list.replaceChildren(...visible.map(rxRow));
    if (!visible.length) list.append(h("li", { class: "hint" }, t("no_prescriptions")));
  } catch (err) { fail(err); }
}

function setupNominate() {
  $("nominate-search").replaceChildren(pharmacySearch(async (ph) => {
    const p = patient();
    try {
      await call("POST", "/portal/nominated-pharmacy", { patient_id: p.id, pharmacy_id: ph.id });
      p.nominated_pharmacy_id = ph.id;
      p.nominated_pharmacy_name = ph.name;
      $("nominated-name").textContent = ph.name;
      $("nominated-name").translate = false;
      $("nominate-box").open = false;
      ok(t("nominated_ok"));
    } catch (err) { fail(err); }
  }, t("nominate_here"), "pharmacy-nominate"));
}

// --- consents -----------------------------------------------------------------------------------------------

const KINDS = ["telemedicine", "recording", "data_sharing", "checkin_photo"];
let consentTexts = null;

async function texts() {
  if (consentTexts === null) {
    const res = await call("GET", `/api/v1/consent-texts?lang=${isKo() ? "ko" : "en"}`);
    consentTexts = new Map(res.items.map((x) => [x.kind, x]));
  }
  return consentTexts;
}

function consentTextBox(text) {
  if (!text) return null;
  return h("details", { class: "consent-details", "data-testid": `consent-text-${text.kind}` },
    h("summary", {}, t("read_text")),
    h("div", { class: "consent-text" }, h("p", {}, h("strong", {}, text.title)),
      ...text.paragraphs.map((para) => h("p", {}, para)),
      h("p", { class: "muted" }, `${t("text_version")} `, h("span", { translate: "no" }, text.version))));
}

async function loadConsents() {
  const p = patient();
  const list = $("consents");
  try {
    const [res, known] = await Promise.all([call("GET", `/api/v1/patients/${p.id}/consents`),
      texts().catch(() => new Map())]);
    list.replaceChildren();
    for (const kind of KINDS) {
      const active = res.items.find((c) => c.kind === kind && !c.revoked_at);
      const text = known.get(kind);
      const btn = active
        ? h("button", { type: "button", class: "secondary small", "data-testid": `consent-revoke-${kind}` }, t("revoke"))
        : h("button", { type: "button", class: "small", "data-testid": `consent-grant-${kind}` }, t("grant"));
      btn.addEventListener("click", () => busy(btn, async () => {
        try {
          if (active) await call("POST", `/api/v1/consents/${active.id}/revoke`);
          else await call("POST", `/api/v1/patients/${p.id}/consents`, { kind, version: text?.version });
          ok(t("saved"));
          await loadConsents();
          list.querySelector(`[data-testid$="-${kind}"]`)?.focus();
        } catch (err) { fail(err); }
      }));
      let state = t("not_granted");
      if (active) {
        state = `${t("granted")} · ${fmtDateTime(active.granted_at, p.timezone)}`;
        if (!active.current) state += ` · ${t("earlier_version")}`;
      }
      list.append(h("li", { class: "row", "data-testid": "consent-row", "data-kind": kind },
        h("div", { class: "row-main" }, t(`consent_${kind}`), " ",
          h("span", { class: `badge ${active ? "ok-badge" : ""}`, "data-testid": `consent-state-${kind}` }, state),
          consentTextBox(text)),
        btn));
    }
  } catch (err) { fail(err); }
}

// --- data ---------------------------------------------------------------------------------------------

function setupData() {
  const p = patient();
  $("export-json").href = `/api/v1/patients/${p.id}/export?format=json`;
  $("export-fhir").href = `/api/v1/patients/${p.id}/export?format=fhir`;
}

const erasureStart = $("erasure-start");
const erasurePanel = $("erasure-confirm");
erasureStart.addEventListener("click", () => {
  erasurePanel.hidden = false;
  erasureStart.setAttribute("aria-expanded", "true");
  $("erasure-reason").focus();
});
function closeErasure() {
  erasurePanel.hidden = true;
  erasureStart.setAttribute("aria-expanded", "false");
  erasureStart.focus();
}
$("erasure-cancel").addEventListener("click", closeErasure);
erasurePanel.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { ev.preventDefault(); closeErasure(); }
});
erasurePanel.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const result = $("erasure-result");
  if (!$("erasure-check").checked) {
    result.textContent = t("erasure_check_first");
    $("erasure-check").focus();
    return;
  }
  const p = patient();
  await busy(ev.submitter ?? erasurePanel.querySelector("[type=submit]"), async () => {
    try {
      await call("POST", `/api/v1/patients/${p.id}/erasure-requests`, { confirm: true,
        reason: $("erasure-reason").value.trim() }, { idempotencyKey: newKey() });
      result.textContent = t("erasure_done");
    } catch (err) { fail(err); }
  });
});

function loadAll() {
  clearError(errorBox);
  setupData();
  loadVisits();
  loadPrescriptions();
  loadConsents();
}

$("portal-patient")?.addEventListener("change", () => { types = new Map(); doctors = new Map(); loadAll(); });
setupNominate();
loadAll();
