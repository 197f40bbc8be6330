// The doctor's consultation note panel on the visit page: an autosaved draft, ICD-10-CM diagnoses through a
// WAI-ARIA combobox, signing, amendments as new versions, and the version history.
//
// The page renders the note as the API returns it (#note-state, `note` is null before the first save), so
// nothing is fetched on load, and every string in the page's language (#note-strings). Errors are shown by
// the API's error `code`, never by the server's English message.

import { api, ApiError } from "/static/api.js";

const SECTIONS = ["subjective", "objective", "assessment", "plan"];
const MAX_DIAGNOSES = 20;
const AUTOSAVE_MS = 1200; // after the last keystroke
const MAX_WAIT_MS = 10000; // typing without a pause still saves this often
const RETRY_MS = [2000, 4000, 8000, 15000, 30000];
const WAIT_CONSULT_MS = 10000;

const $ = (id) => document.getElementById(id);
const readJson = (id) => JSON.parse($(id)?.textContent || "null");
const fmt = (template, values) => template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined && kid !== "") el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

let panel = null;

/** Start the panel once; the module does so itself when loaded on the doctor's page. */
export function notePanel() {
  if (!panel && $("note-state") && $("note-form")) panel = start(readJson("note-state"), readJson("note-strings"));
  return panel;
}

function start(initial, S) {
  const eid = initial.encounter_id;
  const form = $("note-form");
  const root = $("note-panel");
  const locale = document.documentElement.lang || "ko";
  const noteUrl = `/api/v1/encounters/${eid}/note`;

  // --- state ---------------------------------------------------------------------------------------------
  let note = null; // the server's note (NoteOut), null until the first save
  let mode = "draft"; // "draft" | "signed" | "amending"
  let revision = 0;
  let diagnoses = []; // [{code, display, primary}] in the clinician's order
  let freeText = ""; // the API's free-text section: not edited here, but always sent back unchanged
  let savedSnapshot = ""; // the content as last accepted by the server
  let amendBase = "";
  let inflight = null;
  let queued = false;
  let timer = null;
  let retryTimer = null;
  let retries = 0;
  let firstDirtyAt = 0;
  let busy = false;
  let lastSaveError = null;

  // --- formatting and messages ---------------------------------------------------------------------------
  function when(iso) {
    const d = iso ? new Date(iso) : new Date();
    const today = d.toDateString() === new Date().toDateString();
    const opts = today ? { hour: "2-digit", minute: "2-digit" } : { dateStyle: "medium", timeStyle: "short" };
    return new Intl.DateTimeFormat(locale, opts).format(d);
  }

  function errorText(err) {
    if (!(err instanceof ApiError)) return S.err_network;
    if (err.status >= 500 && !S[`err_${err.code}`]) return S.err_network;
    if (S[`err_${err.code}`]) return S[`err_${err.code}`];
    if (err.code === "validation_failed" || err.code === "invalid") return S.err_validation;
    return S.err_generic;
  }

  const retryable = (err) => !(err instanceof ApiError) || err.status >= 500 || err.status === 429
    || err.code === "unauthenticated" || err.code === "mfa_required";

  function showError(text) { $("note-error").textContent = text || ""; }

  function setStatus(kind, text) {
    const el = $("note-save-status");
    el.dataset.state = kind;
    el.textContent = text ?? {
      new: S.status_new, dirty: S.status_dirty, saving: S.status_saving, retrying: S.status_retrying,
      not_saved: S.status_not_saved, waiting: S.status_waiting_consult,
      saved: fmt(S.status_saved, { time: when(note?.updated_at) }),
    }[kind] ?? "";
  }

  // --- content -------------------------------------------------------------------------------------------
  function content() {
    const out = {};
    for (const k of SECTIONS) out[k] = form[k].value;
    out.text = freeText;
    out.diagnoses = diagnoses.map((d) => ({ code: d.code, primary: Boolean(d.primary) }));
    return out;
  }
  const snapshot = () => JSON.stringify(content());
  const dirty = () => mode === "draft" && snapshot() !== savedSnapshot;

  function ensurePrimary() {
    if (diagnoses.length && !diagnoses.some((d) => d.primary)) diagnoses[0].primary = true;
  }

  /** Show a note from the server (or none) as the panel's state. */
  function apply(n) {
    note = n;
    revision = n?.revision ?? 0;
    freeText = n?.text ?? "";
    for (const k of SECTIONS) form[k].value = n?.[k] ?? "";
    diagnoses = (n?.diagnoses ?? []).map((d) => ({ code: d.code, display: d.display, primary: Boolean(d.primary) }));
    ensurePrimary();
    mode = !n || n.status === "draft" ? "draft" : "signed";
    $("note-amend-reason").value = "";
    markReason("");
    $("dx-live").textContent = "";
    render();
    savedSnapshot = snapshot();
    firstDirtyAt = 0;
  }

  function render() {
    renderChrome();
    renderDiagnoses();
  }

  /** Everything but the diagnosis list (re-rendering that would take the focus from its controls). */
  function renderChrome() {
    root.dataset.state = mode;
    const signed = mode === "signed";
    for (const k of SECTIONS) form[k].readOnly = signed || busy;
    const badge = $("note-badge");
    const status = mode === "amending" ? "amending" : note ? note.status : "new";
    badge.dataset.status = status;
    badge.textContent = { new: S.badge_new, draft: S.badge_draft, signed: S.badge_signed, amended: S.badge_amended,
      amending: S.badge_amending }[status] ?? "";
    $("note-save").hidden = mode !== "draft";
    $("note-sign").hidden = mode !== "draft";
    $("note-amend").hidden = mode !== "signed";
    $("note-amend-submit").hidden = mode !== "amending";
    $("note-amend-cancel").hidden = mode !== "amending";
    $("note-amend-box").hidden = mode !== "amending";
    for (const id of ["note-save", "note-sign", "note-amend", "note-amend-submit", "note-amend-cancel"]) $(id).disabled = busy;
    const info = $("note-signed-info");
    info.hidden = !note || note.status === "draft";
    if (!info.hidden) {
      const name = note.version_author_name || note.signed_by_name || S.someone;
      info.replaceChildren(fmt(S.signed_info, { name, time: when(note.version_signed_at || note.signed_at),
        version: note.version }));
      if (note.version > 1 && note.amendment_reason) {
        info.append(h("br"), fmt(S.amend_reason_info, { reason: note.amendment_reason }));
      }
    }
  }

  // --- diagnoses -----------------------------------------------------------------------------------------
  function renderDiagnoses() {
    const editable = mode !== "signed" && !busy;
    $("dx-list").replaceChildren(...diagnoses.map((d, i) => h("li", {
      class: "dx-item", "data-testid": "dx-item", "data-code": d.code, "data-primary": String(d.primary),
    },
    h("span", { class: "dx-text" }, h("span", { class: "dx-code" }, d.code), d.display),
    editable
      ? h("label", { class: "dx-primary" },
        h("input", { type: "radio", name: "dx-primary", checked: d.primary, "data-testid": "dx-primary",
          "aria-label": fmt(S.primary_for, { code: d.code }), onchange: () => setPrimary(i) }), S.primary)
      : d.primary ? h("span", { class: "badge dx-primary-badge", "data-testid": "dx-primary-badge" }, S.primary) : null,
    editable
      ? h("button", { type: "button", class: "secondary small", "data-testid": "dx-remove",
        "aria-label": fmt(S.remove_for, { code: d.code }), onclick: () => removeDiagnosis(i) }, S.remove)
      : null)));
    $("dx-empty").hidden = diagnoses.length > 0;
    $("dx-editor").hidden = !editable;
  }

  function setPrimary(i) {
    diagnoses.forEach((d, j) => { d.primary = j === i; });
    for (const [j, li] of [...$("dx-list").children].entries()) li.dataset.primary = String(j === i);
    edited();
  }

  function removeDiagnosis(i) {
    const [gone] = diagnoses.splice(i, 1);
    ensurePrimary();
    renderDiagnoses();
    const buttons = $("dx-list").querySelectorAll('[data-testid="dx-remove"]');
    (buttons[Math.min(i, buttons.length - 1)] || $("dx-input")).focus();
    $("dx-live").textContent = fmt(S.dx_removed, { code: gone.code });
    edited();
  }

  function addDiagnosis(item) {
    if (diagnoses.some((d) => d.code === item.code)) {
      $("dx-live").textContent = fmt(S.dx_duplicate, { code: item.code });
      return false;
    }
    if (diagnoses.length >= MAX_DIAGNOSES) {
      $("dx-live").textContent = fmt(S.dx_too_many, { n: MAX_DIAGNOSES });
      return false;
    }
    diagnoses.push({ code: item.code, display: item.display, primary: diagnoses.length === 0 });
    renderDiagnoses();
    $("dx-live").textContent = fmt(S.dx_added, { code: item.code, display: item.display });
    edited();
    return true;
  }

  // WAI-ARIA combobox with a listbox popup, list autocomplete with manual selection: focus stays in the
  // input; the active option is aria-activedescendant; Enter adds it, Escape closes (then clears).
  function combobox() {
    const input = $("dx-input");
    const listbox = $("dx-listbox");
    const live = $("dx-live");
    let options = [];
    let active = -1;
    let seq = 0;
    let debounce = null;
    let shownFor = ""; // the query the options belong to
    let enterPending = false;
    const norm = (s) => s.replace(/[\s.]/g, "").toUpperCase();

    function open() {
      if (!options.length) return;
      listbox.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }
    function close() {
      listbox.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
      for (const li of listbox.children) li.setAttribute("aria-selected", "false");
    }
    function move(i) {
      if (!options.length) return;
      active = (i + options.length) % options.length;
      for (const [j, li] of [...listbox.children].entries()) li.setAttribute("aria-selected", String(j === active));
      const li = listbox.children[active];
      input.setAttribute("aria-activedescendant", li.id);
      li.scrollIntoView({ block: "nearest" });
    }
    function renderOptions() {
      listbox.replaceChildren(...options.map((o, i) => {
        const added = diagnoses.some((d) => d.code === o.code);
        return h("li", { role: "option", id: `dx-opt-${i}`, class: "dx-option", "aria-selected": "false",
          "aria-disabled": added ? "true" : null, "data-testid": "dx-option", "data-code": o.code, "data-index": i },
        h("span", { class: "dx-code" }, o.code), o.display,
        added ? h("span", { class: "dx-note" }, `(${S.dx_already})`) : null);
      }));
    }
    function choose(i) {
      const o = options[i];
      if (!o) return;
      if (addDiagnosis(o)) {
        input.value = "";
        options = [];
        shownFor = "";
        seq++;
        close();
        listbox.replaceChildren();
      }
    }
    function exactMatch() {
      const want = norm(input.value);
      return options.findIndex((o) => norm(o.code) === want);
    }
    async function search(q) {
      const my = ++seq;
      try {
        const r = await api("GET", `/api/v1/icd10?q=${encodeURIComponent(q)}&limit=10`);
        if (my !== seq) return;
        options = r.items;
        shownFor = q;
        active = -1;
        input.removeAttribute("aria-activedescendant");
        renderOptions();
        if (options.length) {
          open();
          live.textContent = fmt(S.dx_results, { n: options.length });
        } else {
          close();
          live.textContent = S.dx_no_results;
        }
        if (enterPending) {
          enterPending = false;
          const i = exactMatch();
          if (i >= 0) choose(i);
        }
      } catch {
        if (my !== seq) return;
        enterPending = false;
        options = [];
        close();
        live.textContent = S.dx_search_failed;
      }
    }
    function searchNow() {
      clearTimeout(debounce);
      const q = input.value.trim();
      if (q && q !== shownFor) search(q);
    }

    input.addEventListener("input", () => {
      clearTimeout(debounce);
      enterPending = false;
      const q = input.value.trim();
      if (!q) {
        seq++;
        options = [];
        shownFor = "";
        close();
        live.textContent = "";
        return;
      }
      debounce = setTimeout(() => search(q), 200);
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.isComposing) return; // Enter ends an IME composition (Korean input) first
      const isOpen = !listbox.hidden;
      switch (ev.key) {
        case "ArrowDown":
          ev.preventDefault();
          if (ev.altKey) { open(); return; }
          if (!isOpen) {
            if (options.length && shownFor === input.value.trim()) { open(); move(0); } else searchNow();
            return;
          }
          move(active + 1);
          return;
        case "ArrowUp":
          ev.preventDefault();
          if (ev.altKey) { close(); return; }
          if (!isOpen) {
            if (options.length && shownFor === input.value.trim()) { open(); move(options.length - 1); }
            return;
          }
          move(active - 1);
          return;
        case "Enter":
          ev.preventDefault(); // never submits the note form
          if (isOpen && active >= 0) { choose(active); return; }
          if (shownFor === input.value.trim()) {
            const i = exactMatch();
            if (i >= 0) choose(i);
          } else if (input.value.trim()) {
            enterPending = true; // "J06.9⏎" typed faster than the search answers
            searchNow();
          }
          return;
        case "Escape":
          if (isOpen) { ev.preventDefault(); close(); } else if (input.value) {
            ev.preventDefault();
            input.value = "";
            options = [];
            shownFor = "";
            live.textContent = "";
          }
          return;
        case "Tab":
          close();
          return;
        default:
      }
    });
    input.addEventListener("blur", close);
    listbox.addEventListener("mousedown", (ev) => ev.preventDefault()); // keep focus (and the list) in place
    listbox.addEventListener("click", (ev) => {
      const li = ev.target.closest('[role="option"]');
      if (li) choose(Number(li.dataset.index));
    });
  }

  // --- autosave ------------------------------------------------------------------------------------------
  function edited() {
    if (mode !== "draft") return;
    showError("");
    if (!dirty()) {
      clearTimeout(timer);
      if (note && !inflight) setStatus("saved");
      return;
    }
    setStatus("dirty");
    clearTimeout(retryTimer);
    retries = 0;
    const now = Date.now();
    if (!firstDirtyAt) firstDirtyAt = now;
    clearTimeout(timer);
    timer = setTimeout(save, Math.max(0, Math.min(AUTOSAVE_MS, firstDirtyAt + MAX_WAIT_MS - now)));
  }

  /** Save until the server holds what is on screen (or an error stops it); true when it does. */
  function save() {
    clearTimeout(timer);
    clearTimeout(retryTimer);
    if (inflight) {
      queued = true;
      return inflight;
    }
    inflight = (async () => {
      try {
        let ok = true;
        do {
          queued = false;
          ok = await saveOnce();
        } while (ok && queued && dirty());
        return ok && !dirty();
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  async function saveOnce() {
    if (mode !== "draft") return false;
    if (!dirty()) {
      if (note) setStatus("saved");
      return true;
    }
    const body = content();
    const sent = JSON.stringify(body);
    setStatus("saving");
    try {
      const n = await api("PUT", noteUrl, { revision, ...body });
      note = n;
      revision = n.revision;
      savedSnapshot = sent;
      retries = 0;
      firstDirtyAt = 0;
      if (mode === "draft") {
        renderChrome();
        if (dirty()) edited(); else setStatus("saved");
      }
      return true;
    } catch (err) {
      await saveFailed(err);
      return false;
    }
  }

  async function saveFailed(err) {
    lastSaveError = err;
    const code = err instanceof ApiError ? err.code : "";
    if (code === "stale_revision" || code === "note_signed") {
      await reload(code === "note_signed" ? S.err_note_signed : S.err_stale_revision);
      return;
    }
    if (code === "encounter_not_started") {
      setStatus("waiting");
      retryTimer = setTimeout(save, WAIT_CONSULT_MS);
      return;
    }
    if (retryable(err)) {
      setStatus("retrying");
      if (code === "unauthenticated" || code === "mfa_required") showError(errorText(err));
      retryTimer = setTimeout(save, RETRY_MS[Math.min(retries++, RETRY_MS.length - 1)]);
      return;
    }
    setStatus("not_saved");
    showError(errorText(err)); // waits for the next edit or an explicit save
  }

  /** Finish any pending save before signing; true when the server holds exactly what is on screen. */
  async function flush() {
    if (!dirty() && !inflight) return true;
    return save();
  }

  /** Signing needs the server to hold what is on screen; when it cannot, say why (the status only retries). */
  async function flushForSigning() {
    if (await flush()) return true;
    if (!$("note-error").textContent) showError(errorText(lastSaveError));
    return false;
  }

  /** The server's version wins (never overwritten); the doctor's unsaved text is kept in view to copy. */
  async function reload(message) {
    const local = content();
    const localDx = diagnoses.map((d) => `${d.code} ${d.display}`);
    let n;
    try {
      n = await api("GET", noteUrl);
    } catch (err) {
      setStatus("not_saved");
      showError(errorText(err));
      return;
    }
    apply(n);
    const lost = SECTIONS.filter((k) => local[k].trim() && local[k] !== form[k].value)
      .map((k) => [S[k], local[k]]);
    const serverDx = diagnoses.map((d) => `${d.code} ${d.display}`);
    if (localDx.join("\n") !== serverDx.join("\n") && localDx.length) lost.push([S.confirm_diagnoses, localDx.join("\n")]);
    $("note-conflict-text").replaceChildren(...lost.flatMap(([label, text]) => [h("h3", {}, label), h("pre", {}, text)]));
    $("note-conflict").hidden = lost.length === 0;
    showError(message);
    if (mode === "draft") setStatus("saved", S.status_reloaded);
    else setStatus("signed", "");
  }

  // --- confirmation ----------------------------------------------------------------------------------------
  function confirmDialog(title, body, ok) {
    const dlg = $("note-confirm");
    $("note-confirm-h").textContent = title;
    $("note-confirm-ok").textContent = ok;
    $("note-confirm-body").replaceChildren(
      h("p", {}, body),
      h("p", {}, h("strong", {}, S.confirm_diagnoses)),
      h("ul", {}, diagnoses.map((d) => h("li", {}, `${d.code} ${d.display}`, d.primary ? ` (${S.primary})` : ""))));
    dlg.returnValue = "";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "confirm"), { once: true });
      dlg.showModal();
      $("note-confirm-cancel").focus(); // signing cannot be undone: the safe choice has focus
    });
  }

  function setBusy(on) {
    busy = on;
    render();
  }

  // --- sign ------------------------------------------------------------------------------------------------
  async function sign() {
    showError("");
    if (!diagnoses.length) {
      showError(S.err_diagnosis_required);
      $("dx-input").focus();
      return;
    }
    if (!(await flushForSigning()) || !note) return;
    if (!(await confirmDialog(S.confirm_sign_title, S.confirm_sign_body, S.confirm_sign_ok))) return;
    if (!(await flushForSigning())) return;
    setBusy(true);
    try {
      const n = await api("POST", `/api/v1/notes/${note.id}/sign`, { revision });
      busy = false;
      apply(n);
      setStatus("signed", S.status_signed);
      $("note-signed-info").focus();
      refreshHistory();
    } catch (err) {
      setBusy(false);
      if (err instanceof ApiError && (err.code === "stale_revision" || err.code === "note_signed")) {
        await reload(S[`err_${err.code}`]);
      } else {
        showError(errorText(err));
        if (err instanceof ApiError && err.code === "diagnosis_required") $("dx-input").focus();
      }
    }
  }

  // --- amend -----------------------------------------------------------------------------------------------
  function markReason(text) {
    $("note-amend-reason-error").textContent = text;
    if (text) $("note-amend-reason").setAttribute("aria-invalid", "true");
    else $("note-amend-reason").removeAttribute("aria-invalid");
  }

  function startAmend() {
    showError("");
    $("note-conflict").hidden = true;
    mode = "amending";
    amendBase = snapshot();
    render();
    setStatus("amending", "");
    $("note-amend-reason").focus();
  }

  function cancelAmend() {
    showError("");
    apply(note);
    setStatus("signed", "");
    $("note-amend").focus();
  }

  async function submitAmend() {
    showError("");
    const reason = $("note-amend-reason").value.trim();
    if (!reason) {
      markReason(S.reason_required);
      $("note-amend-reason").focus();
      return;
    }
    markReason("");
    if (!diagnoses.length) {
      showError(S.err_diagnosis_required);
      $("dx-input").focus();
      return;
    }
    if (snapshot() === amendBase) {
      showError(S.err_no_change);
      return;
    }
    const next = (note.version || 0) + 1;
    if (!(await confirmDialog(fmt(S.confirm_amend_title, { version: next }), S.confirm_amend_body,
      S.confirm_amend_ok))) return;
    const body = { revision, reason, ...content() };
    setBusy(true);
    try {
      const n = await api("POST", `/api/v1/notes/${note.id}/amendments`, body);
      busy = false;
      apply(n);
      setStatus("signed", fmt(S.status_amended, { version: n.version }));
      $("note-signed-info").focus();
      refreshHistory();
    } catch (err) {
      setBusy(false);
      const code = err instanceof ApiError ? err.code : "";
      if (code === "stale_revision") {
        await reload(S.err_stale_revision);
      } else if (err instanceof ApiError && err.fields?.reason) {
        markReason(S.reason_required);
        $("note-amend-reason").focus();
      } else {
        showError(errorText(err));
      }
    }
  }

  // --- history ---------------------------------------------------------------------------------------------
  const details = $("note-history");
  let historySeq = 0;

  function refreshHistory() {
    if (details.open) loadHistory();
  }

  async function loadHistory() {
    const my = ++historySeq;
    const list = $("note-history-list");
    const status = $("note-history-status");
    $("note-version-view").hidden = true;
    if (!note || note.status === "draft") {
      list.replaceChildren();
      status.textContent = S.history_empty;
      return;
    }
    status.textContent = S.history_loading;
    let r;
    try {
      r = await api("GET", `/api/v1/notes/${note.id}/history`);
    } catch {
      if (my === historySeq) status.textContent = S.history_failed;
      return;
    }
    if (my !== historySeq) return;
    status.textContent = "";
    const latest = Math.max(...r.versions.map((v) => v.version));
    list.replaceChildren(...[...r.versions].reverse().map((v) => {
      const tags = [fmt(S.history_version, { version: v.version }),
        v.version === 1 ? S.history_original : S.history_amendment];
      if (v.version === latest) tags.push(S.history_current);
      const view = h("button", { type: "button", class: "secondary small", "data-testid": "history-view",
        "data-version": v.version }, fmt(S.history_view, { version: v.version }));
      view.addEventListener("click", () => showVersion(v, view));
      return h("li", { "data-testid": "history-version", "data-version": v.version },
        h("div", { class: "hv-main" },
          h("div", { class: "hv-title" }, tags.join(" · ")),
          h("div", { class: "hv-meta" }, fmt(S.history_by, { name: v.author_name || S.someone, time: when(v.signed_at) })),
          v.amendment_reason ? h("div", { class: "hv-reason" }, fmt(S.history_reason, { reason: v.amendment_reason })) : null),
        view);
    }));
  }

  function showVersion(v, opener) {
    const box = $("note-version-view");
    $("note-version-h").textContent = fmt(S.version_title, { version: v.version, name: v.author_name || S.someone,
      time: when(v.signed_at) });
    const rows = SECTIONS.flatMap((k) => [h("dt", {}, S[k]), h("dd", { "data-testid": `version-${k}` }, v[k] || S.empty_section)]);
    rows.push(h("dt", {}, S.confirm_diagnoses), h("dd", { "data-testid": "version-diagnoses" },
      h("ul", {}, v.diagnoses.map((d) => h("li", {}, `${d.code} ${d.display}`, d.primary ? ` (${S.primary})` : "")))));
    if (v.amendment_reason) rows.push(h("dt", {}, S.history_amendment), h("dd", {}, v.amendment_reason));
    $("note-version-body").replaceChildren(...rows);
    box.hidden = false;
    box.dataset.version = v.version;
    box.opener = opener;
    $("note-version-h").focus();
  }

  // --- wiring ----------------------------------------------------------------------------------------------
  form.addEventListener("input", (ev) => {
    if (ev.target.id === "dx-input") return;
    if (ev.target.id === "note-amend-reason") { markReason(""); return; }
    edited();
  });
  form.addEventListener("focusout", (ev) => {
    if (ev.target.tagName === "TEXTAREA" && dirty()) save();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (mode !== "draft") return;
    if (!dirty() && !inflight) {
      setStatus(note ? "saved" : "new");
      return;
    }
    await save();
  });
  $("note-sign").addEventListener("click", sign);
  $("note-amend").addEventListener("click", startAmend);
  $("note-amend-cancel").addEventListener("click", cancelAmend);
  $("note-amend-submit").addEventListener("click", submitAmend);
  $("note-conflict-dismiss").addEventListener("click", () => { $("note-conflict").hidden = true; });
  $("note-version-close").addEventListener("click", () => {
    const box = $("note-version-view");
    box.hidden = true;
    box.opener?.focus();
  });
  details.addEventListener("toggle", () => { if (details.open) loadHistory(); });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && dirty()) save();
  });
  window.addEventListener("pagehide", () => {
    // The page is going away: one last save that outlives it (its answer is never read).
    if (!dirty() || inflight) return;
    try {
      fetch(noteUrl, { method: "PUT", keepalive: true, credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({ revision, ...content() }) });
    } catch { /* too large for a keepalive request: beforeunload has warned */ }
  });
  window.addEventListener("beforeunload", (ev) => {
    const amending = mode === "amending" && (snapshot() !== amendBase || $("note-amend-reason").value.trim());
    if (dirty() || inflight || amending) {
      ev.preventDefault();
      ev.returnValue = S.unsaved_warning;
    }
  });

  combobox();
  apply(initial.note);
  if (!note) setStatus("new");
  else if (note.status === "draft") setStatus("saved");
  else setStatus("signed", "");
  return { get mode() { return mode; }, save, flush };
}

notePanel();
