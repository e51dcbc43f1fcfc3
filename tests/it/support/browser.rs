//! A small WebDriver client for the dashboard tests: it starts Debian's `chromedriver` on a
//! free port, opens a headless Chromium session and speaks the W3C WebDriver protocol (plain
//! HTTP and JSON) with awc. Every command has a timeout and every wait a limit.
//!
//! `Browser::start` answers `Err(reason)` when chromedriver or Chromium is not installed; the
//! tests then skip, saying why, unless `SWITCHYARD_REQUIRE_BROWSER` is set (the test script
//! sets it once it has installed them), in which case they fail.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use awc::Client;
use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Longest a single WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium driven through chromedriver. Dropping it ends the session and the
/// driver (so a failing test leaves no browser behind).
pub struct Browser {
    client: Client,
    driver_addr: String,
    session: String,
    driver: std::process::Child,
}

/// The first executable named `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn find_binaries() -> Result<(PathBuf, PathBuf), String> {
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which("chromedriver"))
        .ok_or("chromedriver is not installed (Debian package chromium-driver)")?;
    let chrome = std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .find_map(which)
        })
        .ok_or("Chromium is not installed (Debian package chromium)")?;
    Ok((driver, chrome))
}

/// Whether a missing browser must fail the test rather than skip it.
pub fn browser_required() -> bool {
    std::env::var_os("SWITCHYARD_REQUIRE_BROWSER").is_some_and(|v| !v.is_empty() && v != "0")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Result<Browser, String> {
        let (driver_bin, chrome) = find_binaries()?;
        let port = free_port();
        let driver = std::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", driver_bin.display()))?;
        let client = Client::builder().timeout(COMMAND_TIMEOUT).finish();
        let mut browser = Browser {
            client,
            driver_addr: format!("127.0.0.1:{port}"),
            session: String::new(),
            driver,
        };
        // The driver answers /status once it listens.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = browser.raw("GET", "/status", None).await
                && v["ready"] == true
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err("chromedriver did not become ready in 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--lang=en-US",
                    format!("--window-size={width},{height}"),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 20_000, "pageLoad": 30_000, "implicit": 0},
        }}});
        let session = browser
            .raw("POST", "/session", Some(caps))
            .await
            .map_err(|e| format!("Chromium did not start: {e}"))?;
        browser.session = session["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {session}"))?
            .to_string();
        browser.set_size(width, height).await;
        Ok(browser)
    }

    /// One WebDriver call; answers the `value` of the reply or the driver's error.
    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://{}{path}", self.driver_addr);
        let method = awc::http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let req = self.client.request(method, url);
        let sent = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| format!("{path}: {e}"))?;
        let bytes = resp
            .body()
            .limit(64 * 1024 * 1024)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{path}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    /// A command on this session; a driver error fails the test.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn current_url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; answers its result.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it answers something truthy (not null, false, 0 or ""), for at most
    /// `limit`; answers that value, or panics naming `what` and the last value seen.
    pub async fn wait_for(&self, what: &str, limit: Duration, script: &str, args: Value) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.exec(script, args.clone()).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {limit:?} waiting for {what} (last value: {v})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element matching `css` (waiting up to 10 s for it to exist).
    pub async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/session/{}/element", self.session);
            let found = self
                .raw(
                    "POST",
                    &path,
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Ok(v) = &found
                && let Some(id) = v[ELEMENT].as_str()
            {
                return id.to_string();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no element matches {css}: {found:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element matching `css`, as a user would (it must be visible). An element
    /// redrawn between finding and clicking is found again.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css).await;
            let path = format!("/session/{}/element/{id}/click", self.session);
            match self.raw("POST", &path, Some(json!({}))).await {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("WebDriver POST {e}"),
            }
        }
        panic!("{css} kept being redrawn before it could be clicked");
    }

    /// Replaces the value of the field matching `css` by typing `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Sends keys to whatever has the focus (e.g. "\u{E004}" is Tab, "\u{E007}" Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
        self.cmd("DELETE", "/actions", None).await;
    }

    /// The text of the element matching `css`, as rendered.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Resizes the window so the page's viewport is `width` CSS pixels wide.
    pub async fn set_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
        // The window rect includes no frame in headless mode, but check rather than assume.
        let inner = self.exec("return window.innerWidth", json!([])).await;
        if let Some(w) = inner.as_u64()
            && w != u64::from(width)
        {
            let grow = i64::from(width) - w as i64;
            self.cmd(
                "POST",
                "/window/rect",
                Some(json!({"width": i64::from(width) + grow, "height": height})),
            )
            .await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        decode_base64(b64.as_str().unwrap_or_default())
    }

    /// Writes a PNG of the viewport to `dir/name.png`.
    pub async fn save_screenshot(&self, dir: &Path, name: &str) {
        let png = self.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// The browser console's entries since the last call (each with level, source, message).
    pub async fn console(&self) -> Vec<Value> {
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.raw("DELETE", &path, None).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed halfway never called `quit`: end the session with a plain blocking
        // request so Chromium exits, then stop the driver.
        if !self.session.is_empty()
            && let Ok(mut s) = std::net::TcpStream::connect(&self.driver_addr)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.driver_addr
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (as WebDriver sends screenshots), ignoring anything outside the alphabet.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGVsbG8h"), b"hello!");
    assert_eq!(decode_base64("aGk="), b"hi");
}
