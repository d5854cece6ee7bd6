// The customer's page: sign-in, my devices, a device, an incident's timeline. The other
// views (messages, recalls and updates, preferences, a message's link) are in my-views.js.
//
// The session is an HttpOnly cookie the browser sends with every same-origin request; every
// change also carries X-Fleetwatch-Page (api/deps.py: another site's page cannot send it).
// Every value reaches the page as a text node or an attribute set through the DOM, never
// through innerHTML: names typed by people are shown, never run.
"use strict";

const API = "/api/v1";
const PAGE_HEADER = { "X-Fleetwatch-Page": "1" };
const $ = (selector) => document.querySelector(selector);
const state = { me: null, home: null, linkToken: null };

class SignedOut extends Error {}
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
  // The route is not there (yet): an older server than this page.
  get missing() { return this.status === 404 || this.status === 405; }
}

// -- building the page ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat(Infinity).filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

const muted = (text) => el("p", { class: "muted" }, text);
const cols = (...columns) => el("div", { class: "cols" }, columns);

// Times in the customer's own timezone (their preference), whatever the browser's is.
function timeText(iso, { date = true } = {}) {
  if (!iso) return "—";
  const options = { timeZone: state.me?.timezone || "UTC", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23" };
  if (date) Object.assign(options, { day: "numeric", month: "short", year: "numeric" });
  return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
}
const timeEl = (iso) => el("time", { datetime: iso }, timeText(iso));

function banner(text) {
  const node = $("#banner");
  node.textContent = text || "";
  node.hidden = !text;
}

// Replace the view with `title` (focused, for screen readers and keyboards) and `children`.
function render(view, title, ...children) {
  const main = $("#view");
  main.dataset.view = view;
  const heading = el("h1", { tabindex: "-1" }, title);
  main.replaceChildren(heading, ...children.flat().filter(Boolean));
  heading.focus({ preventScroll: true });
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.toggleAttribute("aria-current", link.dataset.nav === view);
  }
}

// A button that runs `action`, disabled while it runs; what went wrong goes to the banner.
function actionButton(label, action, attrs = {}) {
  const button = el("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await action(button); } catch (error) { failed(error); } finally { button.disabled = false; }
  });
  return button;
}

function failed(error) {
  if (error instanceof SignedOut) return;
  if (error instanceof ApiError && error.missing) banner("That is not available yet.");
  else banner(error.message || String(error));
}

// -- talking to the API -----------------------------------------------------------------

function detailText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return `the server answered ${status}`;
}

async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") Object.assign(options.headers, PAGE_HEADER);
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, options);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401 && !path.startsWith("/signin") && !path.startsWith("/links")) {
    showSignin("Your session has ended: sign in again.");
    throw new SignedOut();
  }
  if (!response.ok) throw new ApiError(response.status, detailText(data, response.status));
  return data;
}
const get = (path) => call("GET", path);

async function loadHome() {
  state.home = await get("/me/home");
  state.me = state.home.customer;
  return state.home;
}

// -- sign-in ----------------------------------------------------------------------------

function showSignin(problem) {
  state.me = state.home = null;
  $("#nav").hidden = true;
  banner(problem || "");
  const status = el("p", { id: "signin-status", role: "status" });
  const input = el("input", { id: "signin-address", type: "text", autocomplete: "email",
    required: true, maxlength: "200", spellcheck: "false" });
  const form = el("form", { id: "signin-form", class: "panel" },
    el("p", {}, "We send a sign-in link to one of your verified addresses: no password."),
    el("label", { for: "signin-address" }, "Your email address or phone number"),
    input, el("button", { type: "submit" }, "Send me a link"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("POST", "/signin/request", { address: input.value.trim() });
      status.textContent = "If that address is one of yours, a link is on its way. It works "
        + "once, for a few minutes.";
    } catch (error) {
      status.textContent = error instanceof ApiError && error.missing
        ? "Signing in by address is not available yet: open the link in your latest message."
        : error.message;
    }
  });
  render("signin", "Sign in", form);
}

async function redeem(token) {
  // The token leaves the address (and history) before anything else happens.
  history.replaceState(null, "", `${location.pathname}#devices`);
  try {
    await call("POST", "/signin/redeem", { token });
    return true;
  } catch (error) {
    showSignin(error.message);
    return false;
  }
}

async function signOut() {
  try { await call("POST", "/signin/out"); } catch (error) { /* signed out either way */ }
  history.replaceState(null, "", `${location.pathname}#signin`);
  showSignin("You are signed out.");
}

// -- my devices -------------------------------------------------------------------------

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(([, v]) => v != null && v !== "" && v !== false)
    .map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function batteryText(card) {
  if (card.battery_pct == null) return null;
  return `${card.battery_pct} %${card.battery_low ? " (low)" : ""}`;
}

function deviceCard(card) {
  return el("article", { class: `card${card.problem ? " problem" : ""}`,
    "data-device-id": card.id, "data-status": card.status },
  el("h3", {}, el("a", { href: `#device/${encodeURIComponent(card.id)}` }, card.name)),
  el("p", { class: "kind muted" }, `${card.kind_name} · ${card.model_name}`),
  el("p", { class: `status st-${card.status}` }, card.status_text),
  card.snooze_text && el("p", { class: "muted" }, card.snooze_text),
  facts([
    // A problem's status already says since when.
    ["Since", !card.problem && card.since && timeText(card.since)],
    ["Connects through", card.behind],
    ["Battery", batteryText(card)],
    ["Signal", card.signal],
    ["Firmware", card.firmware],
  ]),
  card.what_to_do && el("p", { class: "todo" }, el("strong", {}, "What to do now: "),
    card.what_to_do),
  card.incident_id && el("p", {}, el("a", { href: `#incident/${card.incident_id}` },
    "See what happened")));
}

function placeSection(group, many) {
  const title = group.place || (many ? "Other devices" : null);
  return el("section", { class: "place", "data-place": group.place || "" },
    title && el("h2", {}, title),
    el("div", { class: "cards" }, group.devices.map(deviceCard)));
}

async function showDevices() {
  const home = await loadHome();
  const [active, campaigns] = await Promise.all([
    get("/incidents?status=active&limit=20"),
    get("/me/campaigns").catch(() => []),
  ]);
  const waiting = campaigns.filter(recallUnread);
  const count = home.places.reduce((n, g) => n + g.devices.length, 0);
  const devices = el("div", { class: "main-col" },
    count ? home.places.map((g) => placeSection(g, home.places.length > 1))
      : muted("You have no devices with us yet."),
    home.more && muted("Only your first 500 devices are shown."));
  const aside = el("aside", { class: "side-col" },
    el("h2", {}, "Open problems"),
    active.items.length
      ? el("ul", { id: "open-incidents", class: "plain" }, active.items.map((i) => el("li", {},
        el("a", { href: `#incident/${i.id}` }, i.summary), " ", el("span", { class: "muted" },
          `since ${timeText(i.opened_at)}`))))
      : muted("Nothing needs you right now."),
    waiting.length > 0 && el("p", { class: "todo" },
      el("a", { href: "#recalls" }, waiting.length === 1 ? "A recall notice to read"
        : `${waiting.length} recall notices to read`)));
  render("devices", `Hello ${home.customer.name}`, cols(devices, aside));
}

async function deviceAction(method, path, body, done) {
  await call(method, path, body);
  banner("");
  await showDevice(decodeURIComponent(location.hash.split("/")[1] || ""));
  $("#device-actions-status").textContent = done;
}

async function showDevice(id) {
  const home = await loadHome();
  const card = home.places.flatMap((g) => g.devices).find((c) => c.id === id);
  if (!card) { render("device", "No such device", muted("It is not one of yours.")); return; }
  const incidents = await get(`/incidents?device_id=${encodeURIComponent(id)}&limit=20`);
  const base = `/me/devices/${encodeURIComponent(id)}`;
  const actions = el("div", { class: "actions", id: "device-actions" },
    actionButton("Pause alerts for 24 hours", () => deviceAction("POST", `${base}/snooze`,
      { hours: 24 }, "Alerts paused for 24 hours.")),
    actionButton("Pause alerts for 7 days", () => deviceAction("POST", `${base}/snooze`,
      { hours: 168 }, "Alerts paused for 7 days.")),
    card.snoozed_until && actionButton("Resume alerts", () => deviceAction("DELETE",
      `${base}/snooze`, undefined, "Alerts resumed.")),
    card.watching && actionButton("It is off on purpose: stop watching it", () => deviceAction(
      "POST", `${base}/stop-watching`, undefined, "We no longer watch it.")));
  const history = el("section", { class: "side-col" }, el("h2", {}, "Its incidents"),
    incidents.items.length
      ? el("ul", { class: "plain", id: "device-incidents" }, incidents.items.map((i) => el("li",
        {}, el("a", { href: `#incident/${i.id}` }, i.summary), " ", el("span",
          { class: "muted" }, `${timeText(i.opened_at)}, ${statusWords(i)}`))))
      : muted("No incidents."));
  render("device", card.name, cols(el("div", { class: "main-col" }, deviceCard(card), actions,
    el("p", { id: "device-actions-status", role: "status" })), history));
}

// -- an incident ------------------------------------------------------------------------

function statusWords(incident) {
  if (incident.status === "resolved") return `resolved ${timeText(incident.resolved_at)}`;
  if (incident.status === "acknowledged") return "someone is on it";
  return "open";
}

function timelineLine(event) {
  const next = event.detail && event.detail.next_update_at;
  return el("li", { class: `line k-${event.kind}`, "data-kind": event.kind },
    el("time", { datetime: event.at }, timeText(event.at)), " ",
    el("span", { class: "text" }, event.text),
    next && el("span", { class: "muted" }, ` Next update by ${timeText(next)}.`));
}

async function showIncident(id) {
  if (!state.me) await loadHome();
  const incident = await get(`/incidents/${encodeURIComponent(id)}`);
  const device = state.home.places.flatMap((g) => g.devices)
    .find((c) => c.id === incident.device_id);
  const ack = incident.status === "open" && actionButton("I have seen this", async () => {
    await call("POST", `/me/incidents/${incident.id}/ack`);
    await showIncident(id);
  }, { id: "incident-ack" });
  const timeline = el("section", { class: "main-col" }, el("h2", {}, "What happened"),
    el("ol", { id: "timeline", class: "timeline" }, incident.timeline.map(timelineLine)));
  const messages = el("section", { class: "side-col" }, el("h2", {}, "Messages we sent you"),
    incident.notifications.length
      ? el("ul", { class: "plain" }, incident.notifications.map(messageLine))
      : muted("None."));
  render("incident", incident.summary,
    facts([
      ["Device", device ? el("a", { href: `#device/${encodeURIComponent(device.id)}` },
        device.name) : incident.device_id],
      ["Started", timeText(incident.opened_at)],
      ["Now", statusWords(incident)],
      ["Times in", state.me.timezone],
    ]), ack, cols(timeline, messages));
}

// -- routing ----------------------------------------------------------------------------

const VIEWS = {
  devices: () => showDevices(),
  device: (id) => showDevice(id),
  incident: (id) => showIncident(id),
};

async function route() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("signin=")) {
    if (!(await redeem(hash.slice(7)))) return;
  } else if (hash.startsWith("link=")) {
    state.linkToken = hash.slice(5);
    history.replaceState(null, "", `${location.pathname}#message`);
  }
  const [name, arg] = (location.hash.slice(1) || "devices").split("/");
  if (name === "message" && state.linkToken) { await window.showLink(state.linkToken); return; }
  if (name === "signin") { showSignin(); return; }
  try {
    if (!state.me) state.me = await get("/me");
    $("#nav").hidden = false;
    const view = VIEWS[name] || window.MORE_VIEWS[name] || VIEWS.devices;
    await view(arg && decodeURIComponent(arg));
  } catch (error) {
    failed(error);
  }
}

window.addEventListener("hashchange", () => { banner(""); route(); });
document.addEventListener("DOMContentLoaded", () => {
  $("#sign-out").addEventListener("click", signOut);
  route();
});
