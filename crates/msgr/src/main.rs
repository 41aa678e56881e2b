//! The `msgr` command: `serve` runs the service, `user` administers accounts, `send`,
//! `status` and `contacts` are scriptable client commands.

mod chat;
mod client_cmd;
mod logfmt;
mod mail_cmd;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use msgr_core::passport::{validate_friendly_name, Passport};
use msgr_core::password::hash_password;
use msgr_server::{Config, Server};
use msgr_store::{AccountStore, NewAccount, Store};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "msgr", version, about = "A self-hosted MSN Messenger service")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// TOML configuration file (every key optional; see README "Configuration").
    #[arg(long, global = true, env = "MSGR_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: SQLite database and generated TLS certificate [default: ./msgr-data].
    #[arg(long, global = true, env = "MSGR_DATA")]
    data: Option<PathBuf>,
    /// Allow MSNP2–MSNP7 (MD5) logins; accounts then also keep a password-equivalent secret.
    #[arg(long, global = true)]
    legacy_md5: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (MSNP, Passport over HTTP and HTTPS, SMTP and POP3).
    Serve(ServeArgs),
    /// Manage accounts (works while the server runs).
    #[command(subcommand)]
    User(UserCommand),
    /// The outbound mail queue: `queue` lists it, `retry` makes it due now (works while the server runs).
    #[command(subcommand)]
    Mail(mail_cmd::MailCommand),
    /// Send one message: open a chat with --to, wait for them to join, send TEXT, leave.
    Send {
        #[command(flatten)]
        connect: client_cmd::ConnectArgs,
        /// Who to send it to.
        #[arg(long)]
        to: String,
        /// The message (several words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Sign in, set a status (online, busy, away, brb, phone, lunch, idle, invisible), sign out.
    Status {
        #[command(flatten)]
        connect: client_cmd::ConnectArgs,
        status: String,
        /// Also change the display name.
        #[arg(long)]
        name: Option<String>,
        /// Also set the personal message (MSNP11+).
        #[arg(long)]
        message: Option<String>,
    },
    /// Print the contact list by group, with each contact's status.
    Contacts {
        #[command(flatten)]
        connect: client_cmd::ConnectArgs,
    },
    /// The terminal messenger: contacts, chats, status, groups and file transfers (`?` for keys).
    Chat {
        #[command(flatten)]
        connect: client_cmd::ConnectArgs,
        /// Where accepted files are saved.
        #[arg(long, default_value = ".")]
        downloads: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// MSNP listener address (dispatch, notification and switchboard) [default: 127.0.0.1:1863].
    #[arg(long)]
    msnp: Option<SocketAddr>,
    /// HTTP listener address, or "off" [default: 127.0.0.1:8080].
    #[arg(long)]
    http: Option<String>,
    /// HTTPS listener address, or "off" [default: 127.0.0.1:8443].
    #[arg(long)]
    https: Option<String>,
    /// Host name clients use to reach this server (in XFR, RNG and the nexus DALogin).
    #[arg(long)]
    public_host: Option<String>,
    /// Also listen here as a dispatch-only server that sends clients on to the NS (for clients
    /// that insist on a dispatch server).
    #[arg(long)]
    dispatch: Option<SocketAddr>,
    /// Run as a dispatch server that sends clients to these notification servers (host:port).
    #[arg(long = "dispatch-to", value_name = "HOST:PORT")]
    dispatch_to: Vec<String>,
    /// Inbound SMTP (MX) listener, or "off" [default: 127.0.0.1:2525; port 25 in production].
    #[arg(long, value_name = "ADDR|off")]
    smtp: Option<String>,
    /// Mail submission listener with STARTTLS, or "off" [default: 127.0.0.1:2587].
    #[arg(long, value_name = "ADDR|off")]
    submission: Option<String>,
    /// Mail submission over implicit TLS, or "off" [default: 127.0.0.1:2465].
    #[arg(long, value_name = "ADDR|off")]
    submissions: Option<String>,
    /// POP3 listener with STLS, or "off" [default: 127.0.0.1:2110].
    #[arg(long, value_name = "ADDR|off")]
    pop3: Option<String>,
    /// POP3 over implicit TLS, or "off" [default: 127.0.0.1:2995].
    #[arg(long, value_name = "ADDR|off")]
    pop3s: Option<String>,
    /// IMAP listener with STARTTLS, or "off" [default: 127.0.0.1:2143; port 143 in production].
    #[arg(long, value_name = "ADDR|off")]
    imap: Option<String>,
    /// IMAP over implicit TLS, or "off" [default: 127.0.0.1:2993; port 993 in production].
    #[arg(long, value_name = "ADDR|off")]
    imaps: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account.
    Add {
        email: String,
        /// The password (read from standard input when omitted).
        #[arg(long)]
        password: Option<String>,
        /// Display name [default: the part of the e-mail before '@'].
        #[arg(long)]
        name: Option<String>,
    },
    /// List accounts.
    List,
    /// Change an account's password.
    Passwd {
        email: String,
        /// The new password (read from standard input when omitted).
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account.
    Del { email: String },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msgr: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut config = match &cli.common.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = cli.common.data {
        config.data_dir = d;
    }
    if cli.common.legacy_md5 {
        config.legacy_md5 = true;
    }
    match cli.command {
        Command::Serve(args) => serve(config, args),
        Command::User(cmd) => user(&config, cmd),
        Command::Mail(mail_cmd::MailCommand::Dns { domain }) => {
            let host = config
                .mail
                .hostname
                .clone()
                .or_else(|| config.public_host.clone())
                .unwrap_or_else(|| "localhost".to_owned());
            let dir = config
                .mail
                .dkim_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("dkim"));
            print!("{}", mail_cmd::dns(&domain, &host, &dir)?);
            Ok(())
        }
        Command::Mail(cmd) => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            mail_cmd::run(&Store::open_sqlite(&config.database_path())?, cmd)
        }
        Command::Send { connect, to, text } => {
            client_cmd::runtime()?.block_on(client_cmd::send(&connect, &to, &text.join(" ")))
        }
        Command::Status {
            connect,
            status,
            name,
            message,
        } => client_cmd::runtime()?.block_on(client_cmd::status(
            &connect,
            &status,
            name.as_deref(),
            message.as_deref(),
        )),
        Command::Contacts { connect } => {
            client_cmd::runtime()?.block_on(client_cmd::contacts(&connect))
        }
        Command::Chat { connect, downloads } => {
            client_cmd::runtime()?.block_on(chat::run(&connect, downloads))
        }
    }
}

fn listener_flag(value: Option<String>, current: Option<SocketAddr>) -> Result<Option<SocketAddr>> {
    match value.as_deref() {
        None => Ok(current),
        Some("off") => Ok(None),
        Some(s) => Ok(Some(
            s.parse()
                .with_context(|| format!("bad listener address {s:?}"))?,
        )),
    }
}

fn serve(mut config: Config, args: ServeArgs) -> Result<()> {
    if let Some(a) = args.msnp {
        config.msnp = a;
    }
    config.http = listener_flag(args.http, config.http)?;
    config.https = listener_flag(args.https, config.https)?;
    let mail = &mut config.mail;
    mail.smtp = listener_flag(args.smtp, mail.smtp)?;
    mail.submission = listener_flag(args.submission, mail.submission)?;
    mail.submissions = listener_flag(args.submissions, mail.submissions)?;
    mail.pop3 = listener_flag(args.pop3, mail.pop3)?;
    mail.pop3s = listener_flag(args.pop3s, mail.pop3s)?;
    mail.imap = listener_flag(args.imap, mail.imap)?;
    mail.imaps = listener_flag(args.imaps, mail.imaps)?;
    if args.public_host.is_some() {
        config.public_host = args.public_host;
    }
    if args.dispatch.is_some() {
        config.dispatch = args.dispatch;
    }
    if !args.dispatch_to.is_empty() {
        config.dispatch_to = args.dispatch_to;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .fmt_fields(logfmt::fields())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            signal.cancel();
        });
        server.run(shutdown).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn read_password(given: Option<String>) -> Result<String> {
    let pw = match given {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if pw.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(pw)
}

fn user(config: &Config, cmd: UserCommand) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Store::open_sqlite(&config.database_path())?;
    let md5_secret = |pw: &str| config.legacy_md5.then(|| pw.to_owned());
    match cmd {
        UserCommand::Add {
            email,
            password,
            name,
        } => {
            let passport = Passport::parse(&email).with_context(|| format!("{email:?}"))?;
            let name = name.unwrap_or_else(|| passport.local_part().to_owned());
            validate_friendly_name(&name).with_context(|| format!("display name {name:?}"))?;
            let pw = read_password(password)?;
            let account = store.create_account(NewAccount {
                email: passport.into_string(),
                display_name: name,
                password_hash: hash_password(&pw)?,
                md5_secret: md5_secret(&pw),
            })?;
            println!("created {}", account.email);
        }
        UserCommand::List => {
            for a in store.accounts()? {
                let legacy = if a.md5_secret.is_some() { " (md5)" } else { "" };
                println!("{}\t{}{legacy}", a.email, a.display_name);
            }
        }
        UserCommand::Passwd { email, password } => {
            let pw = read_password(password)?;
            store.set_password(&email, &hash_password(&pw)?, md5_secret(&pw).as_deref())?;
            println!("password changed for {email}");
        }
        UserCommand::Del { email } => {
            store.delete_account(&email)?;
            println!("deleted {email}");
        }
    }
    Ok(())
}
