// Payment pages: the patient's payment step (Stripe Payment Element) and the admin's fees, settlement,
// refunds and export. Every action goes through the JSON API; the server decides what is allowed.
import { api, newKey } from "./api.js";

const say = (el, text, ok = true) => {
  if (!el) return;
  el.textContent = text;
  el.className = `status ${ok ? "ok" : "error"}`;
  if (!ok) el.setAttribute("role", "alert");
};

// Major units as typed ("12.50") → integer minor units, without floating-point rounding.
export function toMinor(text, digits) {
  const m = /^\s*(\d+)(?:[.,](\d+))?\s*$/.exec(text);
  if (!m) return null;
  const frac = m[2] ?? "";
  if (frac.length > digits) return null;
  return Number(m[1] + frac.padEnd(digits, "0"));
}

async function payStep(root) {
  const id = root.dataset.paymentId;
  const msg = root.querySelector("[data-testid=pay-message]");
  const form = root.querySelector("#pay-form");
  if (!form || root.dataset.provider !== "stripe") return;
  const button = form.querySelector("button[type=submit]");
  if (typeof window.Stripe !== "function") {
    say(msg, document.documentElement.lang === "ko" ? "결제 모듈을 불러오지 못했습니다." : "Could not load the payment form.", false);
    button.disabled = true;
    return;
  }
  let payment;
  try {
    payment = await api("POST", `/api/v1/payments/${id}/pay`, {});
  } catch (err) {
    say(msg, err.message, false);
    button.disabled = true;
    return;
  }
  if (payment.pending || !payment.client_secret) {
    say(msg, payment.failure_message || msg.textContent, !payment.failure_message);
    button.disabled = !payment.client_secret;
    if (!payment.client_secret) return;
  }
  const stripe = window.Stripe(root.dataset.publishableKey);
  const elements = stripe.elements({ clientSecret: payment.client_secret, locale: document.documentElement.lang });
  elements.create("payment").mount("#payment-element");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    const { error } = await stripe.confirmPayment({ elements, redirect: "if_required" });
    if (error) {
      // Declines and validation errors come with a message Stripe has already localised.
      say(msg, error.message, false);
      button.disabled = false;
      return;
    }
    say(msg, document.documentElement.lang === "ko" ? "결제가 승인되었습니다." : "Payment authorized.");
    // The webhook records the authorization; reload once it has.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const p = await api("GET", `/api/v1/payments/${id}`);
      if (p.status !== "requires_payment" && p.status !== "failed") { location.reload(); return; }
    }
  });
}

function adminPage(root) {
  const org = root.dataset.orgId;
  const msg = root.querySelector("#payments-message");
  for (const form of root.querySelectorAll("form.fee-form")) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const status = form.querySelector(".status");
      const data = Object.fromEntries(new FormData(form).entries());
      const body = { fee: data.fee, currency: data.currency.toUpperCase(), billing_code: data.billing_code,
                     default_payer: data.default_payer, default_coverage: data.default_coverage || "0" };
      try {
        await api("PUT", `/api/v1/organizations/${org}/fees/${form.dataset.visitTypeId}`, body);
        say(status, "✓");
      } catch (err) {
        say(status, Object.values(err.fields)[0] ?? err.message, false);
      }
    });
  }
  for (const button of root.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", async () => {
      const row = button.closest("[data-payment-id]");
      const id = row.dataset.paymentId;
      const key = newKey();  // one key per click: a network retry of this click cannot act twice
      try {
        if (button.dataset.action === "mark-paid") {
          await api("POST", `/api/v1/payments/${id}/mark-paid`, { method: row.querySelector(".pay-method").value },
                    { idempotencyKey: key });
        } else if (button.dataset.action === "waive") {
          const reason = prompt(document.documentElement.lang === "ko" ? "면제 사유" : "Reason for waiving");
          if (!reason) return;
          await api("POST", `/api/v1/payments/${id}/waive`, { reason }, { idempotencyKey: key });
        } else if (button.dataset.action === "refund") {
          const input = row.querySelector(".refund-amount");
          const amount = toMinor(input.value, Number(input.dataset.digits));
          if (!amount) { say(msg, input.getAttribute("aria-label"), false); input.focus(); return; }
          await api("POST", `/api/v1/payments/${id}/refund`, { amount }, { idempotencyKey: key });
        }
        location.reload();
      } catch (err) {
        say(msg, err.message, false);
      }
    });
  }
  const exp = root.querySelector("#export-form");
  exp?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const d = new FormData(exp);
    const q = new URLSearchParams({ from: d.get("from"), to: d.get("to") });
    location.href = `/api/v1/organizations/${org}/billing/export.csv?${q}`;
  });
}

const pay = document.getElementById("pay");
if (pay) payStep(pay);
const admin = document.getElementById("payments-admin");
if (admin) adminPage(admin);
