"""The operator pages: device status and the pass desk, as self-contained HTML for clerks.

No external resources (the counter may have no internet): styles, script and texts are inline.
A page is built once per device in its language (edge.core.messages: the same catalogue as
the gate's reasons) and shows dates and times in the device's locale and time zone, whatever
the browser's own settings. The pages hold no data; their script asks the /api endpoints with
the token the clerk enters once per browser session (kept in sessionStorage, never in a URL).
Designed for a 1280x800 touchscreen at the desk and for 1920x1080 screens; keyboard first.
"""

from __future__ import annotations

import html
import json

from edge.core.decide import Reason
from edge.core.messages import catalogue, reason_label

# The locale the browser formats dates in, per device language.
LOCALES = {"en": "en-GB", "de": "de-DE", "fr": "fr-FR"}

_STYLE = """
:root { --ink: #1b1f24; --muted: #5b6470; --line: #d5d9de; --bg: #f3f4f6; --card: #fff;
  --accent: #0b5cad; --ok: #0f7a3a; --ok-bg: #e3f5ea; --bad: #b3261e; --bad-bg: #fde8e6;
  --warn: #8a5a00; --warn-bg: #fff3d6; font-size: clamp(16px, 1.25vw + 4px, 22px); }
* { box-sizing: border-box; }
body { margin: 0; font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  color: var(--ink); background: var(--bg); line-height: 1.35; }
header { display: flex; align-items: center; gap: 1.2rem; padding: .5rem 1.2rem;
  background: #17324d; color: #fff; min-height: 3.2rem; }
header h1 { font-size: 1.15rem; margin: 0; font-weight: 600; flex: 1; }
header nav a { color: #fff; text-decoration: none; padding: .5rem .8rem; border-radius: .4rem; }
header nav a[aria-current] { background: rgba(255,255,255,.18); }
header button { background: transparent; color: #fff; border: 1px solid rgba(255,255,255,.5);
  min-height: 2.4rem; font-size: .85rem; }
main { padding: 1rem 1.2rem; max-width: 110rem; margin: 0 auto; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .6rem;
  padding: .9rem 1.1rem; }
.card h2 { font-size: 1rem; margin: 0 0 .6rem; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
label { display: block; font-weight: 600; margin: .5rem 0 .2rem; }
input, textarea, button { font: inherit; }
input[type=text], input[type=password], input[type=date], input[type=number], textarea {
  width: 100%; padding: .55rem .7rem; border: 2px solid #9aa3ad; border-radius: .4rem;
  background: #fff; min-height: 2.8rem; }
input:focus, textarea:focus, button:focus-visible { outline: 3px solid #f5b400;
  outline-offset: 1px; border-color: var(--accent); }
textarea { resize: vertical; min-height: 2.8rem; }
input.invalid { border-color: var(--bad); background: var(--bad-bg); }
button { min-height: 3rem; padding: .5rem 1.1rem; border-radius: .45rem; cursor: pointer;
  border: 2px solid var(--accent); background: #fff; color: var(--accent); font-weight: 600; }
button.primary { background: var(--accent); color: #fff; font-size: 1.1rem; }
button.danger { border-color: var(--bad); color: var(--bad); }
button.danger.armed { background: var(--bad); color: #fff; }
button:disabled { opacity: .5; cursor: wait; }
.row { display: flex; gap: .8rem; align-items: end; flex-wrap: wrap; }
.row > .grow { flex: 1 1 14rem; }
.hidden { display: none !important; }
#auth { max-width: 44rem; margin: 2rem auto; }
#auth p { color: var(--muted); }
#auth code { background: var(--bg); padding: .1rem .3rem; border-radius: .2rem; }
.banner { border-radius: .6rem; padding: .6rem 1.1rem; margin: .7rem 0; border: 2px solid
  var(--line); background: var(--card); min-height: 4.2rem; }
.banner .title { font-size: 1.45rem; font-weight: 700; }
.banner .detail { margin-top: .15rem; font-size: 1rem; }
.pill { font-size: .85rem; padding: .25rem .7rem; border-radius: 1rem;
  background: rgba(255,255,255,.12); white-space: nowrap; }
.pill.on { background: #1f7a46; }
.signed-out .pill { display: none; }
.banner[data-state=ok], .banner[data-state=done] { border-color: var(--ok);
  background: var(--ok-bg); color: var(--ok); }
.banner[data-state=done] .title::before { content: "\\2714  "; }
.banner[data-state=error] { border-color: var(--bad); background: var(--bad-bg);
  color: var(--bad); }
.banner[data-state=error] .title::before { content: "\\2716  "; }
.banner[data-state=working] { border-color: var(--warn); background: var(--warn-bg);
  color: var(--warn); }
.banner[data-state=idle] .title { color: var(--muted); font-weight: 600; }
.banner .detail, .banner .title { overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 1rem; font-size: .9rem;
  font-weight: 700; background: var(--bg); border: 1px solid var(--line); }
.badge.good { background: var(--ok-bg); color: var(--ok); border-color: var(--ok); }
.badge.bad { background: var(--bad-bg); color: var(--bad); border-color: var(--bad); }
.badge.warn { background: var(--warn-bg); color: var(--warn); border-color: var(--warn); }
.note { color: var(--muted); font-size: .9rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: .9rem; }
.radios { display: flex; gap: 1.5rem; }
.label { display: block; font-weight: 600; margin: .35rem 0 .2rem; }
.radios label { font-weight: 400; display: flex; align-items: center; gap: .4rem;
  white-space: nowrap;
  min-height: 2.6rem; }
.radios input { width: 1.3rem; height: 1.3rem; }
kbd { font: inherit; font-size: .8em; border: 1px solid #9aa3ad; border-bottom-width: 2px;
  border-radius: .25rem; padding: 0 .3rem; background: #fff; color: var(--ink); }
"""

_DESK_STYLE = """
#desk-grid { display: grid; grid-template-columns: minmax(18rem, 2fr) 3fr; gap: 1rem;
  align-items: start; }
#scan-bar input#code { font-size: 1.2rem; font-family: "DejaVu Sans Mono", monospace; }
#scan-bar { padding: .6rem 1.1rem .8rem; }
#scan-bar label { margin-top: 0; }
#issue .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0 .8rem; }
#issue label { margin-top: .35rem; }
#issue .submit-row { margin-top: .9rem; display: flex; }
#issue .submit-row button.primary { flex: 1 1 auto; min-height: 3.4rem; }
#issue .format { font-weight: 400; color: var(--muted); font-size: .85rem; }
.actions { display: flex; gap: .8rem; flex-wrap: wrap; }
@media (max-width: 900px) { #desk-grid { grid-template-columns: 1fr; } }
"""

_STATUS_STYLE = """
#status-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr));
  gap: 1rem; }
#status-grid .wide { grid-column: 1 / -1; }
.reason-good { color: var(--ok); font-weight: 700; }
.reason-bad { color: var(--bad); font-weight: 700; }
"""

_HEAD = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head><body>
<header><h1>{title}</h1>
{header_extra}<nav><a href="/desk"{desk_current}>{nav_desk}</a><a href="/status"{status_current}>{nav_status}</a></nav>
<button type="button" id="sign-out" class="hidden">{sign_out}</button></header>
<main>
<section id="auth" class="card hidden"><h2>{auth_title}</h2><p>{auth_explain}</p>
<form id="auth-form"><label for="token">{token_label}</label>
<div class="row"><input id="token" class="grow" type="password" autocomplete="off">
<button type="submit" class="primary">{token_submit}</button></div></form>
<div id="auth-error" class="banner hidden" data-state="error"><div class="title"></div></div>
</section>
"""

# The page's script reads its texts and settings from this object; {…} placeholders in a text
# are filled by t(key, values).
_COMMON_JS = r"""
const $ = (id) => document.getElementById(id);
const T = PAGE.texts;
function t(key, values) {
  let text = T[key] ?? key;
  for (const [name, value] of Object.entries(values || {})) text = text.split("{" + name + "}").join(value);
  return text;
}
const dayFormat = new Intl.DateTimeFormat(PAGE.locale, { dateStyle: "long", timeZone: PAGE.zone });
const timeFormat = new Intl.DateTimeFormat(PAGE.locale, { dateStyle: "medium", timeStyle: "medium", timeZone: PAGE.zone });
const clockFormat = new Intl.DateTimeFormat(PAGE.locale, { timeStyle: "medium", timeZone: PAGE.zone });
function day(seconds) { return seconds ? dayFormat.format(new Date(seconds * 1000)) : ""; }
function isoDay(text) {
  return text ? new Intl.DateTimeFormat(PAGE.locale, { dateStyle: "long", timeZone: "UTC" }).format(new Date(text + "T00:00:00Z")) : "";
}
function moment(value) {
  if (value === null || value === undefined || value === "") return t("status.never");
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  const today = new Date();
  return (dayFormat.format(date) === dayFormat.format(today) ? clockFormat : timeFormat).format(date);
}
function today() {  // the device's date, ISO
  return new Intl.DateTimeFormat("en-CA", { timeZone: PAGE.zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
}
const numericDay = new Intl.DateTimeFormat(PAGE.locale, { day: "2-digit", month: "2-digit", year: "numeric", timeZone: "UTC" });
function typedDay(iso) { return numericDay.format(new Date(iso + "T00:00:00Z")); }
function parseDay(text) {  // a day typed the device's way (day first) or ISO; "" if none
  const s = text.trim();
  let m = s.match(/^(\d{4})-(\d{1,2})-(\d{1,2})$/), y, mo, d;
  if (m) [y, mo, d] = [+m[1], +m[2], +m[3]];
  else {
    m = s.match(/^(\d{1,2})\D+(\d{1,2})\D+(\d{2}|\d{4})$/);
    if (!m) return "";
    [d, mo, y] = [+m[1], +m[2], m[3].length === 2 ? 2000 + +m[3] : +m[3]];
  }
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return "";
  return date.toISOString().slice(0, 10);
}
function token() { return sessionStorage.getItem("edge-token") || ""; }
function showAuth(error) {
  $("auth").classList.remove("hidden"); $("sign-out").classList.add("hidden");
  document.body.classList.add("signed-out");
  $("app").classList.add("hidden");
  $("auth-error").classList.toggle("hidden", !error);
  $("auth-error").querySelector(".title").textContent = error || "";
  $("token").value = ""; $("token").focus();
}
function showApp() {
  document.body.classList.remove("signed-out"); $("auth").classList.add("hidden"); $("sign-out").classList.remove("hidden");
  $("app").classList.remove("hidden");
}
$("auth-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("token").value.trim();
  if (!value) { showAuth(t("token.wrong")); return; }
  sessionStorage.setItem("edge-token", value); showApp(); window.start();
});
$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem("edge-token"); if (window.stop) window.stop(); showAuth("");
});
class ApiError extends Error {
  constructor(message, field, status, title, detail) {
    super(message); this.field = field; this.status = status;
    this.title = title || message; this.detail = detail || "";
  }
}
async function api(path, body) {
  const init = { headers: { "Authorization": "Bearer " + token() } };
  if (body !== undefined) {
    init.method = "POST"; init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try { response = await fetch(path, init); }
  catch (err) { throw new ApiError(t("net.unreachable"), null, 0); }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (response.status === 401) {
    sessionStorage.removeItem("edge-token"); if (window.stop) window.stop();
    showAuth(t("token.wrong")); throw new ApiError(t("token.wrong"), null, 401);
  }
  if (!response.ok) throw new ApiError(data.error || response.statusText, data.field, response.status, data.title, data.detail);
  return data;
}
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}
function facts(id, rows) {
  const list = $(id); list.replaceChildren();
  for (const [label, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    list.append(el("dt", label));
    const dd = el("dd"); if (value instanceof Node) dd.append(value); else dd.textContent = value;
    list.append(dd);
  }
}
function badge(text, kind) { return el("span", text, "badge " + (kind || "")); }
function boot() { if (token()) { showApp(); window.start(); } else showAuth(""); }
"""

_DESK_BODY = """
<div id="app" class="hidden">
<form id="scan-bar" class="card" autocomplete="off">
<div class="row">
<div class="grow" style="flex-grow: 3"><label for="code">{desk_code}</label>
<input id="code" type="text" spellcheck="false"></div>
<div class="grow" style="flex: 0 1 11rem"><label for="number">{desk_number}</label>
<input id="number" type="text" inputmode="numeric"></div>
<button type="submit" id="lookup">{desk_lookup}</button>
<button type="button" id="next">{desk_new}</button>
</div></form>
<div id="result" class="banner" data-state="idle" role="status" aria-live="polite">
<div class="title" id="result-title">{desk_idle}</div>
<div class="detail" id="result-detail">{desk_idle_hint}</div></div>
<div id="desk-grid">
<section id="sale" class="card hidden"><h2 id="sale-heading"></h2><dl class="facts" id="sale-facts"></dl>
<p class="note hidden" id="sale-offline">{found_offline}</p></section>
<div>
<form id="issue" class="card hidden" autocomplete="off"><h2>{form_title}</h2>
<div class="pair"><div><label for="surname">{form_surname}</label><input id="surname" type="text"></div>
<div><label for="first_name">{form_first_name}</label><input id="first_name" type="text"></div></div>
<label for="address">{form_address}</label>
<div class="row"><input id="address" class="grow" type="text">
<button type="button" id="no-address" tabindex="-1">{form_no_address}</button></div>
<div class="pair"><div><label for="valid_from">{form_valid_from}
<span class="format">({form_day_format})</span></label>
<input id="valid_from" type="text" inputmode="numeric"></div>
<div><span class="label" id="shipping-label">{form_shipping}</span>
<div class="radios" role="radiogroup" aria-labelledby="shipping-label">
<label><input type="radio" name="shipping" value="pickup" id="pickup" checked> {form_pickup}</label>
<label><input type="radio" name="shipping" value="post" id="post"> {form_post}</label></div></div></div>
<div class="submit-row"><button type="submit" id="print-card" class="primary">{form_submit}</button></div>
</form>
<section id="actions" class="card hidden"><div class="actions">
<button type="button" id="print-ticket" class="hidden">{action_ticket}</button>
<button type="button" id="extend" class="hidden">{action_extend}</button>
<button type="button" id="replace" class="danger hidden">{action_replace}</button>
<button type="button" id="cancel" class="danger hidden">{action_cancel}</button>
<button type="button" id="print-terms" class="hidden">{action_terms}</button>
</div></section>
</div></div></div>
"""

_DESK_JS = """
let current = null;   // the sale on screen
let scanned = null;   // the code it was found by (null for a pass number)
let busy = false;
function result(state, title, detail) {
  const box = $("result"); box.dataset.state = state;
  $("result-title").textContent = title; $("result-detail").textContent = detail || "";
}
function idle() { result("idle", t("desk.idle"), t("desk.idle.hint")); }
function word(prefix, value) { return T[prefix + value] ?? value; }
function stateBadge(state) {
  return badge(word("state.", state), state === "active" ? "good" : state === "redeemed" ? "warn" : "bad");
}
function hideWork() { for (const id of ["sale", "issue", "actions"]) $(id).classList.add("hidden"); }
function show(sale, extra) {
  current = sale;
  const voucher = sale.kind === "voucher" && sale.state === "active";
  const isPass = sale.kind === "pass";
  $("sale-heading").textContent = T["heading." + sale.kind] ?? word("kind.", sale.kind);
  const buyer = sale.buyer ? [[sale.buyer[1], sale.buyer[0]].filter(Boolean).join(" "), sale.buyer[2]]
    .filter((part) => part && part !== "n.a.").join(", ") : "";
  const valid = sale.valid_from || sale.valid_until
    ? t("sale.valid.range", { start: day(sale.valid_from), end: day(sale.valid_until) }) : "";
  facts("sale-facts", [
    [t("sale.state"), stateBadge(sale.state)],
    [t("sale.product"), sale.pass_name || sale.product || word("kind.", sale.kind)],
    [t("sale.holder"), sale.holder], [t("sale.buyer"), buyer],
    [t("sale.valid"), valid], [t("sale.number"), String(sale.credential)],
    [t("sale.sale"), sale.sale], [t("sale.pass"), sale.pass ? String(sale.pass) : ""], ...(extra || [])]);
  $("sale-offline").classList.toggle("hidden", sale.source === "central");
  $("sale").classList.remove("hidden");
  $("issue").classList.toggle("hidden", !voucher);
  const active = sale.state === "active";
  $("print-ticket").classList.toggle("hidden", isPass || !active || !PAGE.ticket);
  for (const id of ["extend", "replace", "cancel"]) $(id).classList.toggle("hidden", !isPass || !active);
  $("print-terms").classList.toggle("hidden", !PAGE.terms || (!isPass && !voucher && sale.state !== "redeemed"));
  disarm();
  $("actions").classList.toggle("hidden", ![...$("actions").querySelectorAll("button")].some((b) => !b.classList.contains("hidden")));
}
function fillForm(sale) {
  const [surname, first, address] = sale.buyer || ["", "", ""];
  $("surname").value = surname || ""; $("first_name").value = first || ""; $("address").value = address || "";
  $("valid_from").value = typedDay(today()); $("pickup").checked = true;
  $("surname").focus(); $("surname").select();
}
function announce(sale) {
  if (sale.kind === "voucher" && sale.state === "redeemed") result("error", t("found.redeemed"), sale.pass ? t("sale.pass") + ": " + sale.pass : "");
  else if (sale.state !== "active") result("error", t("found.inactive", { kind: word("kind.", sale.kind), state: word("state.", sale.state) }));
  else {
    const until = sale.kind === "pass" && sale.valid_until ? t("status.op.until", { date: day(sale.valid_until) }) : "";
    result("ok", T["found." + sale.kind] ?? t("found.other", { kind: word("kind.", sale.kind) }), [sale.holder, until].filter(Boolean).join(", "));
  }
}
async function lookup(code, number) {
  hideWork(); result("working", t("working"));
  try {
    const sale = await api("/api/v1/desk/lookup", number ? { number: Number(number) } : { code });
    scanned = number ? null : code;
    show(sale); announce(sale);
    if (sale.kind === "voucher" && sale.state === "active") fillForm(sale); else $("code").focus();
    return sale;
  } catch (err) { failed(err); if (!err.field) $("code").select(); return null; }
}
function failed(err) {
  result("error", err.title || err.message, err.detail);
  const field = err.field && $(err.field);
  if (field && !field.closest(".hidden")) {
    field.classList.add("invalid"); field.setAttribute("aria-invalid", "true");
    field.focus(); if (field.select) field.select();
  }
}
document.addEventListener("input", (e) => { e.target.classList.remove("invalid"); e.target.removeAttribute("aria-invalid"); });
function ready() { $("code").value = ""; $("number").value = ""; $("code").focus(); }  // the next scan
function reset() {
  current = null; scanned = null; hideWork(); idle();
  $("code").value = ""; $("number").value = ""; $("code").focus();
}
$("scan-bar").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = $("code").value.trim(), number = $("number").value.trim();
  if (!code && !number) { result("error", T["error.scan_or_number"]); $("code").focus(); return; }
  lookup(number && !code ? null : code, number && !code ? number : null);
});
$("next").addEventListener("click", reset);
$("no-address").addEventListener("click", () => { $("address").value = "n.a."; $("print-card").focus(); });
async function act(button, path, body, done) {
  if (busy) return null;
  busy = true; button.disabled = true; result("working", t("working"));
  try { const r = await api(path, body); done(r); return r; }
  catch (err) { failed(err); return null; }
  finally { busy = false; button.disabled = false; }
}
$("issue").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (busy) return;
  const validFrom = parseDay($("valid_from").value);
  if (!validFrom) { failed(new ApiError(T["error.valid_from"] + " (" + T["form.day_format"] + ")", "valid_from")); return; }
  const form = { voucher: scanned, surname: $("surname").value, first_name: $("first_name").value,
    address: $("address").value, valid_from: validFrom,
    shipping: document.querySelector("input[name=shipping]:checked").value };
  busy = true; $("print-card").disabled = true; result("working", t("form.printing"));
  let r = null;
  try { r = await api("/api/v1/desk/issue", form); }
  catch (err) { failed(err); return; }
  finally { busy = false; $("print-card").disabled = false; }
  const detail = t("done.issued.detail", { holder: r.holder, until: isoDay(r.valid_until), card: r.card }) + " " +
    (r.chip ? t("done.chip", { uid: r.chip }) + " " : "") + t(r.state === "sent" ? "done.sent" : "done.queued");
  $("issue").classList.add("hidden");
  // The sale as it is now: the new pass (the central system knows it once the issue is sent),
  // else the voucher, redeemed.
  const voucher = scanned;
  try {
    const card = await api("/api/v1/desk/lookup", { code: r.card });
    scanned = r.card; show(card, [[t("sale.voucher"), stateBadge("redeemed")]]);
  } catch (err) {
    try { show(await api("/api/v1/desk/lookup", { code: voucher })); } catch (again) { /* the result stands */ }
  }
  result("done", t("done.issued"), detail);
  $("code").value = ""; $("number").value = ""; $("code").focus();
});
// Esc: the next customer; Alt+N: no address; Alt+T: the terms.
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") { e.preventDefault(); reset(); }
  else if (e.altKey && (e.key === "n" || e.key === "N") && !$("issue").classList.contains("hidden")) {
    e.preventDefault(); $("no-address").click();
  } else if (e.altKey && (e.key === "t" || e.key === "T") && !$("print-terms").classList.contains("hidden")) {
    e.preventDefault(); $("print-terms").click();
  }
});
let armed = null;
function disarm() {
  for (const id of ["replace", "cancel"]) { $(id).classList.remove("armed"); $(id).textContent = t("action." + id); }
  armed = null;
}
function confirmFirst(button, text) {  // a second press within 8 s does it
  if (armed === button.id) { disarm(); return true; }
  disarm(); armed = button.id; button.classList.add("armed"); button.textContent = text;
  setTimeout(() => { if (armed === button.id) disarm(); }, 8000);
  return false;
}
$("extend").addEventListener("click", () => act($("extend"), "/api/v1/desk/extend",
  { credential: current.credential, code: scanned },
  async (r) => {
    const notes = [t(r.state === "sent" ? "done.sent" : "done.queued")];
    if (r.reprinted) notes.push(t("done.reprinted")); else if (r.note) notes.push(t("done.scan_to_reprint"));
    try { show(await api("/api/v1/desk/lookup", scanned ? { code: scanned } : { number: current.credential })); } catch (err) { /* stands */ }
    result("done", t("done.extended", { until: isoDay(r.valid_until) }), notes.join(" "));
  }));
$("replace").addEventListener("click", () => {
  if (!confirmFirst($("replace"), t("confirm.replace", { number: current.credential }))) return;
  act($("replace"), "/api/v1/desk/replace", { credential: current.credential }, (r) => {
    hideWork(); result("done", t("done.replaced"), t("done.replaced.detail", { card: r.card }) + " " +
      (r.chip ? t("done.chip", { uid: r.chip }) + " " : "") + t(r.state === "sent" ? "done.sent" : "done.queued"));
    ready();
  });
});
$("cancel").addEventListener("click", () => {
  if (!confirmFirst($("cancel"), t("confirm.cancel"))) return;
  act($("cancel"), "/api/v1/desk/cancel", { credential: current.credential }, (r) => {
    hideWork(); result("done", t("done.cancelled"), t(r.state === "sent" ? "done.sent" : "done.queued"));
    ready();
  });
});
$("print-ticket").addEventListener("click", () => act($("print-ticket"), "/api/v1/desk/ticket", { code: scanned },
  (r) => result("done", t("done.ticket", { printer: r.printer }))));
$("print-terms").addEventListener("click", () => act($("print-terms"), "/api/v1/desk/terms", {},
  (r) => result("done", t("done.terms", { printer: r.printer, pages: r.pages }))));
let socket = null, retry = null;
window.stop = () => { if (socket) { socket.onclose = null; socket.close(); socket = null; } clearTimeout(retry); };
window.start = () => {
  if (!current) { idle(); $("code").focus(); }
  if (socket) return;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/scans";
  socket = new WebSocket(url);
  socket.onopen = () => socket.send(JSON.stringify({ token: token() }));
  socket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "ready") {
      $("scanner").textContent = m.scanners.length ? t("desk.scanner.ready", { names: m.scanners.join(", ") }) : t("desk.scanner.none");
      $("scanner").classList.toggle("on", m.scanners.length > 0);
    }
    if (m.type === "scan" && !busy) { $("code").value = m.code; $("number").value = ""; lookup(m.code, null); }
  };
  socket.onclose = (event) => {
    socket = null; $("scanner").textContent = t("desk.scanner.off"); $("scanner").classList.remove("on");
    if (event.code === 4401) { sessionStorage.removeItem("edge-token"); showAuth(t("token.wrong")); return; }
    retry = setTimeout(() => { if (token()) window.start(); }, 2000);
  };
};
boot();
"""

_STATUS_BODY = """
<div id="app" class="hidden">
<div id="result" class="banner" data-state="idle" role="status"><div class="title" id="device"></div>
<div class="detail" id="updated"></div></div>
<div id="status-grid">
<section class="card"><h2>{sync}</h2><dl class="facts" id="sync"></dl></section>
<section class="card"><h2>{queues}</h2><dl class="facts" id="queues"></dl></section>
<section class="card"><h2>{printers}</h2><dl class="facts" id="printers"></dl></section>
<section class="card"><h2>{scanners}</h2><dl class="facts" id="scanners"></dl></section>
<section class="card wide hidden" id="refused-card"><h2>{refused}</h2><table><thead><tr>
<th>{col_time}</th><th>{col_lane}</th><th>{col_direction}</th><th>{col_detail}</th><th>{col_code}</th>
</tr></thead><tbody id="refused"></tbody></table><p class="note hidden" id="no-refused"></p></section>
<section class="card wide" id="decisions-card"><h2>{decisions}</h2><table><thead><tr><th>{col_time}</th>
<th>{col_lane}</th><th>{col_direction}</th><th>{col_result}</th><th>{col_code}</th></tr></thead>
<tbody id="decisions"></tbody></table><p class="note hidden" id="no-decisions">{no_decisions}</p></section>
<section class="card wide" id="desk-card"><h2>{desk}</h2><table><thead><tr><th>{col_time}</th>
<th>{col_operation}</th><th>{col_state}</th><th>{col_detail}</th></tr></thead>
<tbody id="desk"></tbody></table><p class="note hidden" id="no-desk">{no_desk}</p></section>
</div></div>
"""

_STATUS_JS = """
function rows(id, values, emptyId) {
  const body = $(id); body.replaceChildren();
  for (const cells of values) {
    const tr = el("tr");
    for (const cell of cells) { const td = el("td"); if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? ""; tr.append(td); }
    body.append(tr);
  }
  $(emptyId).classList.toggle("hidden", values.length > 0);
  body.closest("table").classList.toggle("hidden", values.length === 0);
}
function pretixFacts(sync) {
  const kind = sync.status === "ok" ? "good" : sync.status === "offline" ? "bad" : "warn";
  const state = sync.status === "ok" ? "current" : sync.status;
  return [[t("status.sync.status"), badge("pretix: " + (T["status.sync." + state] ?? sync.status), kind)],
    [t("status.pretix.pull"), moment(sync.last_pull)], [t("status.pretix.uploaded"), String(sync.uploaded)],
    [t("status.pretix.refused"), String(sync.refused)], [t("status.sync.error"), sync.last_error]];
}
function syncFacts(sync) {
  if (!sync) return [[t("status.sync.status"), badge(t("status.sync.none"), "warn")]];
  if (sync.refusals !== undefined) return pretixFacts(sync);
  const kind = sync.status === "current" ? "good" : sync.status === "offline" ? "bad" : "warn";
  return [[t("status.sync.status"), badge(T["status.sync." + sync.status] ?? sync.status, kind)],
    [t("status.sync.revision"), sync.lag ? sync.revision + " (" + t("status.sync.lag", { lag: sync.lag }) + ")" : String(sync.revision ?? "")],
    [t("status.sync.contact"), moment(sync.last_contact)],
    [t("status.sync.clock"), sync.clock_offset_seconds == null ? "" : String(sync.clock_offset_seconds)],
    [t("status.sync.error"), sync.last_error]];
}
function printerState(p) {
  const state = p.state.startsWith("offline") ? "offline" : p.state;
  const kind = state === "ready" ? "good" : state === "unknown" || state === "busy" ? "" : "bad";
  const box = el("span"); box.append(badge(T["printer." + state] ?? state, kind));
  const notes = [];
  if (p.pending) notes.push(t("status.printer.pending", { count: p.pending }));
  if (p.paused) notes.push(t("status.printer.paused", { why: p.paused }));
  if (notes.length) box.append(" " + notes.join(", "));
  return box;
}
function opDetail(op) {
  if (!op.detail) return "";
  if (op.state === "rejected") return op.detail;
  try {
    const d = JSON.parse(op.detail), parts = [];
    if (d.credential) parts.push(t("status.op.pass", { number: d.credential }));
    if (d.valid_until) parts.push(t("status.op.until", { date: day(d.valid_until) }));
    return parts.join(", ");
  } catch (err) { return op.detail; }
}
async function refresh() {
  try {
    const s = await api("/api/v1/status");
    $("device").textContent = t("status.title", { device: s.device });
    facts("sync", syncFacts(s.sync));
    const print = Object.values(s.queues.print || {}).reduce((a, b) => a + b, 0);
    facts("queues", [[t("status.queue.journal"), String(s.queues.journal)], [t("status.queue.print"), String(print)],
      [t("status.queue.desk"), s.queues.desk ? String(s.queues.desk.queued) : ""]]);
    const printers = await api("/api/v1/printers");
    facts("printers", printers.printers.map((p) => [p.name + " (" + (T["status.printer.kind." + p.kind] ?? p.kind) + ")", printerState(p)]));
    facts("scanners", s.scanners.length ? s.scanners.map((x) => [x.name, x.last_scan ? t("status.scanner.last", { time: moment(x.last_scan) }) : t("status.scanner.last", { time: t("status.never") })])
      : [["", t("status.scanners.none")]]);
    // A counter without lanes has no passages; a gate without a desk no desk operations.
    $("decisions-card").classList.toggle("hidden", s.decisions.length === 0 && s.desk_operations !== undefined);
    $("desk-card").classList.toggle("hidden", s.desk_operations === undefined);
    const refusals = (s.sync && s.sync.refusals) || [];
    $("refused-card").classList.toggle("hidden", refusals.length === 0);
    rows("refused", refusals.map((r) => [moment(r.at), r.lane, T["direction." + r.direction] ?? r.direction,
      el("span", r.status === "error" ? r.reason : r.status + ": " + r.reason, "reason-bad"), r.code]), "no-refused");
    rows("decisions", s.decisions.map((d) => [moment(d.at), d.lane, T["direction." + d.direction] ?? d.direction,
      el("span", T["reason." + d.reason] ?? d.reason, PAGE.admits.includes(d.reason) ? "reason-good" : "reason-bad"), d.code]), "no-decisions");
    rows("desk", (s.desk_operations || []).map((d) => [moment(d.created_ms / 1000), T["op." + d.operation] ?? d.operation,
      badge(T["opstate." + d.state] ?? d.state, d.state === "sent" ? "good" : d.state === "rejected" ? "bad" : "warn"), opDetail(d)]), "no-desk");
    $("result").dataset.state = s.sync && s.sync.status === "offline" ? "error" : "ok";
    $("updated").textContent = t("updated", { time: clockFormat.format(new Date()) });
  } catch (err) { if (err.status !== 401) { $("result").dataset.state = "error"; $("updated").textContent = err.message; } }
}
let timer = null;
window.start = () => { refresh(); if (!timer) timer = setInterval(refresh, 2000); };
window.stop = () => { clearInterval(timer); timer = null; };
boot();
"""


def _page_data(language: str, zone: str, **extra: object) -> str:
    texts = catalogue(language)
    texts.update({f"reason.{r.value}": reason_label(r, language) for r in Reason})
    data = {
        "texts": texts,
        "locale": LOCALES[language],
        "zone": zone,
        "admits": [r.value for r in Reason if r.admits],
        **extra,
    }
    # Inside <script>, "</" would end it: JSON may carry it escaped.
    return "const PAGE = " + json.dumps(data, ensure_ascii=False).replace("</", "<\\/") + ";"


def _head(
    language: str, title: str, page: str, token_file: str, style: str, *, header_extra: str = ""
) -> str:
    texts = catalogue(language)
    e = html.escape
    return _HEAD.format(
        lang=language,
        title=e(title),
        style=_STYLE + style,
        nav_desk=e(texts["nav.desk"]),
        nav_status=e(texts["nav.status"]),
        desk_current=' aria-current="page"' if page == "desk" else "",
        status_current=' aria-current="page"' if page == "status" else "",
        sign_out=e(texts["token.change"]),
        header_extra=header_extra,
        auth_title=e(texts["token.title"]),
        auth_explain=e(texts["token.explain"]).replace("{file}", f"<code>{e(token_file)}</code>"),
        token_label=e(texts["token.label"]),
        token_submit=e(texts["token.submit"]),
    )


def desk_page(
    language: str, zone: str, token_file: str, *, ticket: bool = True, terms: bool = False
) -> str:
    """The pass desk in `language`, times in `zone`; `ticket`/`terms`: what it can print."""
    texts = catalogue(language)
    body = _DESK_BODY.format(
        **{key.replace(".", "_"): html.escape(value) for key, value in texts.items()},
    )
    return (
        _head(
            language,
            texts["desk.title"],
            "desk",
            token_file,
            _DESK_STYLE,
            header_extra=f'<span id="scanner" class="pill">{html.escape(texts["desk.scanner.off"])}</span>',
        )
        + body
        + "</main><script>"
        + _page_data(language, zone, ticket=ticket, terms=terms)
        + _COMMON_JS
        + _DESK_JS
        + "</script></body></html>\n"
    )


def status_page(language: str, zone: str, token_file: str) -> str:
    """The device status page in `language`, times in `zone`."""
    texts = catalogue(language)
    e = html.escape
    body = _STATUS_BODY.format(
        sync=e(texts["status.sync"]),
        queues=e(texts["status.queues"]),
        printers=e(texts["status.printers"]),
        scanners=e(texts["status.scanners"]),
        decisions=e(texts["status.decisions"]),
        desk=e(texts["status.desk"]),
        refused=e(texts["status.pretix.refusals"]),
        no_decisions=e(texts["status.decisions.none"]),
        no_desk=e(texts["status.desk.none"]),
        col_time=e(texts["col.time"]),
        col_lane=e(texts["col.lane"]),
        col_direction=e(texts["col.direction"]),
        col_result=e(texts["col.result"]),
        col_code=e(texts["col.code"]),
        col_operation=e(texts["col.operation"]),
        col_state=e(texts["col.state"]),
        col_detail=e(texts["col.detail"]),
    )
    return (
        _head(language, texts["nav.status"], "status", token_file, _STATUS_STYLE)
        + body
        + "</main><script>"
        + _page_data(language, zone)
        + _COMMON_JS
        + _STATUS_JS
        + "</script></body></html>\n"
    )
