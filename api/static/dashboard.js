// The staff dashboard: fleet at a glance, devices, one device's last day, live incidents.
// Update campaigns live in campaigns.js, which uses the helpers defined here.
//
// Every value reaches the page as a text node or as an attribute set through the DOM (never
// through innerHTML), so names typed by customers are shown, never run.
"use strict";

const API = "/api/v1";
const KEY_STORE = "fleetwatch.apiKey";
const STATUSES = ["online", "degraded", "offline", "never_seen", "provisioned", "paused", "retired"];
const MODEL_COLUMNS = ["online", "degraded", "offline", "never_seen", "provisioned"];
const SEVERITIES = ["critical", "warning", "info"];
const METRICS = [
  { name: "battery_pct", title: "Battery (%)", bucket: "avg_battery_pct" },
  { name: "temp_c", title: "Temperature (°C)", bucket: "avg_temp_c" },
  { name: "rssi_dbm", title: "Signal (dBm)", bucket: "avg_rssi_dbm" },
];
const DAY_MS = 24 * 3600 * 1000;
const BUCKET_MS = 5 * 60 * 1000;
const FEW_BUCKETS = 6; // fewer 5-minute buckets than this: chart the raw heartbeats instead
const LIVE_KEEP = 10; // events kept in the live list
const REFRESH_GAP_MS = 1000; // at most one summary refresh a second
const RECONNECT_MS = 3000;
const PERIODIC_MS = 30000; // counts also change without incidents (devices coming online)

const $ = (selector) => document.querySelector(selector);
let apiKey = null;
let shownDevice = null; // the id of the device on screen, if any
let shownCampaign = null; // the id of the campaign on screen, if any (campaigns.js)
const list = { cursors: [null], next: null, status: "", q: "" };

// -- building the page ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = setAttrs(document.createElement(tag), attrs);
  const nodes = children.flat(Infinity).filter((c) => c != null);
  node.append(...nodes.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = setAttrs(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs);
  if (text != null) node.textContent = text;
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value != null && value !== false) node.setAttribute(name, String(value));
  }
  return node;
}

const show = (selector, visible) => { $(selector).hidden = !visible; };
const muted = (text) => el("p", { class: "muted" }, text);
// Statuses whose name alone would not say enough (monitor/status.py STATUS_WORDS).
// A device's (st-), not a campaign's (cs-), paused.
const WORDS = { "st-paused": "paused by owner" };
const badge = (kind, value) =>
  el("span", { class: `badge ${kind}-${value}` },
    WORDS[`${kind}-${value}`] ?? String(value).replace("_", " "));
const deviceLink = (id) => (id ? el("a", { href: `#device=${encodeURIComponent(id)}` }, id) : "—");
const number = (v) => (v == null ? "—" : Number.isInteger(v) ? String(v) : v.toFixed(1));
const query = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();

function when(iso) {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const age = s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min`
    : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return el("time", { datetime: iso, title: new Date(iso).toLocaleString() }, `${age} ago`);
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

// A line chart of points [{t: ms, v}] over [from, to] as an inline SVG with one <path>; the
// line breaks where consecutive points are more than `gap` ms apart (the device was silent).
function chart(series, title, points, { id, lo, hi, from, to, gap = Infinity, format = number } = {}) {
  const W = 560, H = 150, L = 48, R = 12, T = 10, B = 22;
  const data = points.filter((p) => Number.isFinite(p.v) && Number.isFinite(p.t));
  const root = svg("svg", { class: "chart", "data-series": series, id, viewBox: `0 0 ${W} ${H}`,
    role: "img", "aria-label": title });
  if (!data.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data"));
  } else {
    const t0 = from ?? data[0].t, t1 = to ?? data[data.length - 1].t;
    const values = data.map((p) => p.v);
    let min = lo ?? Math.min(...values), max = hi ?? Math.max(...values);
    if (max === min) { min -= 1; max += 1; }
    const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
    const y = (v) => H - B - ((v - min) / (max - min)) * (H - T - B);
    const clock = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit",
      ...(t1 - t0 > DAY_MS / 2 ? { weekday: "short" } : {}) });
    for (const v of [min, max]) {
      root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
    }
    root.append(svg("text", { x: L, y: H - 6 }, clock(t0)));
    if (t1 !== t0) root.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, clock(t1)));
    const d = data.map((p, i) => `${i && p.t - data[i - 1].t <= gap ? "L" : "M"}`
      + `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    root.append(svg("path", { class: "line", d: d.join(" ") }));
    // A point standing alone would be invisible as a line.
    data.forEach((p, i) => {
      const alone = (i === 0 || p.t - data[i - 1].t > gap) && (i === data.length - 1 || data[i + 1].t - p.t > gap);
      if (alone) root.append(svg("circle", { class: "dot", cx: x(p.t), cy: y(p.v), r: 3 }));
    });
  }
  const last = data.length ? ` — now ${format(data[data.length - 1].v)}` : "";
  return el("figure", { class: "chart-box" }, el("figcaption", {}, title + last), root);
}

// -- talking to the API -----------------------------------------------------------------

class AuthError extends Error {}

// A refusal other than 401: `status` and the API's own words in `detail`.
class ApiError extends Error {
  constructor(path, status, detail) {
    super(`${path.split("?")[0]}: ${status} ${detail}`);
    Object.assign(this, { status, detail });
  }
}

async function detail(response) {
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
}

async function api(path, { method = "GET" } = {}) {
  const response = await fetch(API + path, { method, headers: { Authorization: `Bearer ${apiKey}` } });
  if (response.status === 401) throw new AuthError(await detail(response));
  if (!response.ok) throw new ApiError(path, response.status, await detail(response));
  return response.json();
}

function report(error) {
  if (error instanceof AuthError) {
    askForKey(`This API key was refused (${error.message}). Enter a valid key.`);
  } else {
    $("#banner").textContent = `Could not load: ${error.message}`;
    show("#banner", true);
  }
}

const loaded = () => show("#banner", false);

// -- the key ----------------------------------------------------------------------------

// The key arrives once in the fragment (#key=fwk_...), is kept in localStorage and taken out
// of the address bar, so it ends up neither in the history nor in a link someone shares.
// A link carrying another key than the one this browser holds is asked about first: a link
// someone sent would otherwise switch the page, unseen, to their key and their view.
// "none": no key in the address; "taken": kept; "asking": the page asks (keyReplace).
let offeredKey = null;

function takeKeyFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (!key) return "none";
  params.delete("key");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  const held = localStorage.getItem(KEY_STORE);
  if (held && held !== key) {
    askToReplaceKey(held, key);
    return "asking";
  }
  localStorage.setItem(KEY_STORE, key);
  return "taken";
}

// Enough of a key to tell two apart, as `fleetwatch keys list` shows them.
const keyShown = (key) => `${key.slice(0, 10)}…`;

// The held key stays in use meanwhile (calls already on their way end with it).
function askToReplaceKey(held, offered) {
  stopLive();
  offeredKey = offered;
  show("#app", false);
  show("#change-key", false);
  show("#key-panel", false);
  $("#key-replace-held").textContent = keyShown(held);
  $("#key-replace-offered").textContent = keyShown(offered);
  show("#key-replace", true);
  $("#key-keep").focus();
}

function keyReplace(use) {
  if (use && offeredKey) localStorage.setItem(KEY_STORE, offeredKey);
  offeredKey = null;
  show("#key-replace", false);
  start();
}

function askForKey(message) {
  stopLive();
  apiKey = null;
  localStorage.removeItem(KEY_STORE);
  show("#app", false);
  show("#change-key", false);
  show("#key-replace", false);
  show("#key-panel", true);
  $("#key-error").textContent = message;
  show("#key-error", Boolean(message));
  $("#key-input").focus();
}

function start() {
  apiKey = localStorage.getItem(KEY_STORE);
  if (!apiKey) return askForKey("");
  show("#key-panel", false);
  show("#app", true);
  show("#change-key", true);
  route();
  // route() has loaded the device list; the share's newest point comes with the summary.
  refreshFleet({ devices: false }).then(loadOnlineShare).catch(report);
  startLive();
}

// -- fleet ------------------------------------------------------------------------------

let summaryWanted = 0, summaryRetries = 0;

// `fn` at most once every `gap` ms however often asked; asked meanwhile, it runs at the gap's end.
function throttle(fn, gap) {
  let last = 0, timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, Math.max(0, last + gap - Date.now()));
  };
}

// At most once a second. The summary is a snapshot the API refreshes in the background, so
// one older than the event that asked for it is fetched again a little later.
const scheduleRefresh = throttle(() => refreshFleet().catch(report), REFRESH_GAP_MS);

async function refreshFleet({ devices = true } = {}) {
  const [summary, incidents] = await Promise.all([
    api("/fleet/summary"), api("/incidents?status=active&limit=20")]);
  loaded();
  renderSummary(summary);
  renderIncidents(incidents.items);
  const stale = summaryWanted && Date.parse(summary.as_of) < summaryWanted;
  if (stale && summaryRetries++ < 5) scheduleRefresh();
  else summaryWanted = 0;
  if (devices && !shownDevice && !shownCampaign) await loadDevices();
}

function renderSummary(summary) {
  $("[data-count=total]").textContent = summary.total;
  for (const s of STATUSES) $(`[data-status="${s}"]`).textContent = summary.by_status[s] || 0;
  for (const s of SEVERITIES) $(`[data-severity="${s}"]`).textContent = summary.open_incidents[s] || 0;
  $("#as-of").textContent = `as of ${new Date(summary.as_of).toLocaleTimeString()}`;
  const models = Object.entries(summary.by_model).sort(([a], [b]) => a.localeCompare(b));
  $("#by-model tbody").replaceChildren(...models.map(([model, counts]) => el("tr", {},
    el("td", {}, model),
    MODEL_COLUMNS.map((s) => el("td", { class: "num" }, counts[s] || 0)),
    el("td", { class: "num" }, Object.values(counts).reduce((a, b) => a + b, 0)))));
}

function renderIncidents(items) {
  $("#incidents tbody").replaceChildren(...items.map((i) => el("tr", { "data-incident-id": i.id },
    el("td", {}, badge("sev", i.severity)), el("td", {}, i.kind), el("td", {}, deviceLink(i.device_id)),
    el("td", {}, i.summary), el("td", {}, i.status), el("td", {}, when(i.opened_at)))));
  show("#incidents-empty", !items.length);
}

async function loadOnlineShare() {
  const points = await api("/fleet/online-share?hours=24");
  const data = points.map((p) => ({ t: Date.parse(p.at), v: p.share }));
  const pct = (v) => `${Math.round(v * 100)}%`;
  $("#online-chart-box").replaceChildren(chart("online_share", "Share of devices online", data,
    { id: "online-chart", lo: 0, hi: 1, gap: 3 * 60 * 1000, format: pct }));
}

async function loadDevices() {
  const cursor = list.cursors[list.cursors.length - 1];
  const page = await api(`/devices?${query({ status: list.status, q: list.q, limit: 50, cursor })}`);
  loaded();
  list.next = page.next_cursor;
  $("#devices tbody").replaceChildren(...page.items.map((d) => el("tr", { "data-device-id": d.id, class: "link" },
    el("td", {}, deviceLink(d.id)), el("td", {}, d.name || "—"), el("td", {}, d.model_id),
    el("td", {}, badge("st", d.status)), el("td", {}, d.firmware || "—"), el("td", {}, d.region || "—"),
    el("td", {}, when(d.last_seen_at)))));
  show("#devices-empty", !page.items.length);
  $("#next-page").disabled = !page.next_cursor;
  $("#first-page").disabled = list.cursors.length === 1;
  $("#page-number").textContent = `page ${list.cursors.length}`;
}

function filterDevices() {
  list.status = $("#status-filter").value;
  list.q = $("#search").value.trim();
  list.cursors = [null];
  loadDevices().catch(report);
}

// -- one device -------------------------------------------------------------------------

async function showDevice(id) {
  const path = `/devices/${encodeURIComponent(id)}`;
  const to = Date.now(), from = to - DAY_MS;
  const range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
  const [device, buckets] = await Promise.all([
    api(path), api(`${path}/history?${query({ ...range, resolution: "5m" })}`)]);
  const view = { from, to, buckets: buckets.points, resolution: "5-minute averages", gap: 2 * BUCKET_MS };
  view.metrics = buckets.points.map((p) => ({ t: Date.parse(p.t),
    ...Object.fromEntries(METRICS.map((m) => [m.name, p[m.bucket]])) }));
  if (buckets.points.length < FEW_BUCKETS) {
    const raw = await api(`${path}/history?${query({ ...range, resolution: "raw" })}`);
    view.metrics = raw.points.map((p) => ({ t: Date.parse(p.t), ...(p.metrics || {}) }));
    Object.assign(view, { resolution: "every heartbeat", gap: 3 * 1000 * device.heartbeat_interval_s });
  }
  if (shownDevice !== id) return; // the user has moved on meanwhile
  loaded();
  renderDevice(device, view);
}

function renderDevice(d, view) {
  const fields = [
    ["Status", badge("st", d.status)], ["Status since", when(d.status_changed_at)],
    ["Last seen", when(d.last_seen_at)], ["Model", `${d.model_name} (${d.model_id})`],
    ["Kind", `${d.kind} / ${d.device_type}`], ["Customer", d.customer_id], ["Region", d.region],
    ["Site", d.site_id], ["Connects through", d.parent_id],
    ["Timezone", d.timezone], ["Labels", d.labels.join(", ")], ["Serial", d.serial], ["VIN", d.vin],
    ["Firmware", d.firmware], ["Heartbeat every", `${d.heartbeat_interval_s} s`],
    ["Last sequence", d.last_seq],
    ["Uptime", d.last_uptime_s == null ? null : `${Math.round(d.last_uptime_s / 60)} min`],
    ["Overdue at", d.overdue_at && new Date(d.overdue_at).toLocaleString()],
    ["Connection (will)", d.connectivity], ["Clock skewed", d.clock_skewed_at && when(d.clock_skewed_at)],
  ];
  const metrics = Object.entries(d.last_metrics || {}).sort(([a], [b]) => a.localeCompare(b));
  const span = { from: view.from, to: view.to, gap: view.gap };
  const heartbeats = view.buckets.map((p) => ({ t: Date.parse(p.t), v: p.heartbeats }));
  $("#device-body").replaceChildren(
    el("h1", {}, el("span", { id: "device-name" }, d.name || d.id), " ", badge("st", d.status)),
    muted(d.id),
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h2", {}, "Registry and state"),
        el("dl", {}, fields.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v == null || v === "" ? "—" : v)]))),
      el("div", { class: "panel" },
        el("h2", {}, "Last metrics"),
        metrics.length ? table(["Metric", "Value"], metrics.map(([k, v]) => [k, number(v)])) : muted("none yet"),
        el("h2", {}, "Open incidents"),
        d.open_incidents.length ? el("ul", { id: "device-incidents" }, d.open_incidents.map((i) => el("li", {},
          badge("sev", i.severity), ` ${i.kind}: `, i.summary, " (", when(i.opened_at), ")"))) : muted("none"),
        el("h2", {}, "Connectivity (birth and will messages)"),
        d.connectivity_events.length ? table(["Received", "Status", "Retained"], d.connectivity_events
          .slice(0, 10).map((e) => [when(e.received_at), e.status, e.retained ? "yes" : "no"])) : muted("none"),
        d.silences.length ? [el("h2", {}, "Silenced"), el("ul", {}, d.silences.map((s) => el("li", {},
          `${s.scope} ${s.target} until ${new Date(s.ends_at).toLocaleString()}: `, s.reason)))] : null)),
    el("div", { class: "panel" },
      el("h2", {}, "Last 24 hours ", el("small", { class: "muted" }, view.resolution)),
      el("div", { class: "charts" },
        chart("heartbeats", "Heartbeats per 5 minutes", heartbeats, { ...span, gap: 2 * BUCKET_MS, lo: 0 }),
        METRICS.map((m) => chart(m.name, m.title, view.metrics.map((p) => ({ t: p.t, v: p[m.name] })), span)))));
}

// -- routing ----------------------------------------------------------------------------

function route() {
  const taken = takeKeyFromUrl();
  if (taken === "taken") return start();
  if (taken === "asking") return;
  const params = new URLSearchParams(location.hash.slice(1));
  shownDevice = params.get("device");
  shownCampaign = shownDevice ? null : params.get("campaign");
  const releases = !shownDevice && !shownCampaign && params.has("releases");
  show("#fleet-view", !shownDevice && !shownCampaign && !releases);
  show("#device-view", Boolean(shownDevice));
  show("#campaign-view", Boolean(shownCampaign));
  show("#release-view", releases);
  if (!apiKey) return;
  if (shownCampaign) return openCampaign(shownCampaign);
  if (releases) return releasesRoute(params.get("releases")); // releases.js
  if (!shownDevice) {
    loadCampaigns().catch(reportCampaigns);
    return loadDevices().catch(report);
  }
  $("#device-body").replaceChildren(muted("Loading…"));
  showDevice(shownDevice).catch((error) => {
    $("#device-body").replaceChildren(el("p", { class: "error" }, error.message));
    report(error);
  });
}

// -- live -------------------------------------------------------------------------------

// EventSource cannot send the Authorization header, so the stream is read with fetch and its
// lines parsed here; after an error it reconnects, resuming after the last event seen.
let live = null, lastEventId = null;

function setLive(state) {
  $("#live-status").textContent = state;
  $("#live-status").dataset.state = state;
}

function stopLive() {
  if (live) live.abort();
  live = null;
  setLive("not connected");
}

async function startLive() {
  stopLive();
  const abort = (live = new AbortController());
  setLive("connecting");
  while (!abort.signal.aborted) {
    try {
      await readStream(abort.signal);
    } catch (error) {
      if (error instanceof AuthError) return report(error);
    }
    if (abort.signal.aborted) return;
    setLive("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

async function readStream(signal) {
  const headers = { Authorization: `Bearer ${apiKey}`, Accept: "text/event-stream" };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await fetch(`${API}/events`, { headers, signal, cache: "no-store" });
  if (response.status === 401) throw new AuthError(await detail(response));
  if (!response.ok) throw new Error(`events: ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", message = { event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    setLive("live"); // the server's first bytes: it now follows the timeline
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (message.data.length) dispatch(message);
        message = { event: "message", data: [] };
      } else if (!line.startsWith(":")) { // a comment otherwise
        const colon = line.includes(":") ? line.indexOf(":") : line.length;
        const field = line.slice(0, colon), text = line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(text);
        else if (field === "event") message.event = text;
        else if (field === "id" && /^\d+(-\d+)?$/.test(text)) lastEventId = text;
      }
    }
  }
}

function dispatch(message) {
  const handle = { incident: incidentEvent, campaign: campaignEvent }[message.event];
  if (!handle) return;
  let payload;
  try { payload = JSON.parse(message.data.join("\n")); } catch { return; }
  handle(payload);
}

// A line at the top of the live list: the event's time, then `parts`.
function addLiveEvent(attrs, payload, ...parts) {
  const events = $("#live-events");
  events.prepend(el("li", attrs,
    el("time", { datetime: payload.at }, new Date(payload.at).toLocaleTimeString()), " ", parts));
  while (events.children.length > LIVE_KEEP) events.lastElementChild.remove();
  show("#live-empty", false);
}

function incidentEvent(payload) {
  const i = payload.incident || {};
  addLiveEvent({ "data-incident-id": i.id }, payload,
    badge("sev", i.severity), " ", el("strong", {}, `${payload.event} ${i.kind}`), " ",
    deviceLink(i.device_id), " ", el("span", { class: "muted" }, i.summary));
  summaryWanted = Math.max(summaryWanted, Date.parse(payload.at) || 0);
  summaryRetries = 0;
  scheduleRefresh();
  if (shownDevice && shownDevice === i.device_id) showDevice(shownDevice).catch(report);
}

// -- wiring -----------------------------------------------------------------------------

function debounce(fn, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

document.addEventListener("DOMContentLoaded", () => {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORE, $("#key-input").value.trim());
    $("#key-input").value = "";
    start();
  });
  $("#change-key").addEventListener("click", () => askForKey(""));
  $("#key-keep").addEventListener("click", () => keyReplace(false));
  $("#key-use").addEventListener("click", () => keyReplace(true));
  $("#device-filter").addEventListener("submit", (event) => { event.preventDefault(); filterDevices(); });
  $("#status-filter").addEventListener("change", filterDevices);
  $("#search").addEventListener("input", debounce(filterDevices, 250));
  $("#next-page").addEventListener("click", () => { list.cursors.push(list.next); loadDevices().catch(report); });
  $("#first-page").addEventListener("click", () => { list.cursors = [null]; loadDevices().catch(report); });
  $("#devices tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-device-id]");
    if (row && !event.target.closest("a")) location.hash = `device=${encodeURIComponent(row.dataset.deviceId)}`;
  });
  window.addEventListener("hashchange", route);
  // Campaign progress (each device's steps) is not on the stream, only timeline events are.
  setInterval(() => {
    if (apiKey) { scheduleRefresh(); scheduleCampaigns(); loadOnlineShare().catch(report); }
  }, PERIODIC_MS);
  if (takeKeyFromUrl() !== "asking") start();
});
