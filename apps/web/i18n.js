// Translation with Project Fluent (vendor/fluent-bundle), numbers and dates with Intl.
// One catalogue per language in locales/<lang>.ftl; the choice is kept in localStorage.
import { FluentBundle, FluentResource } from "./vendor/fluent-bundle/esm/index.js";
import { negotiateLanguages } from "./vendor/fluent-langneg/esm/index.js";

// Each language under its own name (endonyms are not translated).
export const LANGUAGES = {
  en: "English",
  hi: "हिन्दी",
  bn: "বাংলা",
  te: "తెలుగు",
  mr: "मराठी",
  ta: "தமிழ்",
  ur: "اردو",
  gu: "ગુજરાતી",
  kn: "ಕನ್ನಡ",
  or: "ଓଡ଼ିଆ",
  ml: "മലയാളം",
  pa: "ਪੰਜਾਬੀ",
};
const RTL = new Set(["ur"]);
const KEY = "vaarta.lang";

let bundle = null;
let current = "en";

export function language() {
  return current;
}

// The stored choice, else the browser's languages negotiated against ours, else English.
export function initialLanguage() {
  const stored = localStorage.getItem(KEY);
  if (stored && stored in LANGUAGES) return stored;
  const [best] = negotiateLanguages(navigator.languages || [], Object.keys(LANGUAGES), {
    defaultLocale: "en",
    strategy: "lookup",
  });
  return best || "en";
}

// Loads a catalogue and makes it current: <html lang dir> follow, the choice is remembered.
export async function setLanguage(lang) {
  if (!(lang in LANGUAGES)) lang = "en";
  const res = await fetch(`/locales/${lang}.ftl`);
  if (!res.ok) throw new Error(`catalogue ${lang}: HTTP ${res.status}`);
  const b = new FluentBundle(lang);
  const errors = b.addResource(new FluentResource(await res.text()));
  for (const e of errors) console.warn(`locales/${lang}.ftl:`, e);
  bundle = b;
  current = lang;
  document.documentElement.lang = lang;
  document.documentElement.dir = RTL.has(lang) ? "rtl" : "ltr";
  localStorage.setItem(KEY, lang);
}

// The message `id` with `args`; the id itself if missing (a test keeps catalogues complete).
export function t(id, args) {
  const m = bundle && bundle.getMessage(id);
  if (!m || !m.value) return id;
  return bundle.formatPattern(m.value, args);
}

export function num(n) {
  return new Intl.NumberFormat(current).format(n);
}

export function bytes(n) {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return new Intl.NumberFormat(current, {
    style: "unit",
    unit: units[i],
    unitDisplay: "short",
    maximumFractionDigits: i === 0 ? 0 : 1,
  }).format(n);
}

export function dateTime(ms) {
  const d = new Date(ms);
  const sameDay = new Date().toDateString() === d.toDateString();
  return new Intl.DateTimeFormat(current, sameDay
    ? { timeStyle: "short" }
    : { dateStyle: "medium", timeStyle: "short" }).format(d);
}

export function ago(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  const a = Math.abs(s);
  if (a < 60) return rtf.format(s, "second");
  if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}
