//! The web app (docs/web.md): its sign-in over plain HTTP, and the app itself in real
//! headless Chromium driven by WebDriver — two nodes on loopback, each page signed in by a
//! one-time link, a FLASH message sent from a Hindi page shown live on a Tamil one, and
//! every screen of every locale at 360 px without horizontal overflow (screenshots into
//! docs/screenshots/).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use vaarta_tests::webdriver::{Browser, Driver, browser_available};
use vaarta_tests::{Node, wait_for};

const T: Duration = Duration::from_secs(60);

const LANGS: [&str; 12] = [
    "en", "hi", "bn", "te", "mr", "ta", "ur", "gu", "kn", "or", "ml", "pa",
];

/// One raw HTTP/1.1 exchange: (status, header lines lowercased names, body).
fn http(addr: &str, head: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (top, rest) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = top.lines();
    let code = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, rest.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn api_addr(n: &Node) -> String {
    let info: Value =
        serde_json::from_slice(&std::fs::read(n.home.join("api.json")).unwrap()).unwrap();
    info["addr"].as_str().unwrap().to_string()
}

/// `vaarta open --json`: the sign-in link's path and query (`/login?code=…`) and the URL.
fn sign_in_link(n: &Node) -> (String, String) {
    let v = n.json(&["open"]);
    let url = v["url"].as_str().unwrap().to_string();
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    (path, url)
}

/// The sign-in exchange and the cookie path's checks, over plain HTTP (no browser needed):
/// the link works once (a used code is refused), the cookie is HttpOnly, SameSite=Strict,
/// Path=/; a forged cookie is 401; with the cookie, a request that changes something from a
/// foreign origin (another site, or another port on loopback) or without an Origin is 403;
/// a page cannot mint sign-in codes; the bearer token keeps working; with no node running,
/// `vaarta open` says to start one. The page and its files
/// are served with their types and the CSP. (An expired code: web.rs unit tests, with the
/// clock passed in.)
#[test]
fn sign_in_links_are_single_use_and_the_cookie_is_for_the_page_only() {
    let mut a = Node::init("Asha");
    let off = a.cli(&["open"]);
    assert!(!off.status.success(), "no node, no link");
    let said = String::from_utf8_lossy(&off.stderr);
    assert!(said.contains("vaarta up"), "{said}");
    a.up_loopback(&[]);
    let addr = api_addr(&a);
    let port = addr.rsplit_once(':').unwrap().1.to_string();
    let own = format!("http://{addr}");

    // The page and its files, with no sign-in: they hold no data.
    let (code, h, body) = http(&addr, "GET / HTTP/1.1", "");
    assert_eq!(code, 200);
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    let csp = header(&h, "content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(body.contains("<script type=\"module\" src=\"/app.js\">"));
    for (path, ty) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/manifest.webmanifest", "application/manifest+json"),
        ("/sw.js", "text/javascript; charset=utf-8"),
        ("/locales/ur.ftl", "text/plain; charset=utf-8"),
        (
            "/vendor/fluent-bundle/esm/index.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let (code, h, _) = http(&addr, &format!("GET {path} HTTP/1.1"), "");
        assert_eq!(code, 200, "{path}");
        assert_eq!(header(&h, "content-type"), Some(ty), "{path}");
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    }
    let (code, _, _) = http(&addr, "GET /nothing.js HTTP/1.1", "");
    assert_eq!(code, 404);
    // A foreign Host is refused for the page too (DNS rebinding).
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // The one-time link.
    let (login, url) = sign_in_link(&a);
    assert!(url.starts_with(&format!("{own}/login?code=")), "{url}");
    let (code, h, _) = http(&addr, &format!("GET {login} HTTP/1.1"), "");
    assert_eq!(code, 303);
    assert_eq!(header(&h, "location"), Some("/"));
    let set = header(&h, "set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("vaarta_session_{port}=")),
        "{cookie}"
    );
    assert!(
        !cookie.contains(
            std::fs::read_to_string(a.home.join("api-token"))
                .unwrap()
                .trim()
        ),
        "the token is not the session"
    );

    // A used code is refused: no cookie, the page says so.
    let (code, h, _) = http(&addr, &format!("GET {login} HTTP/1.1"), "");
    assert_eq!(code, 303);
    assert_eq!(header(&h, "location"), Some("/#signin-failed"));
    assert_eq!(header(&h, "set-cookie"), None, "a used code opens nothing");
    let (code, h, _) = http(&addr, "GET /login?code=00 HTTP/1.1", "");
    assert_eq!((code, header(&h, "set-cookie")), (303, None));

    // The cookie reads; a forged one does not.
    let (code, _, body) = http(
        &addr,
        &format!("GET /v1/status HTTP/1.1\r\nCookie: {cookie}"),
        "",
    );
    assert_eq!(code, 200, "{body}");
    let forged = format!("vaarta_session_{port}={}", "ab".repeat(32));
    let (code, _, body) = http(
        &addr,
        &format!("GET /v1/status HTTP/1.1\r\nCookie: {forged}"),
        "",
    );
    assert_eq!(code, 401, "{body}");
    let (code, _, _) = http(&addr, "GET /v1/status HTTP/1.1", "");
    assert_eq!(code, 401);

    // Changing something with the cookie: the own origin only.
    let post = |origin: Option<&str>| {
        let o = origin
            .map(|o| format!("\r\nOrigin: {o}"))
            .unwrap_or_default();
        http(
            &addr,
            &format!(
                "POST /v1/conversations HTTP/1.1\r\nCookie: {cookie}\r\nContent-Type: application/json{o}"
            ),
            r#"{"title":"from the page"}"#,
        )
    };
    for foreign in [
        Some("http://evil.example"),
        Some("http://127.0.0.1:1"),
        None,
    ] {
        let (code, _, body) = post(foreign);
        assert_eq!(code, 403, "{foreign:?}: {body}");
    }
    let (code, _, body) = post(Some(&own));
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(
        &addr,
        &format!("GET /v1/status HTTP/1.1\r\nCookie: {cookie}\r\nSec-Fetch-Site: same-site"),
        "",
    );
    assert_eq!(code, 403, "another port's page: {body}");

    // A page cannot make sign-in links for itself.
    let (code, _, body) = http(
        &addr,
        &format!("POST /v1/login-codes HTTP/1.1\r\nCookie: {cookie}\r\nOrigin: {own}"),
        "",
    );
    assert_eq!(code, 403, "{body}");

    // Signing out ends the session.
    let (code, _, _) = http(
        &addr,
        &format!("POST /v1/logout HTTP/1.1\r\nCookie: {cookie}\r\nOrigin: {own}"),
        "",
    );
    assert_eq!(code, 200);
    let (code, _, _) = http(
        &addr,
        &format!("GET /v1/status HTTP/1.1\r\nCookie: {cookie}"),
        "",
    );
    assert_eq!(code, 401, "signed out");
    // Programs keep the token.
    assert_eq!(a.json(&["id"])["online"], true);
}

/// The value of message `id` in a catalogue (a single-line message).
fn catalogue_value(lang: &str, id: &str) -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../apps/web/locales/{lang}.ftl"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(id)
                .and_then(|r| r.trim_start().strip_prefix('='))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{id} not in {lang}.ftl"))
}

/// Waits until the page shows screen `name` rendered in `lang`.
fn wait_screen(b: &Browser<'_>, name: &str, lang: &str) {
    b.wait(
        &format!("screen {name} in {lang}"),
        T,
        "const m = document.getElementById('main');
         return m.dataset.screen === arguments[0] && m.dataset.ready === '1'
             && document.documentElement.lang === arguments[1];",
        json!([name, lang]),
    );
}

fn set_language(b: &Browser<'_>, lang: &str) {
    b.js("location.hash = '#/settings'", json!([]));
    b.wait(
        "the settings screen",
        T,
        "const m = document.getElementById('main');
         return m.dataset.screen === 'settings' && m.dataset.ready === '1'
             && !!document.getElementById('settings-language');",
        json!([]),
    );
    b.js(
        "const s = document.getElementById('settings-language');
         s.value = arguments[0];
         s.dispatchEvent(new Event('change'));",
        json!([lang]),
    );
    wait_screen(b, "settings", lang);
}

/// Elements wider inside than their box (scrollWidth > clientWidth), and whether the page
/// itself scrolls sideways. Elements clipped to nothing on purpose (text for screen readers
/// only) are not looked at.
const OVERFLOW: &str = "
    const bad = [];
    if (document.documentElement.scrollWidth > window.innerWidth) {
        bad.push(`page ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
    }
    for (const el of document.querySelectorAll('body *')) {
        // Hidden for the eye, kept for screen readers (clipped to 1 px on purpose).
        if (el.closest('.visually-hidden') || getComputedStyle(el).clipPath !== 'none') continue;
        if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
            bad.push(`${el.tagName.toLowerCase()}.${el.className} ${el.scrollWidth} > ${el.clientWidth}: ${(el.textContent || '').slice(0, 60)}`);
        }
    }
    return bad;";

/// Controls shown that are hard to hit on a phone (under 44 CSS px high, the WCAG 2.5.5
/// target size) and form fields without a label.
const TARGETS: &str = "
    const bad = [];
    for (const el of document.querySelectorAll('a[href], button, select, textarea, input')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        const what = `${el.tagName.toLowerCase()}#${el.id} '${(el.textContent || '').trim().slice(0, 30)}'`;
        if (r.height < 44) bad.push(`${what} is ${r.height} px high`);
        if (['SELECT', 'TEXTAREA', 'INPUT'].includes(el.tagName) && el.labels.length === 0
            && !el.getAttribute('aria-label')) {
            bad.push(`${what} has no label`);
        }
    }
    return bad;";

/// Two nodes, one page each, signed in by a one-time link. Asha's page, switched to Hindi,
/// sends a FLASH message; Bhavesh's page, in Tamil, open on the conversation, shows it
/// without a reload, marked with the Tamil FLASH label, and answers it (a reply Asha's page
/// shows live). Then every screen of every locale
/// at 360×640: no horizontal overflow, a screenshot each in docs/screenshots/. Last, with
/// Bhavesh's node stopped, his page still opens (the service worker's cached shell).
#[test]
fn a_flash_message_from_a_hindi_page_shows_live_on_a_tamil_page() {
    if !browser_available() {
        return;
    }
    let (a, mut b, conv) = vaarta_tests::pair();
    a.ok(&["send", &conv, "Boats at ghat 3 from 6 am"]);
    b.ok(&[
        "send",
        &conv,
        "--precedence",
        "immediate",
        "Road to Kothi cut, use the bridge",
    ]);
    wait_for("both messages at Asha", T, || {
        (a.bodies(&conv).len() == 2).then_some(())
    });

    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start();
    let pa = driver.browser(&profiles.path().join("a"), 360, 640);
    let pb = driver.browser(&profiles.path().join("b"), 360, 640);
    for (page, node) in [(&pa, &a), (&pb, &b)] {
        let (_, url) = sign_in_link(node);
        page.goto(&url);
        wait_screen(page, "list", "en");
        let width = page.js("return window.innerWidth", json!([]));
        assert_eq!(width, 360, "the viewport is a phone's");
        page.wait(
            "the conversation in the list",
            T,
            "return !!document.querySelector(`[data-conversation='${arguments[0]}']`)",
            json!([conv]),
        );
        // The token never reaches the page: the cookie is HttpOnly.
        assert_eq!(page.js("return document.cookie", json!([])), "");
    }
    set_language(&pa, "hi");
    set_language(&pb, "ta");

    // Bhavesh's page opens the conversation and waits, live.
    pb.js("location.hash = '#/'", json!([]));
    wait_screen(&pb, "list", "ta");
    pb.click(&format!("a[data-conversation='{conv}']"));
    wait_screen(&pb, "conversation", "ta");
    pb.wait(
        "the event stream",
        T,
        "return document.body.dataset.live === '1'",
        json!([]),
    );
    pb.js("window.__sameDocument = 'yes'", json!([]));

    // Asha's page (Hindi) sends a FLASH message, typed as a user types it.
    pa.js("location.hash = '#/c/' + arguments[0]", json!([conv]));
    wait_screen(&pa, "conversation", "hi");
    let text = "बाढ़ चेतावनी: घाट 3 तुरंत खाली करें";
    pa.type_text("#compose-text", text);
    pa.js(
        "document.getElementById('compose-precedence').value = 'flash'",
        json!([]),
    );
    pa.click("#compose-send");
    let flash_hi = catalogue_value("hi", "prec-flash");
    let shown_a = pa.wait(
        "the FLASH message on Asha's page",
        T,
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) {
                 const b = m.querySelector('.badge-text');
                 return [m.dataset.precedence, b ? b.textContent : ''];
             }
         }
         return null;",
        json!([text]),
    );
    assert_eq!(shown_a, json!(["flash", flash_hi]));

    // Bhavesh's page shows it, without a reload, with the Tamil FLASH label.
    let flash_ta = catalogue_value("ta", "prec-flash");
    let shown_b = pb.wait(
        "the FLASH message live on Bhavesh's page",
        T,
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) {
                 const b = m.querySelector('.badge-text');
                 return [m.dataset.precedence, b ? b.textContent : '', window.__sameDocument || 'reloaded',
                         getComputedStyle(m.querySelector('.badge')).backgroundColor];
             }
         }
         return null;",
        json!([text]),
    );
    assert_eq!(shown_b[0], "flash");
    assert_eq!(shown_b[1], flash_ta.as_str(), "the label in Tamil");
    assert_eq!(shown_b[2], "yes", "shown live, not after a reload");
    assert_ne!(shown_b[3], "rgba(0, 0, 0, 0)", "and in colour");

    // Bhavesh acknowledges it on his page ("received, acting", in Tamil); Asha's roll-call
    // under her message turns to acknowledged for him, live (issue 13).
    let ack_ta = catalogue_value("ta", "ack-button");
    let button = pb.wait(
        "the Acknowledge button on Bhavesh's page",
        T,
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) {
                 const b = m.querySelector('button.ack');
                 return b ? b.textContent : null;
             }
         }
         return null;",
        json!([text]),
    );
    assert_eq!(button, ack_ta.as_str(), "the button in Tamil");
    pb.js(
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) m.querySelector('button.ack').click();
         }",
        json!([text]),
    );
    pb.wait(
        "Bhavesh's page shows his acknowledgement",
        T,
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) return !!m.querySelector('.ack-done');
         }
         return false;",
        json!([text]),
    );
    let b_device = b.device_id();
    let state = pa.wait(
        "Bhavesh acknowledged in Asha's roll-call",
        T,
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent !== arguments[0]) continue;
             const rows = [...m.querySelectorAll('.roll-member')];
             const acked = rows.find((r) => r.dataset.state === 'acknowledged');
             return acked ? [acked.dataset.device, acked.querySelector('.roll-state').textContent,
                             m.querySelector('.rollcall summary').textContent] : null;
         }
         return null;",
        json!([text]),
    );
    assert_eq!(state[0], b_device.as_str(), "{state:?}");
    let acked_hi = catalogue_value("hi", "roll-acknowledged-at");
    let acked_hi = acked_hi.split('{').next().unwrap().trim();
    assert!(
        state[1].as_str().unwrap().starts_with(acked_hi),
        "{state:?}"
    );

    // Bhavesh answers it from his page (Reply on the message); Asha's page shows the answer,
    // live, under "in reply to" her message.
    pb.js(
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) m.querySelector('.reply').click();
         }",
        json!([text]),
    );
    pb.wait(
        "the reply bar",
        T,
        "return !document.querySelector('.replying').hidden",
        json!([]),
    );
    let answer = "பாலம் வழியாக 2 படகுகள் வருகின்றன";
    pb.type_text("#compose-text", answer);
    pb.click("#compose-send");
    let reply_ref = pa.wait(
        "the reply on Asha's page",
        T,
        "for (const m of document.querySelectorAll('.msg')) {
             if (m.querySelector('.body').textContent === arguments[0]) {
                 const r = m.querySelector('.reply-ref');
                 return r ? r.textContent : '';
             }
         }
         return null;",
        json!([answer]),
    );
    let reply_ref = reply_ref.as_str().unwrap();
    assert!(reply_ref.contains(text), "{reply_ref}");

    // Every screen of every locale at 360 px: nothing overflows sideways.
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let mut problems = Vec::new();
    for lang in LANGS {
        set_language(&pb, lang);
        let dir = pb.js("return document.documentElement.dir", json!([]));
        assert_eq!(dir, if lang == "ur" { "rtl" } else { "ltr" }, "{lang}");
        for (screen, hash) in [
            ("list", "#/".to_string()),
            ("conversation", format!("#/c/{conv}")),
            ("mesh", "#/mesh".to_string()),
            ("settings", "#/settings".to_string()),
        ] {
            pb.js("location.hash = arguments[0]", json!([hash]));
            wait_screen(&pb, screen, lang);
            for check in [OVERFLOW, TARGETS] {
                let bad = pb.js(check, json!([]));
                for b in bad.as_array().unwrap() {
                    problems.push(format!("{lang} {screen}: {}", b.as_str().unwrap_or("")));
                }
            }
            pb.screenshot(&shots.join(format!("{screen}-{lang}.png")));
        }
    }
    // The shell works offline: with the node stopped, the service worker opens the app from
    // its cache, and the app says (in the language last chosen) that the node is not running.
    let home_url = pb.js("return location.origin + '/'", json!([]));
    pb.wait(
        "the service worker in control",
        T,
        "return !!navigator.serviceWorker.controller",
        json!([]),
    );
    b.stop();
    pb.goto(home_url.as_str().unwrap());
    let offline = catalogue_value("pa", "offline-title");
    pb.wait(
        "the offline notice from the cached shell",
        T,
        "const t = document.getElementById('screen-title');
         return t && t.textContent === arguments[0];",
        json!([offline]),
    );
    assert!(
        problems.is_empty(),
        "horizontal overflow, small targets or unlabelled fields:\n{}",
        problems.join("\n")
    );
}
