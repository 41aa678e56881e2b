//! A real browser for the web inbox tests: Debian's headless Chromium driven through
//! `chromedriver` with fantoccini (WebDriver).
//!
//! [`Browser::start`] runs `chromedriver --port=0` in a process group of its own, reads the port
//! it bound from its log, and opens a session whose Chromium gets the flags that work on these
//! machines (no sandbox, no GPU, no QUIC, no background networking: the machine's closed network
//! refuses Chromium's own connections) and a fresh profile in a temporary directory. Dropping the
//! value (or [`Browser::quit`]) ends both: the session is closed when possible, then the
//! chromedriver process group is killed, then any Chromium process still running with this
//! profile directory (found by its command line, killed by its id), so no test leaves a browser
//! behind, whatever it fails on.
//!
//! The programs are `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`), or `MSGR_CHROMIUM` and `MSGR_CHROMEDRIVER`.
//!
//! Screenshots: [`Browser::screenshot`] writes `NAME.png` into the directory named by
//! `MSGR_SCREENSHOTS` (relative paths are taken from the workspace root, so
//! `MSGR_SCREENSHOTS=docs/screenshots` refreshes the README's pictures) and does nothing when the
//! variable is unset, so a CI run never dirties the tree. [`Browser::snapshot_on_error`] keeps a
//! failing step's screenshot and page source in the temporary directory and names them in the
//! error.

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a page, an element or the browser's start may take. Generous: Chromium's first start
/// on a loaded 2-core machine takes seconds.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(20);

/// The Chromium flags known to work on these machines (no sandbox as root, no GPU, no network of
/// Chromium's own), plus a fixed window size so screenshots are comparable.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// Headless Chromium under chromedriver, with a WebDriver session open.
pub struct Browser {
    client: Option<Client>,
    driver: Driver,
}

/// The chromedriver process and the temporary directory holding its log and Chromium's profile;
/// both processes end when this is dropped.
struct Driver {
    child: Child,
    /// Process id of chromedriver, also its process group's id.
    pgid: Option<u32>,
    dir: tempfile::TempDir,
}

impl Driver {
    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// Kills chromedriver's process group, then every process still running with our profile
    /// directory on its command line (Chromium's processes, should any have left the group).
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // The group id is our own child's id, given to it by `process_group(0)`.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
        let marker = format!("--user-data-dir={}", self.profile().display());
        for pid in processes_with_arg(&marker) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ids of the processes whose command line has the argument `arg`.
fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .split(|&b| b == 0)
                .any(|a| a == arg.as_bytes())
                .then_some(pid)
        })
        .collect()
}

fn program(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The directory screenshots go to, if `MSGR_SCREENSHOTS` is set (relative to the workspace
/// root).
pub fn screenshot_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("MSGR_SCREENSHOTS")?);
    if dir.as_os_str().is_empty() {
        return None;
    }
    Some(if dir.is_absolute() {
        dir
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    })
}

impl Browser {
    /// Starts chromedriver and Chromium with a fresh profile and opens a session.
    /// `--ignore-certificate-errors` is on, so the server's self-signed HTTPS listener can be used.
    pub async fn start() -> Result<Browser> {
        let dir = tempfile::Builder::new()
            .prefix("msgr-browser-")
            .tempdir()
            .context("creating the browser's directory")?;
        let log_path = dir.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).context("creating chromedriver's log")?;
        let driver_bin = program("MSGR_CHROMEDRIVER", "/usr/bin/chromedriver");
        let child = Command::new(&driver_bin)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing chromedriver's log")?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {driver_bin:?} (Debian package chromium-driver; .ci/run installs it)"
                )
            })?;
        let pgid = child.id();
        let mut driver = Driver { child, pgid, dir };
        let port = wait_for_port(&mut driver, &log_path).await?;
        let profile = driver.profile();
        std::fs::create_dir_all(&profile).context("creating Chromium's profile directory")?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push("--ignore-certificate-errors".to_owned());
        let chromium = program("MSGR_CHROMIUM", "/usr/bin/chromium");
        let caps = json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": args,
            },
        });
        let Value::Object(caps) = caps else {
            bail!("capabilities are an object");
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(BROWSER_TIMEOUT, builder.connect(&webdriver))
            .await
            .map_err(|_| anyhow!("Chromium did not start within {BROWSER_TIMEOUT:?}"))?
            .with_context(|| {
                format!(
                    "opening a WebDriver session with {chromium:?}; chromedriver said: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            })?;
        Ok(Browser {
            client: Some(client),
            driver,
        })
    }

    /// The WebDriver client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the client is only taken by quit(self)")
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        tokio::time::timeout(BROWSER_TIMEOUT, self.client().goto(url))
            .await
            .map_err(|_| anyhow!("loading {url} took over {BROWSER_TIMEOUT:?}"))?
            .with_context(|| format!("loading {url}"))
    }

    /// The current URL.
    pub async fn url(&self) -> Result<url::Url> {
        Ok(self.client().current_url().await?)
    }

    /// The first element matching the CSS selector `css`, waiting up to [`BROWSER_TIMEOUT`] for
    /// it to appear.
    pub async fn wait_for(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client()
            .wait()
            .at_most(BROWSER_TIMEOUT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css:?}"))
    }

    /// The first element matching `css` now (no waiting).
    pub async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client()
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no {css:?} on the page"))
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Result<Vec<fantoccini::elements::Element>> {
        Ok(self.client().find_all(Locator::Css(css)).await?)
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> Result<bool> {
        Ok(!self.find_all(css).await?.is_empty())
    }

    /// The visible text of the first element matching `css` (waiting for it).
    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.wait_for(css).await?.text().await?)
    }

    /// The current value of the first form field matching `css` (waiting for it); empty if it has none.
    pub async fn value(&self, css: &str) -> Result<String> {
        Ok(self
            .wait_for(css)
            .await?
            .prop("value")
            .await?
            .unwrap_or_default())
    }

    /// Types `text` into the first element matching `css` after clearing it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.wait_for(css).await?;
        e.clear().await.ok();
        e.send_keys(text)
            .await
            .with_context(|| format!("typing into {css:?}"))
    }

    /// Clicks the first element matching `css` (waiting for it). A page that updates itself
    /// (the web inbox's live list) may replace the element between finding and clicking it; the
    /// click is then tried again on the new one, a few times.
    pub async fn click(&self, css: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            let e = self.wait_for(css).await?;
            match e.click().await {
                Ok(()) => return Ok(()),
                Err(err) if is_stale(&err) && tries < 5 => tries += 1,
                Err(err) => return Err(err).with_context(|| format!("clicking {css:?}")),
            }
        }
    }

    /// Waits until the path of the current URL is `path` (e.g. `/mail/inbox`).
    pub async fn wait_for_path(&self, path: &str) -> Result<url::Url> {
        let deadline = tokio::time::Instant::now() + BROWSER_TIMEOUT;
        loop {
            let url = self.url().await?;
            if url.path() == path {
                return Ok(url);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("expected to be at {path}, still at {url}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page (WebDriver "execute script") and returns its value.
    pub async fn eval(&self, script: &str) -> Result<Value> {
        self.eval_with(script, Vec::new()).await
    }

    /// [`Browser::eval`] with `arguments[0]`, … : one atomic read of a page that may be
    /// replacing its nodes meanwhile.
    pub async fn eval_with(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client()
            .execute(script, args)
            .await
            .with_context(|| format!("running {script:?}"))
    }

    /// A PNG of the viewport.
    pub async fn png(&self) -> Result<Vec<u8>> {
        Ok(self.client().screenshot().await?)
    }

    /// Saves a screenshot as `NAME.png` in [`screenshot_dir`], if `MSGR_SCREENSHOTS` is set;
    /// returns where it went.
    pub async fn screenshot(&self, name: &str) -> Result<Option<PathBuf>> {
        let Some(dir) = screenshot_dir() else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir:?}"))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.png().await?).with_context(|| format!("writing {path:?}"))?;
        Ok(Some(path))
    }

    /// Runs a test step; if it fails, keeps the page's screenshot and source next to the
    /// browser's profile (`STEP.png`, `STEP.html`, in a directory kept after the test) and names
    /// them in the error.
    pub async fn snapshot_on_error<T>(&self, step: &str, result: Result<T>) -> Result<T> {
        let Err(e) = result else {
            return result;
        };
        let keep = std::env::temp_dir().join("msgr-browser-failures");
        let _ = std::fs::create_dir_all(&keep);
        let png = keep.join(format!("{step}.png"));
        let html = keep.join(format!("{step}.html"));
        if let Ok(bytes) = self.png().await {
            let _ = std::fs::write(&png, bytes);
        }
        if let Ok(source) = self.client().source().await {
            let _ = std::fs::write(&html, source);
        }
        let url = self
            .url()
            .await
            .map_or_else(|_| "?".to_owned(), |u| u.to_string());
        Err(e.context(format!(
            "browser step {step:?} failed at {url}; screenshot {png:?}, page {html:?}"
        )))
    }

    /// Closes the session (Chromium quits), then makes sure chromedriver and Chromium are gone.
    pub async fn quit(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(BROWSER_TIMEOUT, client.close()).await;
        }
        self.driver.kill();
        Ok(())
    }
}

/// Whether a WebDriver error says the element was replaced since it was found.
fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    e.is_stale_element_reference()
}

/// Reads chromedriver's log until it says which port it bound.
async fn wait_for_port(driver: &mut Driver, log: &Path) -> Result<u16> {
    const MARK: &str = "was started successfully on port ";
    let deadline = tokio::time::Instant::now() + BROWSER_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split(MARK).nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            return digits
                .parse()
                .with_context(|| format!("chromedriver's port in {text:?}"));
        }
        if let Some(status) = driver.child.try_wait()? {
            bail!("chromedriver exited ({status}) before listening: {text}");
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("chromedriver did not report its port within {BROWSER_TIMEOUT:?}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
