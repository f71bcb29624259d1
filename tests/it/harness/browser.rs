//! A real browser for the web pages: Debian's chromium, headless, driven through chromedriver
//! (WebDriver) on loopback, at a phone's or a desktop's size; screenshots to look at, and
//! axe-core's accessibility check.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

use super::programs::{ChildGuard, free_port, require};
use super::wait::eventually;

/// What `#[ignore]` says of a browser test: chromium, its driver, and npm for axe-core.
fn require_browser() {
    require("chromium", "chromium");
    require("chromedriver", "chromium-driver");
    require("npm", "npm");
}

/// Where a page is seen: the size of the page's area in CSS pixels, device pixels per CSS
/// pixel, and whether it is a phone (touch, and a mobile viewport: a page without
/// `<meta name="viewport">` is laid out 980 pixels wide and shrunk, as phones do).
#[derive(Debug, Clone, Copy)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub pixel_ratio: f64,
    pub phone: bool,
}

/// A phone held upright (390 x 844 CSS pixels at 3 device pixels each, as a current iPhone).
pub const PHONE: Viewport = Viewport {
    width: 390,
    height: 844,
    pixel_ratio: 3.0,
    phone: true,
};

/// The narrowest phone the pages are made for (360 CSS pixels, as many Android phones).
pub const SMALL_PHONE: Viewport = Viewport {
    width: 360,
    height: 740,
    pixel_ratio: 3.0,
    phone: true,
};

/// A laptop's browser window.
pub const DESKTOP: Viewport = Viewport {
    width: 1280,
    height: 800,
    pixel_ratio: 1.0,
    phone: false,
};

/// Every page is seen at each size.
pub const VIEWPORTS: [Viewport; 3] = [SMALL_PHONE, PHONE, DESKTOP];

impl std::fmt::Display for Viewport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Headless chromium as root on a machine without a display or a network beyond loopback:
/// without the background-networking flags it keeps calling out (updates, sync, field trials).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// One headless chromium with a fresh profile, through a chromedriver of its own; both are
/// killed when it is dropped.
pub struct Browser {
    client: Client,
    viewport: Viewport,
    javascript: bool,
    _chromedriver: ChildGuard,
    /// chromium's profile and chromedriver's log, removed after both (dropped after the guard).
    _dir: tempfile::TempDir,
}

impl Browser {
    /// A browser with JavaScript, as most people have it (and as axe-core needs it).
    pub async fn start(viewport: Viewport) -> Browser {
        Browser::start_with(viewport, true).await
    }

    /// A browser whose profile has JavaScript switched off: the pages must work without it.
    pub async fn without_javascript(viewport: Viewport) -> Browser {
        Browser::start_with(viewport, false).await
    }

    async fn start_with(viewport: Viewport, javascript: bool) -> Browser {
        require_browser();
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile");
        let driver_log = dir.path().join("chromedriver.log");
        let port = free_port();
        let chromedriver = ChildGuard::spawn_with_its_children(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", driver_log.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let driver = format!("http://127.0.0.1:{port}");
        eventually(
            Duration::from_secs(10),
            &format!("chromedriver answers at {driver}/status"),
            || async {
                let status: Value = reqwest::get(format!("{driver}/status"))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (status["value"]["ready"] == true).then_some(())
            },
        )
        .await;
        let capabilities = capabilities(viewport, javascript, &profile);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start chromium: {e}\n{}",
                    std::fs::read_to_string(&driver_log).unwrap_or_default()
                )
            });
        let browser = Browser {
            client,
            viewport,
            javascript,
            _chromedriver: chromedriver,
            _dir: dir,
        };
        browser.check_viewport().await;
        browser
    }

    /// Whether this browser's profile runs JavaScript (`start`) or not (`without_javascript`).
    pub fn javascript(&self) -> bool {
        self.javascript
    }

    /// Opens `url` and returns once it has loaded.
    pub async fn goto(&self, url: &str) {
        within(&format!("opening {url}"), self.client.goto(url)).await;
    }

    /// The text of the first element that `css` selects, once there is one (after a click
    /// the next page may still be loading).
    pub async fn text(&self, css: &str) -> String {
        eventually(
            Duration::from_secs(10),
            &format!("an element {css} at {}", self.viewport),
            || async {
                let element = self.find(css).await?;
                tokio::time::timeout(COMMAND_LIMIT, element.text())
                    .await
                    .ok()?
                    .ok()
            },
        )
        .await
    }

    /// Clicks (on a phone: taps) the first element that `css` selects, once there is one.
    pub async fn click(&self, css: &str) {
        let element = eventually(
            Duration::from_secs(10),
            &format!("an element {css} to click at {}", self.viewport),
            || self.find(css),
        )
        .await;
        if self.javascript || !self.viewport.phone {
            within(&format!("clicking {css}"), element.click()).await;
        } else {
            // chromedriver's tap waits for a timer in the page, which never fires without
            // JavaScript; Enter on the focused button submits the form all the same.
            within(
                &format!("pressing Enter on {css}"),
                element.send_keys("\u{E007}"),
            )
            .await;
        }
    }

    /// The first element that `css` selects, if there is one now.
    async fn find(&self, css: &str) -> Option<fantoccini::elements::Element> {
        tokio::time::timeout(COMMAND_LIMIT, self.client.find(Locator::Css(css)))
            .await
            .ok()?
            .ok()
    }

    /// Writes what the window shows to `<target>/screenshots/<name>-<width>x<height>.png`, for
    /// a person to look at (nothing compares them); its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = within(&format!("screenshot {name}"), self.client.screenshot()).await;
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}.png", self.viewport));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs axe-core on the page shown; its violations. The script goes in through WebDriver,
    /// which the page's Content-Security-Policy does not govern (`inline_scripts_run` shows
    /// that the policy still holds for the page's own scripts).
    pub async fn axe(&self) -> Vec<AxeViolation> {
        assert!(
            self.javascript,
            "axe-core needs JavaScript: run it in a browser from Browser::start"
        );
        within(
            "injecting axe-core",
            self.client.execute(axe_source(), vec![]),
        )
        .await;
        let answer = within(
            "running axe-core",
            self.client.execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                    .then(r => done({violations: r.violations}), e => done({error: String(e)}));",
                vec![],
            ),
        )
        .await;
        assert!(answer["error"].is_null(), "axe-core failed: {answer}");
        serde_json::from_value(answer["violations"].clone())
            .unwrap_or_else(|e| panic!("axe-core's answer ({e}): {answer}"))
    }

    /// Fails the test when the page shown (called `page` in messages) scrolls sideways, or
    /// axe-core finds a serious or critical violation on it; prints the other violations for
    /// whoever reads the output.
    pub async fn assert_accessible(&self, page: &str) {
        let widths = within(
            "measuring the page",
            self.client.execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            ),
        )
        .await;
        let widths: (u64, u64) = serde_json::from_value(widths).unwrap();
        assert!(
            widths.0 <= widths.1,
            "{page} at {} is {} pixels wide: it scrolls sideways",
            self.viewport,
            widths.0
        );
        let violations = self.axe().await;
        let (blocking, others): (Vec<_>, Vec<_>) = violations
            .iter()
            .partition(|v| matches!(v.impact.as_deref(), Some("serious" | "critical")));
        if !others.is_empty() {
            eprintln!(
                "axe-core on {page} at {}, minor and moderate:\n{}",
                self.viewport,
                describe(&others)
            );
        }
        assert!(
            blocking.is_empty(),
            "axe-core on {page} at {}, serious and critical:\n{}",
            self.viewport,
            describe(&blocking)
        );
    }

    /// Whether a script the page itself adds would run: never under the pages'
    /// Content-Security-Policy, while scripts through WebDriver (this one, axe-core) do.
    pub async fn inline_scripts_run(&self) -> bool {
        let answer = within(
            "adding an inline script",
            self.client.execute(
                "const script = document.createElement('script');
                 script.textContent = 'window.inlineScriptRan = true;';
                 document.head.appendChild(script);
                 return window.inlineScriptRan === true;",
                vec![],
            ),
        )
        .await;
        answer == true
    }

    /// Whether the pages this browser opens run JavaScript, seen on a page that retitles
    /// itself by script: proves that `without_javascript` took effect. Leaves that page open.
    pub async fn javascript_runs_on_pages(&self) -> bool {
        self.goto("data:text/html,<title>off</title><script>document.title='on'</script>")
            .await;
        within("reading the title", self.client.title()).await == "on"
    }

    /// The window's inner size must be the viewport's, or the screenshots' names would lie.
    async fn check_viewport(&self) {
        // A page that asks for the device's width, as the service's pages do; a phone lays a
        // page without it out 980 pixels wide.
        self.goto(
            "data:text/html,<meta name=viewport content='width=device-width, initial-scale=1'>\
             <title>size</title>",
        )
        .await;
        let size = tokio::time::timeout(
            COMMAND_LIMIT,
            self.client
                .execute("return [window.innerWidth, window.innerHeight];", vec![]),
        )
        .await
        .unwrap_or_else(|_| panic!("chromium's window size: no answer within {COMMAND_LIMIT:?}"));
        // Without JavaScript the size cannot be read; the same flags made it in the other case.
        if let Ok(size) = size {
            assert_eq!(
                size,
                json!([self.viewport.width, self.viewport.height]),
                "chromium's window"
            );
        }
    }
}

/// How long any one WebDriver command may take: a wedged browser fails the test in seconds
/// instead of holding it until chromedriver gives up.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// The answer to a WebDriver command (`what`, for the message) within `COMMAND_LIMIT`; fails
/// the test otherwise.
async fn within<T>(
    what: &str,
    command: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
) -> T {
    match tokio::time::timeout(COMMAND_LIMIT, command).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: chromium did not answer within {COMMAND_LIMIT:?}"),
    }
}

/// chromedriver's session: chromium with the flags above, a fresh profile, the window of
/// `viewport`, and JavaScript on or off.
fn capabilities(
    viewport: Viewport,
    javascript: bool,
    profile: &Path,
) -> serde_json::Map<String, Value> {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(ToString::to_string).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    // The page's area itself, for the desktop too: --window-size would count the window's
    // frame.
    let mut options = json!({
        "args": args,
        "mobileEmulation": {"deviceMetrics": {
            "width": viewport.width, "height": viewport.height, "pixelRatio": viewport.pixel_ratio,
            "mobile": viewport.phone, "touch": viewport.phone,
        }},
    });
    if !javascript {
        options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    serde_json::Map::from_iter([
        ("browserName".to_string(), json!("chrome")),
        ("goog:chromeOptions".to_string(), options),
    ])
}

/// One rule axe-core found broken, with the elements that break it.
#[derive(Debug, Deserialize)]
pub struct AxeViolation {
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    pub help: String,
    #[serde(rename = "helpUrl")]
    pub help_url: String,
    pub nodes: Vec<AxeNode>,
}

#[derive(Debug, Deserialize)]
pub struct AxeNode {
    /// CSS selectors of the element (nested for frames and shadow roots).
    pub target: Value,
    pub html: String,
    #[serde(rename = "failureSummary")]
    pub failure_summary: Option<String>,
}

/// The violations as a person reads them: rule, impact, what to do, and each element.
fn describe(violations: &[&AxeViolation]) -> String {
    let mut text = String::new();
    for v in violations {
        text.push_str(&format!(
            "- {} ({}): {} <{}>\n",
            v.id,
            v.impact.as_deref().unwrap_or("no impact"),
            v.help,
            v.help_url
        ));
        for node in &v.nodes {
            text.push_str(&format!("    at {}: {}\n", node.target, node.html));
            if let Some(summary) = &node.failure_summary {
                for line in summary.lines() {
                    text.push_str(&format!("      {line}\n"));
                }
            }
        }
    }
    text
}

/// The build's target folder (`target/`, or `CARGO_TARGET_DIR`): screenshots and npm's cache.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The npm side of the tests: `tests/web`, whose package-lock.json pins axe-core.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// axe-core's `axe.min.js`, installed by `npm ci` from `tests/web/package-lock.json` when it is
/// missing or not the version pinned there; read once per test run.
fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let web = web_dir();
        let installed = web.join("node_modules/axe-core");
        let pinned = pinned_version(&web).expect("tests/web/package-lock.json pins axe-core");
        if installed_version(&installed.join("package.json")).as_deref() != Some(pinned.as_str()) {
            let output = Command::new("npm")
                .args([
                    "ci",
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    "--prefix",
                ])
                .arg(&web)
                .arg("--cache")
                .arg(target_dir().join("npm-cache"))
                .output()
                .unwrap_or_else(|e| panic!("cannot run npm (apt-get install npm): {e}"));
            assert!(
                output.status.success(),
                "npm ci --prefix tests/web failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::read_to_string(installed.join("axe.min.js")).unwrap()
    })
}

/// The axe-core version tests/web/package-lock.json pins.
fn pinned_version(web: &Path) -> Option<String> {
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(web.join("package-lock.json")).ok()?).ok()?;
    Some(
        lock["packages"]["node_modules/axe-core"]["version"]
            .as_str()?
            .to_string(),
    )
}

/// The version of the package whose `package.json` is at `path`, if it is installed.
fn installed_version(path: &Path) -> Option<String> {
    let package: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(package["version"].as_str()?.to_string())
}
