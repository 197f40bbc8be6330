// Policy simulator on /admin/policy, and a renderer for policy decisions that other pages can reuse
// (a refused booking answers 403 with error.code "policy_denied" and error.decision).
const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const ko = () => document.documentElement.lang === "ko";

function labels() {
  const el = document.getElementById("policy-labels");
  return el ? JSON.parse(el.textContent) : { result: {}, obligation: {} };
}

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Reasons are shown in the page language; the rule id stays visible because it is what the law cites.
export function renderDecision(container, decision, l = labels()) {
  const r = l.result ?? {};
  container.replaceChildren();
  const head = el("p", undefined, { "data-testid": "policy-decision" });
  const verdict = el("strong", decision.allowed ? (r.allowed ?? "Allowed") : (r.denied ?? "Denied"),
    { "data-testid": "policy-decision-verdict", "data-allowed": String(decision.allowed) });
  verdict.className = decision.allowed ? "ok" : "error";
  head.append(verdict, " · ", `${r.rule_set ?? "Rule set"}: `,
    el("code", decision.rule_set ?? (r.none ?? "None"), { "data-testid": "policy-decision-rule-set" }));
  container.append(head);
  if (decision.reasons?.length) {
    container.append(el("h3", r.reasons ?? "Reasons"));
    const ul = el("ul", undefined, { "data-testid": "policy-decision-reasons" });
    for (const reason of decision.reasons) {
      const li = el("li", `${ko() ? reason.message_ko : reason.message} `);
      li.append(el("code", reason.rule));
      ul.append(li);
    }
    container.append(ul);
  }
  container.append(el("h3", r.obligations ?? "Obligations"));
  const ob = el("ul", undefined, { "data-testid": "policy-decision-obligations" });
  for (const o of decision.obligations ?? []) ob.append(el("li", l.obligation?.[o] ?? o));
  if (!decision.obligations?.length) ob.append(el("li", r.none ?? "None"));
  container.append(ob);
}

function buildInput(form) {
  const f = new FormData(form);
  const text = (name) => String(f.get(name) ?? "").trim();
  const num = (name) => (text(name) === "" ? undefined : Number(text(name)));
  let at = text("at");
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(at)) at += ":00";
  const body = {
    jurisdiction: text("jurisdiction"),
    at: at ? at + text("offset") : "",
    action: text("action"),
    participants: text("participants"),
    patient: { age: num("age"), groups: f.getAll("groups"), chronic: f.get("chronic") !== null },
    provider: {
      institution_level: text("institution_level"),
      licensed_in: text("licensed_in").split(",").map((s) => s.trim()).filter(Boolean),
    },
  };
  if (text("mode")) body.mode = text("mode");
  if (f.get("prior") !== null) {
    body.patient.prior_in_person = { days_ago: num("days_ago"), same_condition: f.get("same_condition") !== null,
      same_institution: f.get("same_institution") !== null };
  }
  const share = num("telemedicine_share");
  if (share !== undefined) body.provider.telemedicine_share = share;
  const atc = text("atc"), categories = f.getAll("categories"), days = num("days_supply");
  if (atc || categories.length || days !== undefined || body.action === "prescribe") {
    body.drug = { categories };
    if (atc) body.drug.atc = atc.toUpperCase();
    if (days !== undefined) body.drug.days_supply = days;
  }
  return body;
}

function showErrors(form, box, message, fields) {
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  box.replaceChildren();
  const entries = Object.entries(fields ?? {});
  if (!message && !entries.length) { box.hidden = true; return; }
  box.append(el("p", message));
  const ul = el("ul");
  for (const [field, problem] of entries) {
    // "patient.groups[0]" belongs to the groups fieldset; match the longest declared prefix.
    const base = field.replace(/\[\d+\]$/, "");
    const target = form.querySelector(`[data-field="${CSS.escape(field)}"]`)
      ?? form.querySelector(`[data-field="${CSS.escape(base)}"]`);
    if (target) target.setAttribute("aria-invalid", "true");
    const li = el("li");
    if (target?.id) {
      const a = el("a", field, { href: `#${target.id}` });
      li.append(a, `: ${problem}`);
    } else {
      li.textContent = `${field}: ${problem}`;
    }
    ul.append(li);
  }
  box.append(ul);
  box.hidden = false;
  box.focus?.();
}

const form = document.getElementById("policy-sim");
if (form) {
  const result = document.getElementById("sim-result");
  const errors = document.getElementById("sim-errors");
  errors.tabIndex = -1;
  const at = form.querySelector("#sim-at");
  if (at && !at.value) {
    // Default to "now" as wall-clock time in the offset shown (+09:00 unless changed).
    const now = new Date(Date.now() + 9 * 3600 * 1000);
    at.value = now.toISOString().slice(0, 16);
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const l = labels();
    showErrors(form, errors, "", {});
    try {
      const resp = await fetch("/api/v1/policy/simulate", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(buildInput(form)),
      });
      const data = await resp.json();
      if (resp.ok) {
        renderDecision(result, data, l);
      } else {
        result.replaceChildren();
        showErrors(form, errors, resp.status === 422 ? l.result.invalid : (data?.error?.message ?? l.result.failed),
          data?.error?.fields);
      }
    } catch (err) {
      showErrors(form, errors, `${l.result.failed} ${err}`, {});
    }
  });
}
