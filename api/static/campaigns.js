// Update campaigns and recall notices: the panel on the fleet page, one campaign's view
// (#campaign=<id>) with its Pause / Resume / Cancel, and their live events.
//
// Loaded after dashboard.js, whose helpers (el, api, badge, when, throttle, ...) it uses;
// like there, every value reaches the page through the DOM, never through innerHTML.
"use strict";

const IN_FLIGHT = ["sent", "accepted", "downloading", "installing", "rebooting"];
// What a campaign's progress bar and counts show, by kind; each group is a `data-count`.
const PROGRESS_GROUPS = {
  ota_update: [
    { name: "succeeded", states: ["succeeded"] },
    { name: "failed", states: ["failed"] },
    { name: "in_flight", label: "in flight", states: IN_FLIGHT },
    { name: "pending", states: ["pending"] },
  ],
  safety_recall: [
    { name: "remedied", states: ["succeeded", "remedied"] },
    { name: "failed", states: ["failed"] },
    { name: "in_flight", label: "in flight", states: IN_FLIGHT },
    { name: "pending", states: ["pending"] },
  ],
  recall_notice: [
    { name: "acknowledged", states: ["acknowledged"] },
    { name: "notified", states: ["notified"] },
    { name: "pending", states: ["pending"] },
  ],
};
const DEVICE_STATES = ["pending", ...IN_FLIGHT, "succeeded", "failed", "notified", "acknowledged",
  "skipped", "cancelled", "remedied"];
const KIND_NAMES = { ota_update: "update", recall_notice: "recall notice", safety_recall: "safety recall" };
// The moves a person may make, from which statuses (as campaigns/store.py MOVES), and their words.
const MOVES = {
  pause: { from: ["scheduled", "running"], done: "Paused" },
  resume: { from: ["paused", "halted"], done: "Resumed" },
  cancel: { from: ["scheduled", "running", "paused", "halted"], done: "Cancelled" },
};
const FAILED_SHOWN = 100;

let campaignLoads = 0; // the latest load of the campaign view; older answers are dropped
let shownStatus = null; // the status of the campaign on screen, as last loaded

// -- shared pieces ----------------------------------------------------------------------

const campaignLink = (id, text) => el("a", { href: `#campaign=${encodeURIComponent(id)}` }, text);
const share = (pct) => `${number(pct)} %`;

function statusCell(c) {
  return [badge("cs", c.status),
    c.status === "halted" && c.halted_reason ? el("div", { class: "halted-reason" }, c.halted_reason) : null];
}

// A bar of the kind's groups over all its devices, and the same counts in words.
function progressBar(c) {
  const { devices, by_state: byState } = c.progress;
  const groups = (PROGRESS_GROUPS[c.kind] || PROGRESS_GROUPS.ota_update).map((g) => ({ ...g,
    n: g.states.reduce((sum, s) => sum + (byState[s] || 0), 0) }));
  const other = devices - groups.reduce((sum, g) => sum + g.n, 0); // skipped, cancelled
  const words = (g) => `${g.n} ${g.label || g.name}`;
  const segments = groups.filter((g) => g.n).map((g) => {
    const segment = el("span", { class: `seg seg-${g.name}`, title: words(g) });
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    segment.style.width = `${((100 * g.n) / devices).toFixed(2)}%`;
    return segment;
  });
  return el("div", { class: "progress" },
    el("div", { class: "bar", role: "img", "aria-label": groups.map(words).join(", ") }, segments),
    el("div", { class: "counts" }, groups.map((g, i) => [i ? " · " : "",
      el("span", { "data-count": g.name }, g.n), ` ${g.label || g.name}`]),
      other ? ` · ${other} skipped or cancelled` : "",
      " of ", el("span", { "data-count": "devices" }, devices)));
}

// One timeline event in words: "halted: <reason>", "wave 2 opened (45 devices)".
function describeEvent(kind, d = {}) {
  const by = d.by ? ` by ${d.by}` : "";
  const devices = d.devices == null ? "" : ` (${d.devices} devices)`;
  switch (kind) {
    case "created": return `created${by}${devices}`;
    case "wave_opened": return `wave ${d.wave} opened${devices}`;
    case "halted": return `halted: ${d.reason || "no reason given"}`;
    case "pause": return `paused${by}`;
    case "resume": return `resumed${by}`;
    case "cancel": return `cancelled${by}`;
    case "recall_repeated": return `notice repeated${devices}`;
    default: return kind.replaceAll("_", " ");
  }
}

// The device counts a halt or a completion records, in state order: "3 succeeded, 1 failed".
function eventCounts(detail = {}) {
  return DEVICE_STATES.filter((s) => Number.isInteger(detail[s])).map((s) => `${detail[s]} ${s}`).join(", ");
}

// -- the panel on the fleet page --------------------------------------------------------

async function loadCampaigns() {
  const campaigns = await api("/campaigns?limit=20");
  show("#campaigns", true);
  $("#campaigns tbody").replaceChildren(...campaigns.map((c) => el("tr", { "data-campaign-id": c.id, class: "link" },
    el("td", {}, campaignLink(c.id, c.name)), el("td", {}, KIND_NAMES[c.kind] || c.kind),
    el("td", {}, statusCell(c)),
    el("td", { class: "num", "data-wave": c.current_wave, title: c.waves.map(share).join(", ") },
      `${c.current_wave} / ${c.waves.length}`),
    el("td", { class: "progress-cell" }, progressBar(c)))));
  show("#campaigns-empty", !campaigns.length);
}

// A key that may not read campaigns (a customer's) simply has no campaigns panel.
function reportCampaigns(error) {
  if (error instanceof ApiError && error.status === 403) show("#campaigns", false);
  else report(error);
}

// -- one campaign -----------------------------------------------------------------------

function openCampaign(id) {
  shownStatus = null;
  say(null);
  $("#campaign-head").replaceChildren();
  $("#campaign-body").replaceChildren(muted("Loading…"));
  setMoves(null);
  showCampaign(id).catch((error) => {
    $("#campaign-body").replaceChildren(el("p", { class: "error" }, error.message));
    if (!(error instanceof ApiError)) report(error);
  });
}

async function showCampaign(id) {
  const ticket = ++campaignLoads;
  const path = `/campaigns/${encodeURIComponent(id)}`;
  const [campaign, failed] = await Promise.all([
    api(path), api(`${path}/devices?state=failed&limit=${FAILED_SHOWN}`)]);
  if (ticket !== campaignLoads || shownCampaign !== id) return; // a newer load, or moved on
  loaded();
  renderCampaign(campaign, failed);
}

function renderCampaign(c, failed) {
  shownStatus = c.status;
  setMoves(c.status);
  $("#campaign-head").replaceChildren(
    el("h1", {}, el("span", { id: "campaign-name" }, c.name), " ", badge("cs", c.status)),
    muted(`campaign ${c.id} · ${KIND_NAMES[c.kind] || c.kind} · wave ${c.current_wave} of ${c.waves.length}`),
    c.status === "halted" ? el("p", { class: "error", id: "campaign-halted" }, `Halted: ${c.halted_reason || "no reason given"}`) : null);
  $("#campaign-body").replaceChildren(
    el("div", { class: "panel" }, el("h2", {}, "Progress"), progressBar(c), wavesTable(c)),
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h2", {}, "Failures by reason"), failuresTable(c.progress.failures),
        el("h2", {}, "Failed devices ", failed.length === FAILED_SHOWN ? el("small", { class: "muted" }, `the first ${FAILED_SHOWN}`) : null),
        failedDevices(failed)),
      el("div", { class: "panel" }, el("h2", {}, "Campaign"), facts(c))),
    el("div", { class: "panel" }, el("h2", {}, "Timeline ", el("small", { class: "muted" }, "newest first")),
      el("ol", { id: "campaign-timeline", class: "timeline" }, [...c.timeline].reverse().map((e) => el("li", { "data-kind": e.kind },
        when(e.at), " ", el("strong", {}, describeEvent(e.kind, e.detail)),
        eventCounts(e.detail) ? el("span", { class: "muted" }, ` (${eventCounts(e.detail)})`) : null)))));
}

// One row per wave (every wave, opened or not), one column per state any device is in.
function wavesTable(c) {
  const p = c.progress;
  const states = DEVICE_STATES.filter((s) => p.by_state[s]);
  const row = (label, counts, attrs = {}) => el("tr", attrs, label,
    states.map((s) => el("td", { class: "num", "data-state": s }, counts[s] || 0)),
    el("td", { class: "num", "data-state": "devices" }, Object.values(counts).reduce((a, b) => a + b, 0)));
  return el("table", { id: "campaign-waves" },
    el("thead", {}, el("tr", {}, el("th", {}, "Wave"), el("th", { class: "num" }, "up to"),
      states.map((s) => el("th", { class: "num" }, s)), el("th", { class: "num" }, "devices"))),
    el("tbody", {}, c.waves.map((pct, i) => row(
      [el("td", {}, `wave ${i + 1}`, i + 1 === c.current_wave ? el("small", { class: "muted" }, " current") : null),
        el("td", { class: "num" }, share(pct))],
      p.by_wave[String(i + 1)] || {}, { "data-wave": i + 1, class: i < c.current_wave ? "opened" : null }))),
    el("tfoot", {}, row([el("td", {}, "all"), el("td", {})], p.by_state)));
}

function failuresTable(failures) {
  const rows = Object.entries(failures); // a failure without a reason comes as "None"
  if (!rows.length) return muted("No failures.");
  return el("table", { id: "campaign-failures" },
    el("thead", {}, el("tr", {}, el("th", {}, "Reason"), el("th", { class: "num" }, "devices"))),
    el("tbody", {}, rows.map(([reason, n]) => el("tr", { "data-reason": reason },
      el("td", {}, reason === "None" ? "no reason given" : reason), el("td", { class: "num" }, n)))));
}

function failedDevices(failed) {
  if (!failed.length) return muted("None.");
  return el("table", { id: "campaign-failed" },
    el("thead", {}, el("tr", {}, ["Device", "Wave", "Attempt", "From", "Reason", "Failed"].map((h) => el("th", {}, h)))),
    el("tbody", {}, failed.map((d) => el("tr", { "data-device-id": d.device_id },
      el("td", {}, deviceLink(d.device_id)), el("td", { class: "num" }, d.wave), el("td", { class: "num" }, d.attempt),
      el("td", {}, d.from_version || "—"), el("td", {}, d.failure_reason || "—"), el("td", {}, when(d.state_at))))));
}

function facts(c) {
  const hours = c.window_start ? `${c.window_start.slice(0, 5)}–${c.window_end.slice(0, 5)} device time` : "any time";
  const rows = [
    ["Target version", c.target_version], ["Target", JSON.stringify(c.target)],
    ["Waves", c.waves.map(share).join(", ")], ["Soak between waves", `${Math.round(c.soak_s / 60)} min`],
    ["Window", hours], ["Starts", new Date(c.starts_at).toLocaleString()],
    ["Created", [`by ${c.created_by} `, when(c.created_at)]], ["Finished", c.finished_at && when(c.finished_at)],
    ["Artifact", c.artifact_url], ["Safe to use", c.safe_to_use == null ? null : c.safe_to_use ? "yes" : "no"],
    ["Instructions", c.instructions],
  ].filter(([, v]) => v != null && v !== "");
  return el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// Buttons for the moves the status allows; none while loading or while a move is under way.
function setMoves(status) {
  for (const [move, { from }] of Object.entries(MOVES)) $(`#campaign-${move}`).disabled = !from.includes(status);
}

function say(text, kind = "error") {
  const message = $("#campaign-message");
  message.textContent = text || "";
  message.className = kind;
  message.hidden = !text;
}

// POST the move, then show the campaign as it now is; a refusal is shown in the page.
async function moveCampaign(move) {
  const id = shownCampaign;
  if (move === "cancel" && !confirm(`Cancel campaign ${id} for good? Devices not yet commanded never will be.`)) return;
  say(null);
  setMoves(null);
  try {
    await api(`/campaigns/${encodeURIComponent(id)}/${move}`, { method: "POST" });
    say(`${MOVES[move].done}.`, "muted");
  } catch (error) {
    if (!(error instanceof ApiError) || ![403, 409].includes(error.status)) return report(error);
    const why = error.status === 403 ? "needs an admin or firmware key. The API said: " : "";
    say(`${move[0].toUpperCase()}${move.slice(1)} refused: ${why}${error.detail}`);
    if (error.status === 403) return setMoves(shownStatus); // nothing changed
  }
  scheduleCampaigns();
  if (shownCampaign === id) await showCampaign(id);
}

// -- live -------------------------------------------------------------------------------

const scheduleCampaigns = throttle(() => {
  if (shownCampaign) showCampaign(shownCampaign).catch(report);
  loadCampaigns().catch(reportCampaigns);
}, REFRESH_GAP_MS);

function campaignEvent(payload) {
  const c = payload.campaign || {};
  addLiveEvent({ "data-campaign-id": c.id }, payload,
    el("strong", {}, campaignLink(c.id, `campaign ${c.id}`), ` ${describeEvent(payload.event, payload.detail)}`),
    " ", el("span", { class: "muted" }, c.name));
  scheduleCampaigns();
  // A resume resolves the halt's incident, with no incident event to say so.
  if (payload.event === "resume") scheduleRefresh();
}

// -- wiring -----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const move of Object.keys(MOVES)) {
    $(`#campaign-${move}`).addEventListener("click", () => moveCampaign(move).catch(report));
  }
  $("#campaigns tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-campaign-id]");
    if (row && !event.target.closest("a")) location.hash = `campaign=${encodeURIComponent(row.dataset.campaignId)}`;
  });
});
