"""The operator pages: device status and the pass desk, as self-contained HTML.

No external resources (the counter may have no internet): the styles and the small script
are inline. The pages hold no data; their script asks the /api endpoints with the token the
operator enters once per browser session (kept in sessionStorage, never in a URL).
"""

from __future__ import annotations

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 60em; }}
nav a {{ margin-right: 1em; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; }}
td, th {{ border: 1px solid #bbb; padding: .2em .6em; text-align: left; }}
#message {{ padding: .5em; margin: .5em 0; min-height: 1.2em; }}
#message.error {{ background: #fdd; border: 1px solid #c00; }}
#message.ok {{ background: #dfd; border: 1px solid #080; }}
label {{ display: block; margin: .3em 0; }}
fieldset {{ margin: .8em 0; }}
.hidden {{ display: none; }}
</style></head><body>
<nav><a href="/status">Status</a><a href="/desk">Pass desk</a></nav>
<form id="auth"><label>API token <input id="token" type="password" autocomplete="off">
</label><button type="submit">Use token</button></form>
<div id="message"></div>
"""

_COMMON_JS = """
const $ = (id) => document.getElementById(id);
function token() { return sessionStorage.getItem("edge-token") || ""; }
$("auth").addEventListener("submit", (e) => {
  e.preventDefault(); sessionStorage.setItem("edge-token", $("token").value.trim());
  say("Token saved for this browser session", "ok"); if (window.start) start();
});
function say(text, kind) { const m = $("message"); m.textContent = text; m.className = kind; }
async function api(path, body) {
  const init = { headers: { "Authorization": "Bearer " + token() } };
  if (body !== undefined) {
    init.method = "POST"; init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try { response = await fetch(path, init); }
  catch (err) { throw new Error("The edge cannot be reached: " + err); }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) { const e = new Error(data.error || response.statusText); e.field = data.field; throw e; }
  return data;
}
function cell(row, value) { const td = document.createElement("td"); td.textContent = value ?? ""; row.appendChild(td); }
function fill(id, rows) {
  const body = $(id); body.replaceChildren();
  for (const values of rows) { const tr = document.createElement("tr"); values.forEach((v) => cell(tr, v)); body.appendChild(tr); }
}
"""

STATUS_PAGE = (
    _HEAD.format(title="edge: device status")
    + """
<h1>Device <span id="device"></span></h1>
<h2>Sync</h2>
<table><tbody id="sync"></tbody></table>
<h2>Queues</h2>
<table><tbody id="queues"></tbody></table>
<h2>Printers</h2>
<table><thead><tr><th>name</th><th>kind</th><th>state</th><th>paused</th><th>pending</th>
</tr></thead><tbody id="printers"></tbody></table>
<h2>Scanners</h2>
<table><thead><tr><th>name</th><th>last scan</th></tr></thead><tbody id="scanners"></tbody></table>
<h2>Last decisions</h2>
<table><thead><tr><th>seq</th><th>time</th><th>lane</th><th>direction</th><th>reason</th>
<th>code</th></tr></thead><tbody id="decisions"></tbody></table>
<h2>Desk operations</h2>
<table><thead><tr><th>seq</th><th>operation</th><th>state</th><th>detail</th></tr></thead>
<tbody id="desk"></tbody></table>
<script>"""
    + _COMMON_JS
    + """
async function refresh() {
  try {
    const s = await api("/api/v1/status");
    $("device").textContent = s.device;
    const sync = s.sync || {};
    fill("sync", s.sync ? [["status", sync.status], ["revision", sync.revision], ["head", sync.head],
      ["lag (revisions)", sync.lag], ["last contact", sync.last_contact], ["last error", sync.last_error]]
      : [["status", "no [sync]: offline device"]]);
    fill("queues", Object.entries(s.queues).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v]));
    const printers = await api("/api/v1/printers");
    fill("printers", printers.printers.map((p) => [p.name, p.kind, p.state, p.paused || "", p.pending]));
    fill("scanners", s.scanners.map((x) => [x.name, x.last_scan ? new Date(x.last_scan * 1000).toISOString() : "never"]));
    fill("decisions", s.decisions.map((d) => [d.seq, d.at, d.lane, d.direction, d.reason, d.code]));
    fill("desk", (s.desk_operations || []).map((d) => [d.seq, d.operation, d.state, d.detail || ""]));
    say("Updated " + new Date().toLocaleTimeString(), "ok");
  } catch (err) { say(err.message, "error"); }
}
let timer = null;
function start() { refresh(); if (!timer) timer = setInterval(refresh, 2000); }
if (token()) start();
</script></body></html>
"""
)

DESK_PAGE = (
    _HEAD.format(title="edge: pass desk")
    + """
<h1>Annual-pass desk</h1>
<p>Scanner: <span id="scanner">not connected</span></p>
<form id="lookup"><label>Voucher or card code <input id="code" autocomplete="off"></label>
<label>or pass number <input id="number" inputmode="numeric"></label>
<button type="submit">Look up</button></form>
<div id="sale" class="hidden"><h2>Sale</h2><table><tbody id="sale-table"></tbody></table></div>
<form id="issue" class="hidden"><fieldset><legend>Personalise the pass</legend>
<label>Surname <input id="surname" name="surname"></label>
<label>First name <input id="first_name" name="first_name"></label>
<label>Address <textarea id="address" name="address" rows="2"></textarea>
<button type="button" id="no-address">n.a.</button></label>
<label>Validity start <input id="valid_from" name="valid_from" type="date"></label>
<label><input type="radio" name="shipping" value="pickup" id="pickup" checked> pickup</label>
<label><input type="radio" name="shipping" value="post" id="post"> post</label>
<button type="submit" id="print-card">Print card and issue</button></fieldset></form>
<div id="ticket-actions" class="hidden"><button id="print-ticket">Print BOCA ticket</button></div>
<div id="pass-actions" class="hidden"><button id="extend">Extend</button>
<button id="replace">Lost card: replace</button><button id="cancel">Cancel sale</button></div>
<script>"""
    + _COMMON_JS
    + """
let current = null;
function show(sale) {
  current = sale;
  const rows = [["source", sale.source], ["kind", sale.kind], ["state", sale.state],
    ["number", sale.credential], ["sale", sale.sale], ["product", sale.pass_name || sale.product],
    ["holder", sale.holder], ["buyer", sale.buyer ? sale.buyer.join(", ") : ""],
    ["valid from", day(sale.valid_from)], ["valid until", day(sale.valid_until)]];
  fill("sale-table", rows.filter((r) => r[1] !== undefined && r[1] !== null && r[1] !== ""));
  $("sale").classList.remove("hidden");
  const voucher = sale.kind === "voucher" && sale.state === "active";
  $("issue").classList.toggle("hidden", !voucher);
  $("pass-actions").classList.toggle("hidden", sale.kind !== "pass" || sale.state !== "active");
  $("ticket-actions").classList.toggle("hidden", sale.kind === "pass" || sale.state !== "active");
  if (voucher && sale.buyer) { [$("surname").value, $("first_name").value, $("address").value] = sale.buyer; }
  if (voucher && !$("valid_from").value) { $("valid_from").value = new Date().toISOString().slice(0, 10); }
  if (sale.kind === "voucher" && sale.state !== "active") say("This voucher is " + sale.state + " already", "error");
  else say("Found a " + sale.kind + " (" + sale.source + ")", "ok");
}
function day(seconds) { return seconds ? new Date(seconds * 1000).toISOString().slice(0, 10) : ""; }
async function lookup() {
  const code = $("code").value.trim(), number = $("number").value.trim();
  for (const id of ["sale", "issue", "pass-actions", "ticket-actions"]) $(id).classList.add("hidden");
  try { show(await api("/api/v1/desk/lookup", number && !code ? { number: Number(number) } : { code })); }
  catch (err) { say(err.message, "error"); }
}
$("lookup").addEventListener("submit", (e) => { e.preventDefault(); lookup(); });
$("no-address").addEventListener("click", () => { $("address").value = "n.a."; });
async function act(path, body, done) {
  say("Working…", "ok");
  try { const r = await api(path, body); say(done(r), "ok"); return r; }
  catch (err) { say(err.message, "error"); if (err.field && $(err.field)) $(err.field).focus(); return null; }
}
$("issue").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = { voucher: current.code_text, surname: $("surname").value, first_name: $("first_name").value,
    address: $("address").value, valid_from: $("valid_from").value,
    shipping: document.querySelector("input[name=shipping]:checked").value };
  const r = await act("/api/v1/desk/issue", form, (r) =>
    "Pass issued (" + (r.state === "sent" ? "confirmed by the central system" : "queued: sent when online") +
    "), valid until " + r.valid_until + ", card " + r.card);
  if (r) $("issue").classList.add("hidden");
});
$("extend").addEventListener("click", () => act("/api/v1/desk/extend",
  { credential: current.credential, code: current.code_text || null },
  (r) => "Extended until " + r.valid_until + (r.reprinted ? "; card reprinted" : "") + (r.note ? "; " + r.note : "") + " (" + r.state + ")"));
$("replace").addEventListener("click", () => act("/api/v1/desk/replace", { credential: current.credential },
  (r) => "Replaced: new card " + r.card + " (" + r.state + "); the old card no longer opens gates"));
$("print-ticket").addEventListener("click", () => act("/api/v1/desk/ticket", { code: current.code_text },
  (r) => "Ticket sent to printer " + r.printer + " (job " + r.job_id + ")"));
$("cancel").addEventListener("click", () => act("/api/v1/desk/cancel", { credential: current.credential },
  (r) => "Sale cancelled (" + r.state + ")"));
const realShow = show;
show = (sale) => { sale.code_text = $("code").value.trim() || null; realShow(sale); };
let socket = null;
function start() {
  if (socket) return;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/scans";
  socket = new WebSocket(url);
  socket.onopen = () => socket.send(JSON.stringify({ token: token() }));
  socket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "ready") { $("scanner").textContent = "connected (" + m.scanners.join(", ") + ")"; }
    if (m.type === "scan") { $("code").value = m.code; $("number").value = ""; lookup(); }
  };
  socket.onclose = (event) => {
    $("scanner").textContent = "disconnected" + (event.code === 4401 ? ": wrong token" : "");
    socket = null; setTimeout(() => { if (token()) start(); }, 2000);
  };
}
if (token()) start();
</script></body></html>
"""
)
