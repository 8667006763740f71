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
  events: null,
  signedIn: false,
  status: null,
  gen: 0,
};

const readKey = (id) => `vaarta.read.${id}`;
const THEME = "vaarta.theme";

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
  c.list.replaceChildren(...(msgs.length
    ? msgs.map((m) => v.message(m, byId, reply))
    : [v.h("li", { class: "empty", text: t("conv-empty") })]));
  if (atEnd || !c.rendered) c.list.scrollTop = c.list.scrollHeight;
  const newest = msgs.reduce((a, m) => Math.max(a, m.sent_at_ms), 0);
  // Announce urgent messages that arrived since the last render (screen readers).
  if (c.rendered) {
    for (const m of msgs) {
      if (!m.mine && !c.seen.has(m.id) && (m.precedence === "flash" || m.precedence === "immediate")) {
        alerts.textContent = t("conv-new-alert", { precedence: t(`prec-${m.precedence}`), name: m.author_name || "" });
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
  await renderAlerts(c, msgs);
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
  state.replyTo = m;
  const c = state.conv;
  v.showReplying(c.replying, m, () => reply(null));
  if (m) c.text.focus();
}

async function send({ text, prec, error, form }) {
  const c = state.conv;
  const body = text.value;
  if (!body.trim()) return;
  const msg = { body, precedence: prec.value };
  if (state.replyTo) msg.reply_to = state.replyTo.id;
  form.querySelector("button[type=submit]").disabled = true;
  error.hidden = true;
  try {
    await api.send(c.id, msg);
    text.value = "";
    prec.value = "routine";
    reply(null);
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
      show(v.list(items));
    } else if (r.name === "conversation") {
      const conv = (await api.conversations()).find((c) => c.id === r.id);
      if (!current()) return;
      if (!conv) {
        location.hash = "#/";
        return;
      }
      const frame = v.conversation(conv, send);
      state.conv = { id: conv.id, ...frame, rendered: false, seen: new Set() };
      state.replyTo = null;
      show(frame.view);
      await renderMessages();
      if (!current()) return;
    } else if (r.name === "mesh") {
      const [status, peers] = await Promise.all([api.status(), api.peers()]);
      if (!current()) return;
      show(v.mesh(status, peers));
    } else if (r.name === "settings") {
      const status = await api.status().catch(() => null);
      if (!current()) return;
      show(v.settings(status, localStorage.getItem(THEME) || "system", {
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
