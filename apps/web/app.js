// The Vaarta web app: routes (#/, #/c/ID, #/mesh, #/settings), the live event stream, and
// the screens of views.js. Plain ES modules, no build step (docs/web.md).
import { api, ApiError } from "./api.js";
import { t, setLanguage, initialLanguage } from "./i18n.js";
import * as v from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const banner = document.getElementById("banner");
const alerts = document.getElementById("alerts");

const state = {
  route: null,
  conv: null, // the open conversation's frame (views.conversation) and its id
  replyTo: null,
  editing: null, // one's own message being edited in compose
  events: null,
  signedIn: false,
  status: null,
  gen: 0,
};

const readKey = (id) => `vaarta.read.${id}`;
const THEME = "vaarta.theme";
const SOUND = "vaarta.sound";
const soundOn = () => localStorage.getItem(SOUND) !== "off";

// FLASH and IMMEDIATE messages from others are also heard (and felt, on a phone): FLASH three
// short high tones, IMMEDIATE two lower ones, so the two are told apart without looking.
// Generated with Web Audio (no sound file). `data-alarms` counts them (for the browser test).
let audio = null;
function alarm(precedence) {
  document.body.dataset.alarms = String(Number(document.body.dataset.alarms || 0) + 1);
  document.body.dataset.lastAlarm = precedence;
  if (navigator.vibrate) navigator.vibrate(precedence === "flash" ? [200, 100, 200, 100, 200] : [200, 100, 200]);
  if (!soundOn()) return;
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    const [count, freq] = precedence === "flash" ? [3, 1175] : [2, 784];
    for (let i = 0; i < count; i++) {
      const start = audio.currentTime + i * 0.25;
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.3, start);
      gain.gain.exponentialRampToValueAtTime(0.001, start + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.2);
    }
  } catch (e) {
    console.warn("alert sound:", e);
  }
}

function notify(m) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted" || !document.hidden) return;
  try {
    new Notification(t("conv-new-alert", { precedence: t(`prec-${m.precedence}`), name: m.author_name || "" }), { body: m.body, tag: m.id, requireInteraction: m.precedence === "flash" });
  } catch (e) {
    console.warn("notification:", e);
  }
}

function applyTheme(theme) {
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function parseRoute() {
  const hash = location.hash || "#/";
  if (hash === "#signin-failed") return { name: "signin", failed: true };
  const m = /^#\/c\/(.+)$/.exec(hash);
  if (m) return { name: "conversation", id: decodeURIComponent(m[1]) };
  if (hash === "#/mesh") return { name: "mesh" };
  if (hash === "#/settings") return { name: "settings" };
  return { name: "list" };
}

function renderNav() {
  const r = state.route ? state.route.name : "list";
  const item = (href, id, active) =>
    v.h("a", { href, class: "nav-item", "aria-current": active ? "page" : null, text: t(id) });
  nav.setAttribute("aria-label", t("nav-label"));
  nav.replaceChildren(
    item("#/", "nav-conversations", r === "list" || r === "conversation"),
    item("#/mesh", "nav-mesh", r === "mesh"),
    item("#/settings", "nav-settings", r === "settings"));
  nav.hidden = !state.signedIn;
  document.title = t("app-title");
  document.getElementById("brand").textContent = t("app-title");
}

function show(nodes) {
  main.replaceChildren(...[nodes].flat(2).filter(Boolean));
  main.dataset.screen = state.route.name;
}

function failure(e) {
  if (e instanceof ApiError && e.status === 401) {
    state.signedIn = false;
    renderNav();
    show(v.notice("signin-title", "signin-help"));
  } else if (e instanceof ApiError && e.status === 0) {
    show(v.notice("offline-title", "offline-help"));
  } else {
    show(v.h("p", { class: "error", role: "alert", text: t("error-generic", { error: e.message }) }));
  }
}

async function listItems() {
  const convs = (await api.conversations()).filter((c) => c.member && !c.removed);
  return Promise.all(convs.map(async (conv) => {
    const msgs = await api.messages(conv.id, 50).catch(() => []);
    const read = Number(localStorage.getItem(readKey(conv.id)) || 0);
    const unreadMsgs = msgs.filter((m) => !m.mine && !m.deleted && m.sent_at_ms > read);
    return { conv, last: msgs[msgs.length - 1], unread: unreadMsgs.length, unreadPrecedence: v.highest(unreadMsgs) };
  })).then((items) => items.sort((a, b) => ((b.last && b.last.sent_at_ms) || 0) - ((a.last && a.last.sent_at_ms) || 0)));
}

async function renderMessages() {
  const c = state.conv;
  if (!c) return;
  const msgs = await api.messages(c.id, 100);
  if (state.conv !== c) return;
  const byId = new Map(msgs.map((m) => [m.id, m]));
  const atEnd = c.list.scrollHeight - c.list.scrollTop - c.list.clientHeight < 40;
  const ui = {
    me: state.status && state.status.device_id,
    onReply: reply,
    onEdit: edit,
    onDelete: deleteMessage,
    onReact: react,
    onDetail: toggleDetail,
    onMenu: (m, open) => {
      if (open) c.menuOpen = m.id;
      else if (c.menuOpen === m.id) c.menuOpen = null;
    },
    detailOpen: c.detailOpen,
    menuOpen: c.menuOpen,
  };
  c.list.replaceChildren(...(msgs.length
    ? msgs.map((m) => v.message(m, byId, ui))
    : [v.h("li", { class: "empty", text: t("conv-empty") })]));
  if (atEnd || !c.rendered) c.list.scrollTop = c.list.scrollHeight;
  const newest = msgs.reduce((a, m) => Math.max(a, m.sent_at_ms), 0);
  // Announce urgent messages that arrived since the last render (screen readers).
  if (c.rendered) {
    for (const m of msgs) {
      if (!m.mine && !c.seen.has(m.id) && (m.precedence === "flash" || m.precedence === "immediate")) {
        alerts.textContent = t("conv-new-alert", { precedence: t(`prec-${m.precedence}`), name: m.author_name || "" });
        alarm(m.precedence);
        notify(m);
      }
    }
  }
  c.seen = new Set(msgs.map((m) => m.id));
  c.rendered = true;
  if (newest) localStorage.setItem(readKey(c.id), String(newest));
  // Read receipts: the newest message of another member shown here (a watermark; the node
  // sends at most one per conversation every half minute).
  const last = [...msgs].reverse().find((m) => !m.mine);
  if (last && c.lastRead !== last.id) {
    c.lastRead = last.id;
    api.read(c.id, last.id).catch(() => {});
  }
  await Promise.all([renderAlerts(c, msgs), renderDetails(c, msgs)]);
}

// The delivery detail of one's own messages that are open: who has it, who read it.
async function renderDetails(c, msgs) {
  const open = msgs.filter((m) => c.detailOpen.has(m.id));
  const calls = await Promise.all(open.map((m) => api.rollcall(c.id, m.id).catch(() => null)));
  if (state.conv !== c) return;
  open.forEach((m, i) => {
    const li = c.list.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
    if (!li || !calls[i]) return;
    const old = li.querySelector(".delivery-detail");
    const detail = v.deliveryDetail(calls[i]);
    if (old) old.replaceWith(detail);
    else li.querySelector(".msg-foot").after(detail);
  });
}

async function toggleDetail(m) {
  const c = state.conv;
  if (c.detailOpen.has(m.id)) c.detailOpen.delete(m.id);
  else c.detailOpen.add(m.id);
  await renderMessages().catch(failure);
}

// The conversation's details panel, refreshed with the conversation (members change live).
async function renderInfo(c, conv) {
  conv = conv || await api.conversation(c.id);
  if (state.conv !== c) return;
  c.info.querySelector("summary").textContent = t("conv-members", { count: (conv.members || []).length });
  for (const el of [...c.info.children].slice(1)) el.remove();
  c.info.append(...v.conversationInfo(conv, state.status && state.status.device_id, {
    onAdd: addMember,
    onRemove: removeMember,
    onReadReceipts: async (on, box) => {
      try {
        const r = await api.readReceipts(c.id, on);
        box.checked = r.read_receipts;
      } catch (e) {
        box.checked = !on;
        alerts.textContent = t("error-generic", { error: e.message });
      }
    },
  }));
}

async function addMember({ device, error, form }) {
  const c = state.conv;
  const id = device.value.trim();
  if (!id) return;
  form.querySelector("button[type=submit]").disabled = true;
  error.hidden = true;
  try {
    await api.addMember(c.id, id);
    await renderInfo(c);
  } catch (e) {
    error.textContent = t("info-add-failed", { error: e.message });
    error.hidden = false;
    form.querySelector("button[type=submit]").disabled = false;
  }
}

async function removeMember(device) {
  const c = state.conv;
  try {
    const r = await api.removeMember(c.id, device);
    if (r.left) {
      location.hash = "#/";
      return;
    }
    await renderInfo(c);
  } catch (e) {
    alerts.textContent = t("error-generic", { error: e.message });
  }
}

async function react(m, emoji) {
  const c = state.conv;
  c.menuOpen = null;
  try {
    await api.react(c.id, m.id, emoji);
  } catch (e) {
    alerts.textContent = t("error-generic", { error: e.message });
  }
  await renderMessages().catch(failure);
}

async function deleteMessage(m) {
  const c = state.conv;
  c.menuOpen = null;
  if (state.editing && state.editing.id === m.id) edit(null);
  try {
    await api.remove(c.id, m.id);
  } catch (e) {
    alerts.textContent = t("error-generic", { error: e.message });
  }
  await renderMessages().catch(failure);
}

// Editing puts the message's text in compose; Send saves it (precedence and expiry stay).
function edit(m) {
  const c = state.conv;
  state.editing = m;
  if (m) state.replyTo = null;
  c.menuOpen = null;
  c.prec.disabled = !!m;
  c.expiry.disabled = !!m;
  v.showReplying(c.replying, m, () => {
    edit(null);
    c.text.value = "";
  }, true);
  if (m) {
    c.text.value = m.body;
    c.text.focus();
  }
}

async function createConversation({ title, members, error, form }) {
  const name = title.value.trim();
  if (!name) return;
  form.querySelector("button[type=submit]").disabled = true;
  error.hidden = true;
  try {
    const r = await api.create(name, v.deviceIds(members.value));
    location.hash = `#/c/${encodeURIComponent(r.id)}`;
  } catch (e) {
    error.textContent = t("new-failed", { error: e.message });
    error.hidden = false;
    form.querySelector("button[type=submit]").disabled = false;
  }
}

// The answers to the alerts shown: each alert's roll-call, placed under it.
async function renderAlerts(c, msgs) {
  const shown = msgs.filter(v.isAlert);
  const calls = await Promise.all(shown.map((m) => api.rollcall(c.id, m.id).catch(() => null)));
  if (state.conv !== c) return;
  const me = state.status && state.status.device_id;
  shown.forEach((m, i) => {
    const li = c.list.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
    if (!li) return;
    const old = li.querySelector(".alert-answers");
    const panel = v.alertPanel(m, calls[i], me, { onAck: acknowledge, onRealert: realert });
    const box = v.h("div", { class: "alert-answers" }, panel);
    if (old) old.replaceWith(box);
    else li.append(box);
  });
}

async function acknowledge(m) {
  const c = state.conv;
  try {
    await api.ack(c.id, m.id);
  } catch (e) {
    alerts.textContent = t("error-generic", { error: e.message });
  }
  await renderMessages().catch(failure);
}

async function realert(m) {
  const c = state.conv;
  try {
    const r = await api.realert(c.id, m.id);
    alerts.textContent = t("roll-realerted", { count: (r.pending || []).length });
  } catch (e) {
    alerts.textContent = t("error-generic", { error: e.message });
  }
  await renderMessages().catch(failure);
}

function reply(m) {
  const c = state.conv;
  if (m && state.editing) edit(null);
  state.replyTo = m;
  v.showReplying(c.replying, m, () => reply(null));
  if (m) c.text.focus();
}

async function send({ text, prec, expiry, error, form }) {
  const c = state.conv;
  const body = text.value;
  if (!body.trim()) return;
  const msg = { body, precedence: prec.value };
  const ttl = v.EXPIRIES[expiry.value];
  if (ttl) msg.expires_in_ms = ttl;
  if (state.replyTo) msg.reply_to = state.replyTo.id;
  form.querySelector("button[type=submit]").disabled = true;
  error.hidden = true;
  try {
    if (state.editing) {
      await api.edit(c.id, state.editing.id, body);
      edit(null);
    } else {
      await api.send(c.id, msg);
      prec.value = "routine";
      expiry.value = "never";
      reply(null);
    }
    text.value = "";
    await renderMessages();
  } catch (e) {
    error.textContent = t("compose-failed", { error: e.message });
    error.hidden = false;
  } finally {
    form.querySelector("button[type=submit]").disabled = false;
  }
}

async function render() {
  // A later render (a new route, an event) wins over one still waiting for the API.
  const gen = ++state.gen;
  const current = () => gen === state.gen;
  state.route = parseRoute();
  state.conv = null;
  main.dataset.ready = "0";
  renderNav();
  const r = state.route;
  if (r.name === "signin") {
    show(v.notice("signin-title", "signin-help", "signin-failed"));
    return;
  }
  try {
    if (r.name === "list") {
      const items = await listItems();
      if (!current()) return;
      show(v.list(items, createConversation));
    } else if (r.name === "conversation") {
      const conv = (await api.conversations()).find((c) => c.id === r.id);
      if (!current()) return;
      if (!conv) {
        location.hash = "#/";
        return;
      }
      const frame = v.conversation(conv, send);
      state.conv = { id: conv.id, ...frame, rendered: false, seen: new Set(), detailOpen: new Set(), menuOpen: null };
      state.replyTo = null;
      state.editing = null;
      show(frame.view);
      await Promise.all([renderMessages(), renderInfo(state.conv, conv)]);
      if (!current()) return;
    } else if (r.name === "mesh") {
      const [status, peers] = await Promise.all([api.status(), api.peers()]);
      if (!current()) return;
      show(v.mesh(status, peers));
    } else if (r.name === "settings") {
      const status = await api.status().catch(() => null);
      if (!current()) return;
      show(v.settings(status, localStorage.getItem(THEME) || "system", soundOn(), {
        onSound: (on) => localStorage.setItem(SOUND, on ? "on" : "off"),
        onNotify: async () => {
          await Notification.requestPermission().catch(() => {});
          await render();
        },
        onLanguage: async (lang) => {
          await setLanguage(lang);
          await render();
        },
        onTheme: (theme) => {
          localStorage.setItem(THEME, theme);
          applyTheme(theme);
        },
        onSignOut: async () => {
          await api.logout().catch(() => {});
          state.signedIn = false;
          if (state.events) state.events.close();
          renderNav();
          show(v.notice("signin-title", "signin-help"));
        },
      }));
    }
    main.dataset.ready = "1";
  } catch (e) {
    if (current()) failure(e);
  }
}

// Live updates: the node's server-sent events. What they name is re-read from the API.
function listen() {
  if (state.events) state.events.close();
  const es = new EventSource("/v1/events");
  state.events = es;
  es.onopen = () => {
    banner.hidden = true;
    document.body.dataset.live = "1";
  };
  es.onerror = () => {
    banner.textContent = t("live-lost");
    banner.hidden = false;
    delete document.body.dataset.live;
  };
  const refresh = async (ev) => {
    const r = state.route || {};
    if (r.name === "conversation" && state.conv && (!ev.conversation || ev.conversation === state.conv.id)) {
      const c = state.conv;
      if (ev.type === "membership_changed") await renderInfo(c).catch(failure);
      await renderMessages().catch(failure);
    } else if (r.name === "list" && (ev.type === "messages" || ev.type === "conversation_added" || ev.type === "membership_changed" || ev.type === "lagged")) {
      await render();
    } else if (r.name === "mesh" && (ev.type === "peer_up" || ev.type === "peer_down" || ev.type === "reconciled")) {
      await render();
    }
  };
  es.onmessage = (e) => {
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch {
      return;
    }
    if (["messages", "conversation_added", "membership_changed", "delivered", "peer_up", "peer_down", "reconciled"].includes(ev.type)) {
      refresh(ev);
    }
  };
  es.addEventListener("lagged", () => refresh({ type: "lagged" }));
}

async function start() {
  applyTheme(localStorage.getItem(THEME) || "system");
  await setLanguage(initialLanguage());
  if (location.hash !== "#signin-failed") {
    try {
      state.status = await api.status();
      state.signedIn = true;
    } catch (e) {
      state.route = parseRoute();
      renderNav();
      failure(e);
      return;
    }
  }
  // On a new screen, keyboard and screen-reader focus moves to its title.
  window.addEventListener("hashchange", () => render().then(() => {
    const title = document.getElementById("screen-title");
    if (title) {
      title.tabIndex = -1;
      title.focus({ preventScroll: true });
    }
  }));
  if (state.signedIn) listen();
  await render();
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch((e) => console.warn("service worker:", e));
}
start();
