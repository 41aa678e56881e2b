//! The `i` key of `msgr chat`: open the web inbox signed in, as MSN Messenger opened Hotmail.
//!
//! `URL t INBOX` gives the page and the site's `Post-URL`; msgr-client builds the form Messenger
//! posted with the profile's ticket ([`msgr_client::hotmail_form`]); it is written to a new
//! directory of its own under the system's temporary directory (mode 0700, the file 0600: it signs
//! in as the user until the ticket expires) and opened with `$BROWSER` or, under a desktop session,
//! `xdg-open`. Without either, the status line shows the file's path to open by hand. MSNP2–MSNP4
//! sign-ins carry no ticket: the page's own address is opened (or shown), and the site asks for the
//! password.

use anyhow::{Context, Result};
use msgr_client::Client;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What opening the inbox did, for the status line.
pub async fn open(client: &Client) -> String {
    match try_open(client).await {
        Ok(text) => text,
        Err(e) => format!("could not open the inbox: {e:#}"),
    }
}

async fn try_open(client: &Client) -> Result<String> {
    let page = client
        .mail_page("INBOX", None)
        .await
        .context("asking the server where the inbox is")?;
    let target = match client.mail_form(&page) {
        Some(html) => {
            let path = write_private(&html).context("writing the inbox page")?;
            format!("file://{}", path.display())
        }
        None => page.direct_url(),
    };
    match browser_command(&target) {
        Some((program, args)) => {
            let mut child = tokio::process::Command::new(&program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {program}"))?;
            // Reaped in the background; the browser may well outlive the messenger.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Ok(format!("inbox opened in the browser ({program}): {target}"))
        }
        None => Ok(format!("inbox: open {target} in a browser")),
    }
}

/// Writes `html` as `inbox.html` in a new directory only the user can enter.
fn write_private(html: &str) -> Result<PathBuf> {
    let base = std::env::temp_dir();
    let dir = new_private_dir(&base)?;
    let path = dir.join("inbox.html");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(html.as_bytes())?;
    Ok(path)
}

/// A directory under `base` that did not exist before (mode 0700); `mkdir` fails on any existing
/// name, links included, so nobody else's file or link is ever written through.
fn new_private_dir(base: &Path) -> Result<PathBuf> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for attempt in 0..16u32 {
        let dir = base.join(format!(
            "msgr-inbox-{}-{:x}",
            std::process::id(),
            seed.wrapping_add(u128::from(attempt) * 7919)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    anyhow::bail!("no free directory name under {}", base.display())
}

/// `$BROWSER` (its first command; `%s` is replaced by the target, else the target is appended),
/// else `xdg-open` when a desktop session is there and it is installed.
fn browser_command(target: &str) -> Option<(String, Vec<String>)> {
    if let Some(b) = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        let first = b.split(':').next().unwrap_or_default();
        let mut words = first.split_whitespace().map(str::to_owned);
        let program = words.next()?;
        let mut args: Vec<String> = words.collect();
        if args.iter().any(|a| a.contains("%s")) {
            for a in &mut args {
                *a = a.replace("%s", target);
            }
        } else {
            args.push(target.to_owned());
        }
        return Some((program, args));
    }
    let desktop = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    let xdg = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("xdg-open").is_file()));
    (desktop && xdg).then(|| ("xdg-open".to_owned(), vec![target.to_owned()]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_page_is_private_and_never_written_through_an_existing_name() {
        let base = std::env::temp_dir();
        let a = new_private_dir(&base).unwrap();
        let b = new_private_dir(&base).unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir(&a).unwrap();
        std::fs::remove_dir(&b).unwrap();
    }
}
