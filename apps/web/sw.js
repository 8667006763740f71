// Service worker: keeps the app's files so the shell opens without the node (offline).
// Network first (the node is the source of truth), the cache when the node does not answer.
// The API (/v1/) and sign-in (/login) are never cached: messages stay in the node's store.
const CACHE = "vaarta-shell-1";
const LANGS = ["en", "hi", "bn", "te", "mr", "ta", "ur", "gu", "kn", "or", "ml", "pa"];
const SHELL = [
  "/", "/app.js", "/api.js", "/i18n.js", "/views.js", "/style.css", "/icon.svg", "/manifest.webmanifest",
  ...["index", "bundle", "resource", "resolver", "scope", "types", "builtins", "memoizer", "ast"]
    .map((f) => `/vendor/fluent-bundle/esm/${f}.js`),
  ...["index", "accepted_languages", "matches", "negotiate_languages", "locale"]
    .map((f) => `/vendor/fluent-langneg/esm/${f}.js`),
  ...LANGS.map((l) => `/locales/${l}.ftl`),
];

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/v1/") || url.pathname === "/login") return;
  const key = url.pathname;
  e.respondWith(fetch(e.request)
    .then((res) => {
      if (res.ok) {
        const copy = res.clone();
        caches.open(CACHE).then((c) => c.put(key, copy));
      }
      return res;
    })
    .catch(() => caches.match(key).then((hit) => hit || caches.match("/"))));
});
