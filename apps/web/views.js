// The screens, built with DOM calls only (text is always set as text, never as HTML).
import { t, num, bytes, dateTime, ago, LANGUAGES, language } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// An icon drawn in SVG (no icon font, no emoji font needed), hidden from screen readers:
// the label next to it says the same in words.
function icon(path) {
  const s = document.createElementNS(SVG, "svg");
  s.setAttribute("viewBox", "0 0 24 24");
  s.setAttribute("class", "icon");
  s.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(SVG, "path");
  p.setAttribute("d", path);
  s.append(p);
  return s;
}
const BOLT = "M13 2 4 14h6l-1 8 9-12h-6z";
const ALERT = "M12 2 1 21h22zm-1 7h2v6h-2zm0 8h2v2h-2z";
const UP = "M12 4 4 14h5v6h6v-6h5z";

const RANK = { flash: 3, immediate: 2, priority: 1, routine: 0 };

// The precedence label: colour, an icon and the word (never colour alone).
export function badge(precedence) {
  if (!precedence || precedence === "routine") return null;
  const path = precedence === "flash" ? BOLT : precedence === "immediate" ? ALERT : UP;
  return h("span", { class: `badge badge-${precedence}`, "data-precedence": precedence },
    icon(path), h("span", { class: "badge-text", text: t(`prec-${precedence}`) }));
}

export function highest(msgs) {
  let best = "routine";
  for (const m of msgs) if ((RANK[m.precedence] || 0) > RANK[best]) best = m.precedence;
  return best;
}

export function screen(titleId, ...body) {
  return [h("h2", { class: "screen-title", id: "screen-title", text: t(titleId) }), ...body];
}

export function notice(titleId, helpId, extraId) {
  return h("section", { class: "notice" },
    h("h2", { class: "screen-title", id: "screen-title", text: t(titleId) }),
    extraId ? h("p", { class: "error", role: "alert", text: t(extraId) }) : null,
    h("p", { text: t(helpId) }));
}

// The conversation list: title, last message, unread count, highest unread precedence.
export function list(items, onCreate) {
  const create = newConversation(onCreate);
  if (items.length === 0) return screen("list-title", create, h("p", { class: "empty", text: t("list-empty") }));
  const rows = items.map(({ conv, last, unread, unreadPrecedence }) =>
    h("li", { class: "conv-row" },
      h("a", { href: `#/c/${encodeURIComponent(conv.id)}`, class: "conv-link", "data-conversation": conv.id },
        h("span", { class: "conv-line" },
          h("span", { class: "conv-title", text: conv.title }),
          unread > 0 ? h("span", { class: "unread", text: t("list-unread", { count: unread }) }) : null),
        h("span", { class: "conv-line" },
          badge(unread > 0 ? unreadPrecedence : last && last.precedence),
          h("span", { class: "conv-last", text: last ? `${last.author_name || ""}: ${last.deleted ? t("conv-deleted") : last.body}` : t("list-no-messages") }),
          last ? h("time", { class: "when", datetime: new Date(last.sent_at_ms).toISOString(), text: dateTime(last.sent_at_ms) }) : null))));
  return screen("list-title", create, h("ul", { class: "conv-list", "aria-labelledby": "screen-title" }, rows));
}

// Device ids typed or pasted: separated by spaces, commas or new lines.
export const deviceIds = (text) => text.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);

// "New conversation": a title and the members' device ids; this device becomes its admin.
function newConversation(onCreate) {
  const title = h("input", { id: "new-title", name: "title", type: "text", required: true, autocomplete: "off", dir: "auto" });
  const members = h("textarea", { id: "new-members", name: "members", rows: "2", dir: "ltr", placeholder: t("new-members-placeholder") });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "new-conv-form", id: "new-conv" },
    h("div", { class: "field" }, h("label", { for: "new-title", text: t("new-title") }), title),
    h("div", { class: "field" }, h("label", { for: "new-members", text: t("new-members") }), members),
    error,
    h("button", { type: "submit", class: "primary", id: "new-create", text: t("new-create") }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    onCreate({ title, members, error, form });
  });
  return h("details", { class: "new-conv", id: "new-conv-box" },
    h("summary", { class: "summary-button", text: t("new-conversation") }), form);
}

function stateText(m) {
  if (!m.mine) return t("state-received");
  const k = /^delivered to (\d+) of (\d+)$/.exec(m.state || "");
  if (k) return t("state-delivered-count", { k: num(+k[1]), n: num(+k[2]) });
  return m.state === "delivered" ? t("state-delivered") : t("state-sent");
}

// Quick reactions offered on a message (any emoji can come from other devices).
export const REACTIONS = ["👍", "✅", "🙏", "❤️", "⚠️"];

// One message: author, time, precedence, the message it answers, body, state (for one's own
// messages a button that opens who has it), Reply, and a menu: react, edit, delete.
// `ui` holds the handlers and what is open: {me, onReply, onEdit, onDelete, onReact,
// onDetail, detailOpen: Set, menuOpen: id}.
export function message(m, byId, ui) {
  const author = m.mine ? t("conv-you") : m.author_name || m.author.slice(0, 8);
  const parent = m.reply_to && byId.get(m.reply_to);
  const p = m.precedence || "routine";
  const state = m.mine && !isAlert(m)
    ? h("button", { type: "button", class: "link-button state state-detail", "aria-expanded": ui.detailOpen.has(m.id) ? "true" : "false", onclick: () => ui.onDetail(m), text: stateText(m) })
    : h("span", { class: "state", text: stateText(m) });
  return h("li", { class: `msg prec-${p}${m.mine ? " mine" : ""}`, "data-id": m.id, "data-precedence": p },
    h("div", { class: "msg-head" },
      badge(p),
      h("span", { class: "author", text: author }),
      h("time", { datetime: new Date(m.sent_at_ms).toISOString(), text: dateTime(m.sent_at_ms) })),
    parent ? h("p", { class: "reply-ref", text: `${t("conv-in-reply", { name: parent.mine ? t("conv-you") : parent.author_name || "" })}: ${parent.deleted ? t("conv-deleted") : parent.body}` }) : null,
    h("p", { class: `body${m.deleted ? " deleted" : ""}`, dir: "auto", text: m.deleted ? t("conv-deleted") : m.body }),
    h("div", { class: "msg-foot" },
      m.edited_at_ms ? h("span", { class: "edited", text: t("conv-edited") }) : null,
      m.expires_at_ms ? h("span", { class: "expires", "data-expires": String(m.expires_at_ms), text: t("conv-expires", { time: dateTime(m.expires_at_ms) }) }) : null,
      m.reactions && m.reactions.length ? h("span", { class: "reactions", "aria-label": t("conv-reactions"), text: m.reactions.map((r) => r.emoji).join(" ") }) : null,
      state,
      m.deleted ? null : h("button", { type: "button", class: "link-button reply", onclick: () => ui.onReply(m), text: t("conv-reply") })),
    m.deleted ? null : actions(m, ui));
}

// The message's menu: reactions (one's own toggles off), and for one's own message Edit and
// Delete (asks once more before deleting for everyone).
function actions(m, ui) {
  const myReaction = (m.reactions || []).find((r) => r.device === ui.me);
  const react = REACTIONS.map((e) =>
    h("button", { type: "button", class: "react", "data-emoji": e, "aria-pressed": myReaction && myReaction.emoji === e ? "true" : "false",
      "aria-label": t("conv-react-with", { emoji: e }), onclick: () => ui.onReact(m, myReaction && myReaction.emoji === e ? null : e), text: e }));
  const confirm = h("button", { type: "button", class: "danger delete-confirm", hidden: true, onclick: () => ui.onDelete(m), text: t("conv-delete-confirm") });
  const own = m.mine ? [
    h("button", { type: "button", class: "secondary edit", onclick: () => ui.onEdit(m), text: t("conv-edit") }),
    h("button", { type: "button", class: "secondary delete", onclick: (e) => { e.target.hidden = true; confirm.hidden = false; confirm.focus(); }, text: t("conv-delete") }),
    confirm,
  ] : [];
  const box = h("details", { class: "msg-more", open: ui.menuOpen === m.id },
    h("summary", { class: "summary-button", text: t("conv-more") }),
    h("div", { class: "reacts", role: "group", "aria-label": t("conv-react") }, react),
    own.length ? h("div", { class: "own-actions" }, own) : null);
  box.addEventListener("toggle", () => ui.onMenu(m, box.open));
  return box;
}

// Who has one's own message: each member's answer (the roll-call without acknowledgements).
export function deliveryDetail(call) {
  const rows = (call.members || []).map((x) =>
    h("li", { class: `roll-member roll-${x.state}`, "data-device": x.device, "data-state": x.state },
      h("span", { class: "roll-name", text: x.name || x.device.slice(0, 8) }),
      h("span", { class: "roll-state", text: x.state === "acknowledged" ? t("roll-acknowledged-at", { time: dateTime(x.acknowledged_at_ms) }) : t(`roll-${x.state.replace("_", "-")}`) })));
  return h("ul", { class: "roll-members delivery-detail", "aria-label": t("conv-delivery-detail") }, rows);
}

export const isAlert = (m) => !m.deleted && (m.precedence === "flash" || m.precedence === "immediate");

// The answers to an alert: for its sender the roll-call (counts, each member, Alert again);
// for a member an Acknowledge button, or when it acknowledged.
export function alertPanel(m, call, me, { onAck, onRealert }) {
  if (!call) return null;
  if (!m.mine) {
    const mine = (call.members || []).find((x) => x.device === me);
    if (!mine) return null;
    if (mine.state === "acknowledged") {
      return h("p", { class: "ack-done", "data-ack": "done", text: t("ack-done", { time: dateTime(mine.acknowledged_at_ms) }) });
    }
    return h("button", { type: "button", class: "primary ack", "data-ack": m.id, onclick: (e) => { e.target.disabled = true; onAck(m); }, text: t("ack-button") });
  }
  const c = call.counts || {};
  const rows = deliveryDetail(call);
  rows.classList.remove("delivery-detail");
  rows.setAttribute("aria-label", t("roll-title"));
  const pending = (call.members || []).some((x) => x.state !== "acknowledged");
  return h("details", { class: "rollcall", "data-rollcall": m.id },
    h("summary", { text: t("roll-summary", { ack: num(c.acknowledged || 0), read: num(c.read || 0), delivered: num(c.delivered || 0), missing: num(c.not_delivered || 0) }) }),
    rows,
    pending ? h("button", { type: "button", class: "secondary realert", "data-realert": m.id, onclick: (e) => { e.target.disabled = true; onRealert(m); }, text: t("roll-realert") }) : null);
}

// How long a message may live, offered in compose (`expires_in_ms`; relays stop carrying it
// then, docs/api.md).
export const EXPIRIES = { never: 0, hour: 3600e3, day: 86400e3, week: 7 * 86400e3, month: 30 * 86400e3 };

// The conversation screen's frame: header with the conversation's details (members, admin
// actions, read receipts), message list (filled later), compose form.
export function conversation(conv, onSend) {
  const list = h("ol", { class: "messages", "aria-live": "polite", "aria-labelledby": "screen-title" });
  const replying = h("div", { class: "replying", hidden: true });
  const text = h("textarea", { id: "compose-text", name: "body", rows: "2", required: true, placeholder: t("compose-placeholder"), dir: "auto" });
  const prec = h("select", { id: "compose-precedence", name: "precedence" },
    ["routine", "priority", "immediate", "flash"].map((p) => h("option", { value: p, text: t(`prec-${p}`) })));
  const expiry = h("select", { id: "compose-expiry", name: "expiry" },
    Object.keys(EXPIRIES).map((k) => h("option", { value: k, text: t(`expiry-${k}`) })));
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "compose", id: "compose" },
    replying,
    h("div", { class: "compose-row" },
      h("div", { class: "compose-field" }, h("label", { for: "compose-precedence", text: t("compose-precedence") }), prec),
      h("div", { class: "compose-field" }, h("label", { for: "compose-expiry", text: t("compose-expiry") }), expiry)),
    h("label", { for: "compose-text", class: "visually-hidden", text: t("compose-label") }),
    h("div", { class: "compose-text-row" },
      text,
      h("button", { type: "submit", class: "primary", id: "compose-send", text: t("compose-send") })),
    error);
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    onSend({ text, prec, expiry, error, form });
  });
  const info = h("details", { class: "conv-info", id: "conv-info" },
    h("summary", { class: "summary-button members", text: t("conv-members", { count: conv.members ? conv.members.length : 0 }) }));
  const view = [
    h("div", { class: "conv-head" },
      h("a", { href: "#/", class: "back", text: t("conv-back") }),
      h("h2", { class: "screen-title", id: "screen-title", text: conv.title }),
      info),
    list,
    form,
  ];
  return { view, list, replying, text, prec, expiry, info };
}

// The conversation's details, inside its header: the members (admins marked; an admin can
// remove one, asked once more, or add one by device id), this device's read receipts switch,
// and Leave.
export function conversationInfo(conv, me, { onAdd, onRemove, onReadReceipts }) {
  const members = conv.members || [];
  const rows = members.map((m) => {
    const confirm = h("button", { type: "button", class: "danger remove-confirm", hidden: true, onclick: () => onRemove(m.device), text: m.device === me ? t("info-leave-confirm") : t("info-remove-confirm") });
    const canRemove = m.device === me ? members.length > 1 : conv.admin;
    return h("li", { class: "info-member", "data-device": m.device },
      h("span", { class: "roll-name", text: m.device === me ? t("conv-you") : m.name || m.device.slice(0, 8) }),
      m.admin ? h("span", { class: "admin-mark", text: t("info-admin") }) : null,
      canRemove ? h("button", { type: "button", class: "secondary remove", onclick: (e) => { e.target.hidden = true; confirm.hidden = false; confirm.focus(); }, text: m.device === me ? t("info-leave") : t("info-remove") }) : null,
      confirm);
  });
  const receipts = h("input", { type: "checkbox", id: "info-read-receipts", checked: !!conv.read_receipts, onchange: (e) => onReadReceipts(e.target.checked, e.target) });
  const parts = [
    h("ul", { class: "info-members", "aria-label": t("info-members") }, rows),
    h("div", { class: "check" }, receipts, h("label", { for: "info-read-receipts", text: t("info-read-receipts") })),
  ];
  if (conv.admin) {
    const device = h("input", { id: "info-add-device", type: "text", autocomplete: "off", dir: "ltr", required: true });
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const form = h("form", { class: "info-add", id: "info-add" },
      h("div", { class: "field" }, h("label", { for: "info-add-device", text: t("info-add-device") }), device),
      error,
      h("button", { type: "submit", class: "primary", id: "info-add-button", text: t("info-add") }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      onAdd({ device, error, form });
    });
    parts.push(form);
  }
  return parts;
}

// The bar above compose: replying to a message, or editing one's own.
export function showReplying(el, m, onCancel, editing = false) {
  el.replaceChildren();
  if (!m) {
    el.hidden = true;
    delete el.dataset.mode;
    return;
  }
  el.hidden = false;
  el.dataset.mode = editing ? "edit" : "reply";
  el.append(
    h("span", { text: editing ? t("conv-editing") : `${t("conv-replying", { name: m.mine ? t("conv-you") : m.author_name || "" })}: ${m.body}` }),
    h("button", { type: "button", class: "link-button", onclick: onCancel, text: editing ? t("conv-edit-cancel") : t("conv-reply-cancel") }));
}

function transport(addr) {
  const a = addr || "";
  if (a.includes("/quic")) return t("transport-quic");
  if (a.includes("/tcp/")) return t("transport-tcp");
  if (a.includes("ble") || a.includes("bluetooth")) return t("transport-ble");
  return t("transport-other");
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => h("div", { class: "fact" }, h("dt", { text: t(k) }), h("dd", { text: v }))));
}

// Mesh health: the node's state, its links with their transports, the peers seen and when.
export function mesh(status, peers) {
  const tr = status.traffic || {};
  const connected = (peers.connected || []).map((p) =>
    h("li", { class: "peer" },
      h("span", { class: "peer-name", text: p.name || t("mesh-unknown-peer") }),
      h("span", { class: "peer-detail", text: `${transport(p.addr)} · ${t(p.outbound ? "mesh-outbound" : "mesh-inbound")} · ${t("mesh-since", { time: ago(p.since_ms) })}` }),
      h("span", { class: "peer-detail", text: t("mesh-traffic-value", { in: bytes(p.bytes_in), out: bytes(p.bytes_out) }) })));
  const seen = (peers.seen || []).map((p) =>
    h("li", { class: "peer" },
      h("span", { class: "peer-name", text: p.name || t("mesh-unknown-peer") }),
      h("span", { class: "peer-detail", text: `${transport((p.addrs || [])[0])}${p.static ? ` · ${t("mesh-static")}` : ""} · ${t("mesh-last-seen", { time: ago(p.last_seen_ms) })}` })));
  const unreachable = (peers.static || []).filter((s) => s.unreachable).map((s) =>
    h("li", { class: "peer" }, h("span", { class: "peer-name addr", text: s.addr }),
      h("span", { class: "peer-detail error", text: t("mesh-unreachable", { count: num(s.failures) }) })));
  const warnings = status.warnings || [];
  return screen("mesh-title",
    facts([
      ["mesh-state", t(status.online ? "mesh-online" : "mesh-offline")],
      ["mesh-links", num(status.links)],
      ["mesh-conversations", num(status.conversations)],
      ["mesh-backlog", num(status.pending)],
      ["mesh-stored", bytes(status.stored_bytes)],
      ["mesh-traffic", t("mesh-traffic-value", { in: bytes(tr.bytes_in || 0), out: bytes(tr.bytes_out || 0) })],
      ["mesh-refused", num(tr.refused || 0)],
    ]),
    h("h3", { text: t("mesh-connected") }),
    connected.length ? h("ul", { class: "peers" }, connected) : h("p", { class: "empty", text: t("mesh-none-connected") }),
    h("h3", { text: t("mesh-seen") }),
    seen.length || unreachable.length ? h("ul", { class: "peers" }, seen, unreachable) : h("p", { class: "empty", text: t("mesh-none-seen") }),
    warnings.length ? [h("h3", { text: t("mesh-warnings") }), h("ul", { class: "warnings" }, warnings.map((w) => h("li", { text: w })))] : null);
}

// Settings: language (switched at once), theme, this device, sign out.
export function settings(status, theme, sound, { onLanguage, onTheme, onSound, onNotify, onSignOut }) {
  const lang = h("select", { id: "settings-language", onchange: (e) => onLanguage(e.target.value) },
    Object.entries(LANGUAGES).map(([code, name]) => h("option", { value: code, lang: code, selected: code === language(), text: name })));
  const th = h("select", { id: "settings-theme", onchange: (e) => onTheme(e.target.value) },
    ["system", "light", "dark"].map((v) => h("option", { value: v, selected: v === theme, text: t(`theme-${v}`) })));
  return screen("settings-title",
    h("div", { class: "field" }, h("label", { for: "settings-language", text: t("settings-language") }), lang),
    h("div", { class: "field" }, h("label", { for: "settings-theme", text: t("settings-theme") }), th),
    h("div", { class: "check" },
      h("input", { type: "checkbox", id: "settings-sound", checked: sound, onchange: (e) => onSound(e.target.checked) }),
      h("label", { for: "settings-sound", text: t("settings-sound") })),
    notifyField(onNotify),
    status ? h("h3", { text: t("settings-device") }) : null,
    status ? facts([["settings-device", status.name], ["settings-safety", status.safety_number]]) : null,
    h("button", { type: "button", class: "secondary", id: "signout", onclick: onSignOut, text: t("settings-signout") }));
}

// Notifications of FLASH and IMMEDIATE messages while the page is in the background: the
// browser asks once; what it answered is shown.
function notifyField(onNotify) {
  const supported = typeof Notification !== "undefined";
  const state = supported ? Notification.permission : "unsupported";
  const text = h("p", { class: "notify-state", id: "settings-notify-state", "data-state": state, text: t(`notify-${state}`) });
  return h("div", { class: "field" },
    h("span", { class: "field-label", text: t("settings-notifications") }),
    text,
    supported && state === "default"
      ? h("button", { type: "button", class: "secondary", id: "settings-notify", onclick: () => onNotify(), text: t("notify-ask") })
      : null);
}
