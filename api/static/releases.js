// Release health (#releases=<model>): each firmware version of a model against the version
// it replaced, one bar chart per vital, with the ratio and its 95% interval in words.
//
// Loaded after dashboard.js, whose helpers (el, svg, api, muted, number, ...) it uses; every
// value reaches the page through the DOM, never through innerHTML.
"use strict";

const RELEASE_WINDOWS = [7, 30, 90];
let releaseLoads = 0; // the latest load; older answers are dropped

// Rates span 0.002 reboots to 600 offline minutes a day: three significant digits.
const rateText = (v) => (v == null ? "—" : String(Number(v.toPrecision(3))));

// One vital across the versions: a bar per version (its rate), newest on top.
function vitalChart(name, versions) {
  const rows = versions.map((v) => ({ v, x: v.vitals.find((x) => x.name === name) })).filter((r) => r.x);
  const label = rows.length ? rows[0].x.label : name;
  const W = 560, ROW = 26, L = 70, R = 250;
  const H = rows.length * ROW + 8;
  const max = Math.max(0, ...rows.map((r) => r.x.rate ?? 0)) || 1;
  const root = svg("svg", { class: "chart bars", "data-vital": name, viewBox: `0 0 ${W} ${H}`,
    role: "img", "aria-label": label });
  rows.forEach(({ v, x }, i) => {
    const y = 4 + i * ROW;
    const width = Math.max(1, ((x.rate ?? 0) / max) * (W - L - R));
    root.append(
      svg("text", { x: L - 6, y: y + 15, "text-anchor": "end" }, v.firmware),
      svg("rect", { class: `bar verdict-${x.verdict.replace(" ", "-")}`, x: L, y: y + 3, height: ROW - 8, width }),
      svg("text", { x: L + width + 6, y: y + 15 }, `${rateText(x.rate)} ${ratioWords(x, v)}`),
    );
  });
  return el("figure", { class: "chart-box vital" }, el("figcaption", {}, label), root);
}

function ratioWords(x, v) {
  if (!v.baseline) return "";
  if (!x.ratio) return `(vs ${v.baseline}: no events)`;
  const r = x.ratio;
  const est = r.estimate == null ? "new" : `×${r.estimate.toFixed(2)}`;
  const high = r.high == null ? "∞" : r.high.toFixed(2);
  return `${est} (${r.low.toFixed(2)}–${high}) vs ${v.baseline}: ${x.verdict}`;
}

async function openReleases(model) {
  const load = ++releaseLoads;
  const body = $("#release-body");
  const models = await api("/models");
  if (load !== releaseLoads) return;
  const chosen = model || (models[0] && models[0].id);
  const days = Number($("#release-window").value) || 30;
  const picker = $("#release-model");
  picker.replaceChildren(...models.map((m) => el("option", { value: m.id, selected: m.id === chosen }, m.name || m.id)));
  if (!chosen) return body.replaceChildren(muted("No models."));
  body.replaceChildren(muted("Loading…"));
  const health = await api(`/releases/health?${query({ model: chosen, window_days: days })}`);
  if (load !== releaseLoads) return;
  if (!health.versions.length) {
    return body.replaceChildren(muted(`No firmware data for ${chosen} in the last ${days} days.`));
  }
  const names = health.versions[0].vitals.map((x) => x.name);
  body.replaceChildren(
    el("p", { class: "muted", id: "release-as-of" },
      `${health.first_day} to ${health.last_day}, heartbeats rolled up to `,
      health.as_of ? when(health.as_of) : "none yet", ". Bars: the rate; worse or better only where ",
      "the 95% interval of the ratio to the version replaced excludes 1."),
    table(["Version", "Replaced", "Device-days", "First day", "Last day"], health.versions.map((v) =>
      [v.firmware, v.baseline || "—", String(v.device_days), v.first_day, v.last_day])),
    el("div", { class: "charts" }, names.map((n) => vitalChart(n, health.versions))),
  );
}

function releasesRoute(model) {
  openReleases(model).catch((error) => {
    $("#release-body").replaceChildren(el("p", { class: "error" }, error.message));
    report(error);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#release-window").replaceChildren(...RELEASE_WINDOWS.map((d) =>
    el("option", { value: d, selected: d === 30 }, `last ${d} days`)));
  $("#release-model").addEventListener("change", (e) => {
    location.hash = `releases=${encodeURIComponent(e.target.value)}`;
  });
  $("#release-window").addEventListener("change", () => releasesRoute($("#release-model").value));
});
