//! The web app and its sign-in (docs/web.md).
//!
//! * **Assets.** The single-page app in `apps/web/` is compiled into the binary
//!   (`include_bytes!`, one table, [`ASSETS`]): nothing is read from disk or fetched from
//!   elsewhere at run time. Every asset is answered with its content type and a strict
//!   Content-Security-Policy ([`CSP`]: `default-src 'self'`, no inline script or style).
//! * **Sign-in.** A program holding the API token asks for a one-time code
//!   (`POST /v1/login-codes`); `vaarta open` prints it as a link `/login?code=…`. Opening the
//!   link exchanges the code (single use, [`CODE_TTL`]) for a random session id in an
//!   `HttpOnly; SameSite=Strict; Path=/` cookie; the page never sees the token. The server
//!   keeps only BLAKE3 hashes of codes and session ids, in two bounded tables
//!   ([`MAX_CODES`], [`MAX_SESSIONS`]: past a bound the oldest goes first).
//!
//! [`Sessions`] is a plain table with `now` passed in (no clock, no RNG inside), so its
//! expiry and bounds are tested without waiting.

use std::time::{Duration, Instant};

/// How long a sign-in code can be exchanged (a guess: enough to switch from the terminal to
/// the browser, short enough that a link left in a scrollback is useless).
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// Codes issued and not yet used, at most (the oldest is forgotten past it).
pub const MAX_CODES: usize = 16;
/// How long a page stays signed in (a guess: one working day; the node forgets every session
/// when it stops anyway).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once (a guess: a few browsers on one device; the oldest goes first).
pub const MAX_SESSIONS: usize = 32;

/// The policy every asset is served with: only this origin, no inline script or style, no
/// frames, no plugins; the API, the event stream and the service worker are same-origin.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// One embedded file of the app.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($( $file:literal => $ty:expr ),* $(,)?) => {
        &[ $( Asset {
            path: concat!("/", $file),
            content_type: $ty,
            body: include_bytes!(concat!("../../apps/web/", $file)),
        } ),* ]
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const FTL: &str = "text/plain; charset=utf-8";
const SVG: &str = "image/svg+xml";
const MANIFEST: &str = "application/manifest+json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file of `apps/web/` that is served (a test checks that none is left out).
pub const ASSETS: &[Asset] = assets![
    "index.html" => HTML,
    "app.js" => JS,
    "api.js" => JS,
    "i18n.js" => JS,
    "views.js" => JS,
    "sw.js" => JS,
    "style.css" => CSS,
    "icon.svg" => SVG,
    "manifest.webmanifest" => MANIFEST,
    "locales/en.ftl" => FTL,
    "locales/hi.ftl" => FTL,
    "locales/bn.ftl" => FTL,
    "locales/te.ftl" => FTL,
    "locales/mr.ftl" => FTL,
    "locales/ta.ftl" => FTL,
    "locales/ur.ftl" => FTL,
    "locales/gu.ftl" => FTL,
    "locales/kn.ftl" => FTL,
    "locales/or.ftl" => FTL,
    "locales/ml.ftl" => FTL,
    "locales/pa.ftl" => FTL,
    "vendor/README.md" => TEXT,
    "vendor/fluent-bundle/LICENSE" => TEXT,
    "vendor/fluent-bundle/package.json" => MANIFEST,
    "vendor/fluent-bundle/esm/index.js" => JS,
    "vendor/fluent-bundle/esm/bundle.js" => JS,
    "vendor/fluent-bundle/esm/resource.js" => JS,
    "vendor/fluent-bundle/esm/resolver.js" => JS,
    "vendor/fluent-bundle/esm/scope.js" => JS,
    "vendor/fluent-bundle/esm/types.js" => JS,
    "vendor/fluent-bundle/esm/builtins.js" => JS,
    "vendor/fluent-bundle/esm/memoizer.js" => JS,
    "vendor/fluent-bundle/esm/ast.js" => JS,
    "vendor/fluent-langneg/LICENSE" => TEXT,
    "vendor/fluent-langneg/package.json" => MANIFEST,
    "vendor/fluent-langneg/esm/index.js" => JS,
    "vendor/fluent-langneg/esm/accepted_languages.js" => JS,
    "vendor/fluent-langneg/esm/matches.js" => JS,
    "vendor/fluent-langneg/esm/negotiate_languages.js" => JS,
    "vendor/fluent-langneg/esm/locale.js" => JS,
];

/// The asset served at `path` (`/` is the app's page).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// Why a sign-in code was not taken. The page is told the same either way ("used or
/// expired: run `vaarta open` again").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("this sign-in link is unknown or was already used (run `vaarta open` again)")]
    Unknown,
    #[error("this sign-in link has expired (run `vaarta open` again)")]
    Expired,
}

type Hash = [u8; 32];

fn hash(secret: &str) -> Hash {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Sign-in codes and sessions (see the module documentation). Entries are kept oldest
/// first; only hashes of the secrets are stored, and they are looked up by hash, so a
/// lookup's timing says nothing about a secret.
#[derive(Debug, Default)]
pub struct Sessions {
    codes: Vec<(Hash, Instant)>,
    sessions: Vec<(Hash, Instant)>,
}

impl Sessions {
    /// A new one-time code from 32 random bytes (hex), valid for [`CODE_TTL`] from `now`.
    pub fn issue_code(&mut self, random: [u8; 32], now: Instant) -> String {
        self.codes.retain(|(_, until)| *until > now);
        if self.codes.len() >= MAX_CODES {
            self.codes.remove(0);
        }
        let code = hex(&random);
        self.codes.push((hash(&code), now + CODE_TTL));
        code
    }

    /// Takes a code (it cannot be taken again, whatever the outcome) and opens a session
    /// whose id is made of 32 random bytes; returns the session id for the cookie.
    pub fn redeem(
        &mut self,
        code: &str,
        random: [u8; 32],
        now: Instant,
    ) -> Result<String, LoginError> {
        let h = hash(code);
        let Some(i) = self.codes.iter().position(|(c, _)| *c == h) else {
            return Err(LoginError::Unknown);
        };
        let (_, until) = self.codes.remove(i);
        if until <= now {
            return Err(LoginError::Expired);
        }
        self.sessions.retain(|(_, until)| *until > now);
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.remove(0);
        }
        let id = hex(&random);
        self.sessions.push((hash(&id), now + SESSION_TTL));
        Ok(id)
    }

    /// Whether `id` is a session opened here and not expired at `now`.
    pub fn check(&self, id: &str, now: Instant) -> bool {
        let h = hash(id);
        self.sessions
            .iter()
            .any(|(s, until)| *s == h && *until > now)
    }

    /// Ends a session (sign out); unknown ids are ignored.
    pub fn end(&mut self, id: &str) {
        let h = hash(id);
        self.sessions.retain(|(s, _)| *s != h);
    }

    /// Codes and sessions held (expired ones included until the next issue or redeem).
    pub fn len(&self) -> (usize, usize) {
        (self.codes.len(), self.sessions.len())
    }
}

/// The name of the session cookie of the API on `port`. Cookies are shared by every port of
/// a host, so two nodes on one device (each on its own port) must not overwrite each other's.
pub fn cookie_name(port: u16) -> String {
    format!("vaarta_session_{port}")
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), if present.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value that opens session `id` on `port`.
pub fn session_cookie(port: u16, id: &str) -> String {
    format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        cookie_name(port),
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie on `port`.
pub fn clear_cookie(port: u16) -> String {
    format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        cookie_name(port)
    )
}

/// Whether a request sent with the session cookie comes from the app's own page: its
/// `Origin` (if any) is exactly one of `own` (another loopback port is another site's page,
/// yet the browser sends it the cookie, since cookies ignore ports), and a request that
/// changes something carries one (browsers always send it on POST, PATCH and DELETE);
/// `Sec-Fetch-Site`, when sent, says `same-origin` or `none`. `Err` says why not.
pub fn page_request(
    method: &str,
    origin: Option<&str>,
    fetch_site: Option<&str>,
    own: &[String],
) -> Result<(), String> {
    if let Some(site) = fetch_site
        && site != "same-origin"
        && site != "none"
    {
        return Err(format!(
            "refused: a {site} request with the session cookie (only the app's own page may use it)"
        ));
    }
    match origin {
        Some(o) if !own.iter().any(|x| x == o) => Err(format!(
            "refused: the session cookie is for the app's own page, not '{o}'"
        )),
        None if !matches!(method, "GET" | "HEAD") => Err(
            "refused: a request with the session cookie that changes something must carry its Origin"
                .into(),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn bytes(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_code_opens_one_session_once() {
        let t = Instant::now();
        let mut s = Sessions::default();
        let code = s.issue_code(bytes(1), t);
        assert_eq!(code.len(), 64);
        let id = s.redeem(&code, bytes(2), t).unwrap();
        assert!(s.check(&id, t));
        assert_eq!(
            s.redeem(&code, bytes(3), t),
            Err(LoginError::Unknown),
            "used code"
        );
        assert!(!s.check(&hex(&bytes(3)), t), "no session from a used code");
        s.end(&id);
        assert!(!s.check(&id, t), "signed out");
    }

    #[test]
    fn an_expired_code_is_refused_and_gone() {
        let t = Instant::now();
        let mut s = Sessions::default();
        let code = s.issue_code(bytes(1), t);
        let late = t + CODE_TTL;
        assert_eq!(s.redeem(&code, bytes(2), late), Err(LoginError::Expired));
        assert!(!s.check(&hex(&bytes(2)), late));
        // Refused once, it cannot be retried in time either.
        assert_eq!(s.redeem(&code, bytes(2), t), Err(LoginError::Unknown));
        let code = s.issue_code(bytes(4), t);
        let just = t + CODE_TTL - Duration::from_millis(1);
        assert!(s.redeem(&code, bytes(5), just).is_ok());
    }

    #[test]
    fn forged_and_expired_sessions_are_refused() {
        let t = Instant::now();
        let mut s = Sessions::default();
        let code = s.issue_code(bytes(1), t);
        let id = s.redeem(&code, bytes(2), t).unwrap();
        assert!(!s.check(&hex(&bytes(9)), t), "forged");
        assert!(!s.check("", t));
        assert!(!s.check(&code, t), "the code is not a session");
        assert!(s.check(&id, t + SESSION_TTL - Duration::from_secs(1)));
        assert!(!s.check(&id, t + SESSION_TTL), "expired");
    }

    #[test]
    fn the_tables_are_bounded_oldest_first() {
        let t = Instant::now();
        let mut s = Sessions::default();
        let codes: Vec<String> = (0..MAX_CODES as u8 + 5)
            .map(|i| s.issue_code(bytes(i), t))
            .collect();
        assert_eq!(s.len().0, MAX_CODES);
        assert_eq!(s.redeem(&codes[0], bytes(200), t), Err(LoginError::Unknown));
        assert!(s.redeem(codes.last().unwrap(), bytes(201), t).is_ok());
        let mut ids = Vec::new();
        for i in 0..MAX_SESSIONS as u8 + 3 {
            let c = s.issue_code(bytes(100 + i), t);
            ids.push(s.redeem(&c, bytes(i), t).unwrap());
        }
        assert_eq!(s.len().1, MAX_SESSIONS);
        assert!(!s.check(&ids[0], t), "the oldest session went first");
        assert!(s.check(ids.last().unwrap(), t));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = "a=1; vaarta_session_7000=abc; vaarta_session_7001=def";
        assert_eq!(cookie(h, &cookie_name(7000)), Some("abc"));
        assert_eq!(cookie(h, &cookie_name(7001)), Some("def"));
        assert_eq!(cookie(h, &cookie_name(7)), None);
        let set = session_cookie(7000, "abc");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
    }

    #[test]
    fn only_the_own_page_may_use_the_cookie() {
        let own = ["http://127.0.0.1:7000".to_string()];
        assert!(page_request("GET", None, None, &own).is_ok());
        assert!(page_request("POST", Some("http://127.0.0.1:7000"), None, &own).is_ok());
        assert!(page_request("POST", None, None, &own).is_err(), "no Origin");
        assert!(
            page_request("POST", Some("http://127.0.0.1:8080"), None, &own).is_err(),
            "another loopback port is another page"
        );
        assert!(page_request("GET", Some("http://evil.example"), None, &own).is_err());
        assert!(page_request("GET", None, Some("same-site"), &own).is_err());
        assert!(page_request("GET", None, Some("same-origin"), &own).is_ok());
    }

    /// The messages of a Fluent catalogue: id → (value text with its indented
    /// continuation lines, the `$variables` it uses). A careful line parser of the subset
    /// the catalogues use (messages, multiline selectors, `#` comments); anything else is an
    /// error, so a malformed line cannot hide a key.
    fn catalogue(lang: &str, text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
        let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        let mut current: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let at = || format!("{lang}.ftl line {}", n + 1);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') {
                let id = current
                    .clone()
                    .unwrap_or_else(|| panic!("{}: continuation of nothing", at()));
                let e = out.get_mut(&id).unwrap();
                e.0.push('\n');
                e.0.push_str(line.trim());
                continue;
            }
            let (id, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not a message: {line}", at()));
            let id = id.trim().to_string();
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{}: bad id {id:?}",
                at()
            );
            assert!(!out.contains_key(&id), "{}: {id} twice", at());
            out.insert(id.clone(), (value.trim().to_string(), BTreeSet::new()));
            current = Some(id);
        }
        for (value, vars) in out.values_mut() {
            let mut rest = value.as_str();
            while let Some(i) = rest.find('$') {
                rest = &rest[i + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect();
                vars.insert(name);
            }
        }
        out
    }

    pub const LANGS: [&str; 12] = [
        "en", "hi", "bn", "te", "mr", "ta", "ur", "gu", "kn", "or", "ml", "pa",
    ];

    /// Every key of en.ftl is in each of the twelve catalogues the binary ships, none has an
    /// extra key or an empty message, and each translation uses the same variables (a
    /// renamed `$count` would show as an error in the page).
    #[test]
    fn every_catalogue_has_every_key_and_nothing_else() {
        let load = |l: &str| {
            let a = asset(&format!("/locales/{l}.ftl"))
                .unwrap_or_else(|| panic!("{l}.ftl not embedded"));
            catalogue(l, std::str::from_utf8(a.body).expect("utf-8"))
        };
        let en = load("en");
        assert!(en.len() > 50, "en.ftl has {} messages", en.len());
        let mut problems = Vec::new();
        for l in LANGS {
            let c = load(l);
            for (id, (value, vars)) in &en {
                match c.get(id) {
                    None => problems.push(format!("{l}: missing {id}")),
                    Some((v, _)) if v.trim().is_empty() => {
                        problems.push(format!("{l}: {id} is empty"))
                    }
                    Some((_, vs)) if vs != vars => {
                        problems.push(format!("{l}: {id} uses {vs:?}, en uses {vars:?}"))
                    }
                    Some(_) => {}
                }
                assert!(!value.is_empty(), "en: {id} is empty");
            }
            for id in c.keys().filter(|k| !en.contains_key(*k)) {
                problems.push(format!("{l}: extra key {id}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The parser the test above relies on sees a removed key, an empty one and an extra one.
    #[test]
    fn the_catalogue_check_can_fail() {
        let en = catalogue(
            "en",
            "a = A\nb =\n    { $n ->\n       *[other] B { $n }\n    }\n",
        );
        assert_eq!(en.len(), 2);
        assert_eq!(en["b"].1, BTreeSet::from(["n".to_string()]));
        let empty = catalogue("xx", "a =\nb = x\n");
        assert!(empty["a"].0.is_empty());
        let fewer = catalogue("xx", "# only a\na = A\n");
        assert!(!fewer.contains_key("b"));
    }

    /// Every file under apps/web is served, and every served file exists (include_bytes!
    /// checks the second at compile time).
    #[test]
    fn every_file_of_the_app_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/web");
        let mut stack = vec![root.clone()];
        let mut missing = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if asset(&format!("/{rel}")).is_none() {
                    missing.push(rel);
                }
            }
        }
        assert!(missing.is_empty(), "not in ASSETS: {missing:?}");
        assert_eq!(asset("/").unwrap().path, "/index.html");
        assert!(asset("/../Cargo.toml").is_none());
    }
}
