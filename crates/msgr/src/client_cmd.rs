//! The scriptable client commands (`send`, `status`, `contacts`) and the connection options
//! they share with `msgr chat`.

use anyhow::{bail, Context, Result};
use clap::Args;
use msgr_client::{ChatEvent, Client, Config, Dialect, Event, List, ListCache, Status, TlsTrust};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the server and who to sign in as.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    /// Dispatch or notification server (host:port).
    #[arg(long, env = "MSGR_SERVER", default_value = "127.0.0.1:1863")]
    pub server: String,
    /// Passport nexus URL [default: https://<server host>:8443/rdr/pprdr.asp].
    #[arg(long, env = "MSGR_NEXUS")]
    pub nexus: Option<String>,
    /// PEM certificate to trust for Passport over HTTPS (e.g. msgr-data/tls-cert.pem)
    /// [default: the system's web roots].
    #[arg(long, env = "MSGR_CA")]
    pub ca: Option<PathBuf>,
    /// Trust any HTTPS certificate. Only for throwaway test servers: anyone on the path can
    /// read the password.
    #[arg(long, conflicts_with = "ca")]
    pub insecure_tls: bool,
    /// Protocol version, 2–12 (MSNP2–7 sign in with MD5, which the server must allow).
    #[arg(long, default_value_t = 12)]
    pub dialect: u8,
    /// Account to sign in as.
    #[arg(long, env = "MSGR_EMAIL")]
    pub email: String,
    /// Password [env: MSGR_PASSWORD].
    #[arg(long, env = "MSGR_PASSWORD", hide_env_values = true)]
    pub password: String,
}

impl ConnectArgs {
    pub fn config(&self) -> Result<Config> {
        let dialect = Dialect::from_number(self.dialect)
            .with_context(|| format!("--dialect {} is not 2–12", self.dialect))?;
        let mut c = Config::new(&self.server, &self.email, &self.password);
        c.dialect = dialect;
        let host = self
            .server
            .rsplit_once(':')
            .map_or(self.server.as_str(), |(h, _)| h);
        c.nexus = self
            .nexus
            .clone()
            .unwrap_or_else(|| format!("https://{host}:8443/rdr/pprdr.asp"));
        c.tls = match (&self.ca, self.insecure_tls) {
            (_, true) => TlsTrust::InsecureAcceptAnyCertificate,
            (Some(ca), false) => TlsTrust::CertificateFile(ca.clone()),
            (None, false) => TlsTrust::SystemRoots,
        };
        Ok(c)
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn connect(
    args: &ConnectArgs,
    status: Status,
) -> Result<(Client, tokio::sync::mpsc::Receiver<Event>)> {
    let mut config = args.config()?;
    config.initial_status = status;
    // A one-shot command does not reconnect: it reports the failure instead.
    config.reconnect.enabled = false;
    Client::connect(config)
        .await
        .with_context(|| format!("signing in as {}", args.email))
}

/// `msgr send --to EMAIL TEXT`: open a chat, wait for them to join, send, leave.
pub async fn send(args: &ConnectArgs, to: &str, text: &str) -> Result<()> {
    let (client, mut events) = connect(args, Status::Online).await?;
    let chat = client
        .start_chat(to)
        .await
        .with_context(|| format!("inviting {to}"))?;
    let joined = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(e) = events.recv().await {
            if let Event::Chat {
                event: ChatEvent::Joined { email, .. },
                ..
            } = e
            {
                if email.eq_ignore_ascii_case(to) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    if joined != Ok(true) {
        bail!("{to} did not join the chat");
    }
    chat.send_text(text).await.context("sending the message")?;
    chat.leave().await;
    client.sign_out().await;
    println!("sent to {to}");
    Ok(())
}

/// `msgr status SET`: sign in, set the status (and name / personal message), sign out.
pub async fn status(
    args: &ConnectArgs,
    status: &str,
    name: Option<&str>,
    message: Option<&str>,
) -> Result<()> {
    let Some(st) = Status::from_label(status).filter(|s| *s != Status::Offline) else {
        bail!(
            "unknown status {status:?}; one of: {}",
            Status::SETTABLE.map(Status::label).join(", ")
        );
    };
    let (client, _events) = connect(args, st).await?;
    client.set_status(st).await.context("setting the status")?;
    if let Some(n) = name {
        client.set_nickname(n).await.context("setting the name")?;
    }
    if let Some(m) = message {
        client
            .set_personal_message(m)
            .await
            .context("setting the personal message")?;
    }
    client.sign_out().await;
    println!("{} {}", args.email, st.label());
    Ok(())
}

/// Presence as the `ILN` burst after signing in reported it.
async fn presence_snapshot(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
) -> HashMap<String, (Status, String)> {
    let mut seen = HashMap::new();
    // The burst follows the status change at once; stop after a short quiet spell.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(400), events.recv()).await {
        if let Event::Presence {
            email,
            status,
            name,
            ..
        } = e
        {
            seen.insert(email.to_ascii_lowercase(), (status, name));
        }
    }
    seen
}

/// The lines `msgr contacts` prints: one per forward-list contact, grouped.
/// Online contacts show the name they announced; offline ones the name the list holds.
pub fn format_contacts(
    lists: &ListCache,
    presence: &HashMap<String, (Status, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut groups: Vec<(Option<&str>, &str)> = lists
        .groups
        .iter()
        .map(|(id, name)| (Some(id.as_str()), name.as_str()))
        .collect();
    groups.sort_by_key(|(_, n)| n.to_lowercase());
    groups.push((None, "No group"));
    for (id, name) in groups {
        let members: Vec<_> = lists.in_group(id).collect();
        if members.is_empty() {
            continue;
        }
        out.push(format!("[{name}]"));
        for c in members {
            let (st, name) = presence
                .get(&c.email.to_ascii_lowercase())
                .map_or((Status::Offline, c.name.as_str()), |(s, n)| {
                    (*s, n.as_str())
                });
            let mut flags = Vec::new();
            if c.on(List::Block) {
                flags.push("blocked");
            }
            if !c.on(List::Reverse) {
                flags.push("not-mutual");
            }
            out.push(format!(
                "  {}\t{}\t{}{}",
                c.email,
                st.label(),
                name,
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("\t({})", flags.join(", "))
                }
            ));
        }
    }
    let pending: Vec<_> = lists
        .on(List::Reverse)
        .filter(|c| !c.on(List::Allow) && !c.on(List::Block))
        .collect();
    if !pending.is_empty() {
        out.push("[Added you]".into());
        for c in pending {
            out.push(format!("  {}\t{}", c.email, c.name));
        }
    }
    out
}

/// `msgr contacts`: sign in hidden (so nobody sees us come and go) and print the list.
pub async fn contacts(args: &ConnectArgs) -> Result<()> {
    let (client, mut events) = connect(args, Status::AppearOffline).await?;
    let presence = presence_snapshot(&mut events).await;
    for line in format_contacts(&client.lists(), &presence) {
        println!("{line}");
    }
    client.sign_out().await;
    Ok(())
}
