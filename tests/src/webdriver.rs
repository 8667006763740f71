//! A small WebDriver client (W3C protocol, raw HTTP with ureq) for driving headless Chromium
//! through Debian's `chromedriver`, and the check that the two are installed.
//!
//! Without `chromium` and `chromedriver` a browser test prints SKIPPED and passes, unless
//! `VAARTA_REQUIRE_BROWSER=1` (as `.ci/run` sets), where it fails naming what is missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Whether `chromium` and `chromedriver` can be run here; prints SKIPPED (or panics when
/// `VAARTA_REQUIRE_BROWSER=1`) when not.
pub fn browser_available() -> bool {
    let required = std::env::var("VAARTA_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let missing: Vec<&str> = ["chromium", "chromedriver"]
        .into_iter()
        .filter(|t| {
            !Command::new(t)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if required {
        panic!(
            "VAARTA_REQUIRE_BROWSER=1 but {what} not installed (apt-get install chromium chromium-driver fonts-noto-core fonts-noto-ui-core)"
        );
    }
    eprintln!(
        "SKIPPED: needs {what} (apt-get install chromium chromium-driver); set VAARTA_REQUIRE_BROWSER=1 to make this a failure"
    );
    false
}

/// A running `chromedriver`, stopped when dropped.
#[allow(missing_debug_implementations)]
pub struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: agent(),
        };
        let t = Instant::now();
        loop {
            let ready = d
                .agent
                .get(format!("{}/status", d.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return d;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match (method, body) {
            ("POST", b) => self.agent.post(url).send_json(b.unwrap_or(json!({}))),
            ("DELETE", _) => self.agent.delete(url).call(),
            _ => self.agent.get(url).call(),
        };
        let mut r = r.unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let ok = r.status().is_success();
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        assert!(ok, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    /// A new browser: headless Chromium with its own profile in `profile`, its viewport
    /// `width`×`height` CSS pixels.
    pub fn browser(&self, profile: &Path, width: u32, height: u32) -> Browser<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}},
            },
        }}});
        let v = self.call("POST", "/session", Some(caps));
        let id = v["sessionId"].as_str().expect("session id").to_string();
        Browser { driver: self, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; closed when dropped.
#[allow(missing_debug_implementations)]
pub struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Browser<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.id)
    }

    pub fn goto(&self, url: &str) {
        self.driver
            .call("POST", &self.path("/url"), Some(json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.driver.call(
            "POST",
            &self.path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls `script` every 100 ms until it returns something other than null/false, or
    /// panics after `timeout` naming `what`.
    pub fn wait(&self, what: &str, timeout: Duration, script: &str, args: Value) -> Value {
        let t = Instant::now();
        loop {
            let v = self.js(script, args.clone());
            if !(v.is_null() || v == false) {
                return v;
            }
            if t.elapsed() > timeout {
                let page = self.js(
                    "return document.body ? document.body.innerText.slice(0, 2000) : ''",
                    json!([]),
                );
                panic!("timed out after {timeout:?} waiting for {what}; the page shows: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.driver.call(
            "POST",
            &self.path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|e| e.as_str())
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Clicks the element `css` as a user does (WebDriver element click).
    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.driver
            .call("POST", &self.path(&format!("/element/{e}/click")), None);
    }

    /// Types `text` into the element `css` (WebDriver key input, any script).
    pub fn type_text(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.driver.call(
            "POST",
            &self.path(&format!("/element/{e}/value")),
            Some(json!({"text": text})),
        );
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.driver.call("GET", &self.path("/screenshot"), None);
        let png = data_encoding::BASE64
            .decode(v.as_str().expect("base64").as_bytes())
            .expect("screenshot base64");
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .agent
            .delete(format!("{}{}", self.driver.base, self.path("")))
            .call();
    }
}
