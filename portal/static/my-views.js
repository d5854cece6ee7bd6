// The customer's page, continued: the messages we sent, recalls and updates, preferences and
// channels, and what a message's link opens. Uses the helpers of my.js.
"use strict";

// -- messages ---------------------------------------------------------------------------

const TEMPLATE_WORDS = {
  device_offline: "Device offline",
  device_offline_during_outage: "Device offline during an outage",
  device_offline_known_outage: "Device offline in a known outage",
  device_back_online: "Back online",
  device_never_seen: "Not connected yet",
  device_unstable: "Connection keeps dropping",
  device_low_battery: "Battery low",
  device_battery_drain: "Battery draining fast",
  device_reboot_loop: "Keeps restarting",
  device_temperature: "Temperature out of range",
  recall_notice: "Recall notice",
  safety_recall: "Safety recall",
  recall_follow_up: "Safety recall reminder",
  recall_no_action_needed: "No action needed",
  recall_remedied: "Recall done",
  recall_remedy_failed: "Recall update failed",
  channel_test: "Test message",
};
const templateWords = (t) => TEMPLATE_WORDS[t] || t.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

// Delivery state in words: sent, waiting (until when), failed with why.
function deliveryWords(n) {
  switch (n.status) {
    case "sent": return `Sent ${timeText(n.sent_at)}`;
    case "pending":
      return Date.parse(n.due_at) > Date.now()
        ? `Waiting until ${timeText(n.due_at)} (quiet hours or your hourly limit)`
        : "Waiting to be sent";
    case "sending": return "Being sent";
    case "failed": return `Failed${n.last_error ? `: ${n.last_error}` : ""}`;
    case "cancelled": return "Not sent: no longer needed";
    default: return n.status;
  }
}

function messageLine(n) {
  return el("li", { class: `message d-${n.status}`, "data-notification-id": n.id,
    "data-state": n.status },
  el("strong", {}, templateWords(n.template)), " ",
  n.device_id && el("span", { class: "muted" }, `(${n.device_id}) `),
  el("span", { class: "delivery" }, deliveryWords(n)),
  n.incident_id && [" · ", el("a", { href: `#incident/${n.incident_id}` }, "timeline")]);
}

function channelTitle(c) {
  return `${c.label || c.kind} (${c.url})`;
}

async function showMessages() {
  const [sent, channels] = await Promise.all([get("/me/notifications?limit=200"),
    get("/me/channels")]);
  const byChannel = new Map(channels.map((c) => [c.id, []]));
  for (const n of sent) {
    if (!byChannel.has(n.channel_id)) byChannel.set(n.channel_id, []);
    byChannel.get(n.channel_id).push(n);
  }
  const named = new Map(channels.map((c) => [c.id, c]));
  const sections = [...byChannel].map(([id, items]) => el("section",
    { class: "channel-messages", "data-channel-id": id ?? "" },
    el("h2", {}, named.has(id) ? channelTitle(named.get(id)) : "A channel since removed"),
    items.length ? el("ul", { class: "plain" }, items.map(messageLine)) : muted("No messages yet.")));
  render("messages", "Messages we sent you",
    sections.length ? el("div", { class: "grid2" }, sections) : muted("No channels yet."));
}

// -- recalls and updates ----------------------------------------------------------------

const STATE_WORDS = {
  pending: "Not started", notified: "Waiting for you to read it", acknowledged: "Read",
  sent: "Updating", accepted: "Updating", downloading: "Downloading",
  installing: "Installing", rebooting: "Restarting", succeeded: "Updated", failed: "Update failed",
  remedied: "Already has the fix", skipped: "Not updated", cancelled: "Cancelled",
};

function deviceName(id) {
  const card = state.home?.places.flatMap((g) => g.devices).find((c) => c.id === id);
  return card ? card.name : id;
}

// A recall notice waits in `notified`; a safety recall's device keeps its update's state,
// so its notice is unread until acknowledged, unless the car already has the fix.
function recallUnread(c) {
  if (c.kind === "safety_recall") {
    return c.devices.some((d) => !d.acknowledged_at
      && !["remedied", "succeeded", "cancelled"].includes(d.state));
  }
  return c.kind === "recall_notice" && c.devices.some((d) => d.state === "notified");
}

function campaignCard(c) {
  const recall = c.kind === "recall_notice" || c.kind === "safety_recall";
  const unread = recallUnread(c);
  return el("article", { class: `card${unread ? " problem" : ""}`, "data-campaign-id": c.campaign_id },
    el("h2", {}, c.name),
    el("p", { class: "muted" }, c.kind === "safety_recall" ? "Safety recall"
      : recall ? "Recall notice" : `Software update to ${c.target_version}`),
    recall && c.safe_to_use != null && el("p", { class: c.safe_to_use ? "status" : "status st-offline" },
      c.safe_to_use ? "You can keep using it." : "Stop using it until it is fixed."),
    c.instructions && el("p", { class: "todo" }, c.instructions),
    el("ul", { class: "plain" }, c.devices.map((d) => el("li", { "data-device-id": d.device_id,
      "data-state": d.state }, `${deviceName(d.device_id)}: ${STATE_WORDS[d.state] || d.state}`,
    d.acknowledged_at ? ` on ${timeText(d.acknowledged_at)}` : "",
    d.state === "failed" && d.failure_reason ? ` (${d.failure_reason.replace(/_/g, " ")})` : ""))),
    unread && actionButton("I have read this", async () => {
      await call("POST", `/me/campaigns/${c.campaign_id}/ack`);
      await showRecalls();
    }, { class: "primary" }));
}

async function showRecalls() {
  if (!state.home) await loadHome();
  const campaigns = await get("/me/campaigns");
  render("recalls", "Recalls & updates",
    campaigns.length ? el("div", { class: "grid2" }, campaigns.map(campaignCard))
      : muted("Nothing concerns your devices."));
}

// -- preferences and channels -----------------------------------------------------------

function field(id, label, input, hint) {
  input.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label), input,
    hint && el("p", { class: "muted hint" }, hint));
}

function timezoneSelect(current) {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const all = [...new Set([current, "UTC", ...zones])].sort();
  return el("select", { name: "timezone" }, all.map((z) => el("option", { value: z,
    selected: z === current }, z)));
}

async function showPreferences() {
  const home = await loadHome();
  const me = home.customer;
  const ceiling = home.max_messages_per_hour_ceiling;
  const name = el("input", { type: "text", required: true, maxlength: "200", value: me.name });
  const zone = timezoneSelect(me.timezone);
  const quietStart = el("input", { type: "time", value: (me.quiet_hours_start || "").slice(0, 5) });
  const quietEnd = el("input", { type: "time", value: (me.quiet_hours_end || "").slice(0, 5) });
  const limit = el("input", { type: "number", min: "1", max: String(ceiling), step: "1",
    value: me.max_messages_per_hour ?? "" });
  const status = el("p", { id: "preferences-status", role: "status" });
  const form = el("form", { id: "preferences-form", class: "panel" },
    field("pref-name", "Your name", name),
    field("pref-timezone", "Your timezone", zone, "Times on this page and in messages."),
    el("fieldset", {}, el("legend", {}, "Quiet hours"),
      muted("Messages wait until they end, except a critical alarm (an alarm panel going offline)."),
      field("pref-quiet-start", "From", quietStart), field("pref-quiet-end", "Until", quietEnd)),
    field("pref-limit", "Most messages an hour", limit,
      `At most ${ceiling}, the operator's limit; empty: that limit.`),
    el("button", { type: "submit", class: "primary" }, "Save"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bothOrNone = !quietStart.value === !quietEnd.value;
    if (!bothOrNone) { status.textContent = "Give both ends of the quiet hours, or neither."; return; }
    try {
      state.me = await call("PATCH", "/me", {
        name: name.value.trim(),
        timezone: zone.value,
        quiet_hours_start: quietStart.value || null,
        quiet_hours_end: quietEnd.value || null,
        max_messages_per_hour: limit.value ? Number(limit.value) : null,
      });
      status.textContent = "Saved.";
    } catch (error) {
      if (!(error instanceof SignedOut)) status.textContent = error.message;
    }
  });
  const channels = el("section", { class: "side-col" }, el("h2", {}, "Where we reach you"),
    el("ul", { id: "channels", class: "plain" }), addChannelForm());
  render("preferences", "Preferences", cols(el("div", { class: "main-col" }, form), channels));
  await refreshChannels();
}

const PLACEHOLDERS = {
  email: "mailto://you@example.com",
  sms: "twilio://…",
  push: "ntfy://ntfy.sh/your-topic",
  webhook: "json://example.com/hook",
};

function addChannelForm() {
  const kind = el("select", {}, Object.keys(PLACEHOLDERS).map((k) => el("option", { value: k }, k)));
  const url = el("input", { type: "text", required: true, maxlength: "2000", spellcheck: "false",
    placeholder: PLACEHOLDERS.email, autocomplete: "off" });
  const label = el("input", { type: "text", maxlength: "200" });
  kind.addEventListener("change", () => { url.placeholder = PLACEHOLDERS[kind.value]; });
  const status = el("p", { id: "channel-status", role: "status" });
  const form = el("form", { id: "channel-form", class: "panel" }, el("h3", {}, "Add a channel"),
    field("channel-kind", "Kind", kind), field("channel-url", "Address", url,
      "An Apprise address: mailto://, ntfy://, json://… We send a code to it."),
    field("channel-label", "Name (optional)", label),
    el("button", { type: "submit" }, "Add"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const added = await call("POST", "/me/channels", { kind: kind.value, url: url.value.trim(),
        label: label.value.trim() || null });
      url.value = label.value = "";
      status.textContent = added.verified === false
        ? "Added. We sent a code to it: enter it below; it counts once verified." : "Added.";
      await refreshChannels();
    } catch (error) {
      if (!(error instanceof SignedOut)) status.textContent = error.message;
    }
  });
  return form;
}

function verifyForm(c, status) {
  const code = el("input", { type: "text", inputmode: "numeric", autocomplete: "one-time-code",
    maxlength: "12", id: `code-${c.id}`, required: true });
  const form = el("form", { class: "inline" }, el("label", { for: `code-${c.id}` }, "Code"), code,
    el("button", { type: "submit" }, "Verify"),
    actionButton("Send a new code", async () => {
      await call("POST", `/me/channels/${c.id}/code`);
      status.textContent = "A new code is on its way.";
    }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("POST", `/me/channels/${c.id}/verify`, { code: code.value.trim() });
      await refreshChannels();
    } catch (error) { failed(error); }
  });
  return form;
}

const SEVERITY_WORDS = {
  info: "every message", warning: "warnings and alarms", critical: "alarms only",
};

function channelItem(c) {
  const status = el("p", { class: "channel-result", role: "status" });
  const remove = actionButton("Remove", async (button) => {
    if (button.dataset.armed !== "yes") { // a second click confirms: no dialog to dismiss
      button.dataset.armed = "yes";
      button.textContent = "Really remove?";
      return;
    }
    await call("DELETE", `/me/channels/${c.id}`);
    await refreshChannels();
  });
  return el("li", { class: "channel", "data-channel-id": c.id },
    el("strong", {}, c.label || c.kind), " ", el("code", {}, c.url),
    el("p", { class: "muted" }, [c.kind, c.enabled ? "on" : "off",
      c.verified === false ? "not verified yet: it counts once verified" : "verified",
      SEVERITY_WORDS[c.min_severity] || c.min_severity].join(" · ")),
    c.verified === false && verifyForm(c, status),
    el("div", { class: "actions" },
      actionButton("Send a test message", async () => {
        const result = await call("POST", `/me/channels/${c.id}/test`);
        status.textContent = result.ok ? "Test message sent." : `Failed: ${result.error}`;
      }),
      remove),
    status);
}

async function refreshChannels() {
  const channels = await get("/me/channels");
  const list = $("#channels");
  if (!list) return;
  list.replaceChildren(...(channels.length ? channels.map(channelItem)
    : [el("li", { class: "muted" }, "No channels yet: add one to hear from us.")]));
}

// -- a message's link -------------------------------------------------------------------
// The link's token is the credential (POST /links/open, /links/act): the page works without
// signing in, for the devices that message was about, and offers to sign in for the rest.

function linkSubject(token, subject) {
  const device = subject.device;
  const incident = subject.incident;
  const open = incident && incident.status !== "resolved";
  return el("article", { class: "card link-subject", "data-device-id": device.id },
    el("h2", {}, device.name),
    el("p", { class: "muted" }, `${device.kind}, ${device.model}`),
    el("p", { class: "status", id: `status-${device.id}` }, device.status_text),
    open && device.what_to_do && el("p", { class: "todo" }, `What to do: ${device.what_to_do}`),
    subject.snoozed_until && el("p", { class: "muted snoozed" },
      `Alerts paused until ${timeText(subject.snoozed_until)}.`),
    subject.recall && el("div", { class: "recall" },
      el("h3", {}, subject.recall.name),
      el("p", {}, subject.recall.safety),
      subject.recall.instructions && el("p", {}, subject.recall.instructions),
      subject.recall.confirmed && muted("You confirmed you have read it.")),
    incident && el("h3", {}, incident.summary),
    incident && el("ol", { class: "timeline", id: "timeline" },
      incident.timeline.map(timelineLine)),
    el("div", { class: "actions" }, subject.actions.map((offer) =>
      actionButton(offer.label, async () => {
        const next = await call("POST", "/links/act",
          { token, action: offer.action, device_id: device.id });
        renderLink(token, next);
      }, { "data-action": offer.action }))));
}

function renderLink(token, opened) {
  state.me = { ...(state.me || {}), timezone: opened.customer.timezone };
  const status = el("p", { id: "link-signin-status", role: "status" });
  const signin = actionButton("Sign in to see all your devices", async () => {
    const answer = await call("POST", "/links/signin", { token });
    status.textContent = answer.detail;
  });
  render("message", `Hello ${opened.customer.first_name}`,
    opened.done && el("p", { class: "done", id: "link-done", role: "status" }, opened.done),
    opened.subjects.map((s) => linkSubject(token, s)),
    el("div", { class: "panel" },
      muted(`This link works until ${timeText(opened.expires_at)}, without signing in.`),
      signin, status));
}

async function showLink(token) {
  try {
    renderLink(token, await call("POST", "/links/open", { token }));
  } catch (error) {
    render("message", "This link cannot be opened",
      muted(error instanceof ApiError ? error.message : String(error)),
      el("p", {}, el("a", { href: "#signin" }, "Sign in")));
  }
}

window.showLink = showLink;
window.MORE_VIEWS = {
  messages: () => showMessages(),
  recalls: () => showRecalls(),
  preferences: () => showPreferences(),
};
