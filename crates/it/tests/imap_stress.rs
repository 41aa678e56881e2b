//! IMAP under concurrent sessions, with state checking: several sessions on one mailbox append,
//! flag, expunge, move and search at random, each keeping its own model of the mailbox from nothing but
//! what the server told it (tagged answers and untagged `EXISTS`/`EXPUNGE`/`FETCH`), and every
//! response is checked against the rules of RFC 3501 and RFC 4315:
//!
//! - UIDs are strictly ascending by sequence number, never reused (`APPENDUID`s are unique over the
//!   whole run) and a UID a session was told is expunged never shows up in that session again;
//! - `EXISTS` never shrinks the mailbox (only `EXPUNGE` does), `EXPUNGE` names a message that exists,
//!   and no `EXPUNGE` arrives while the server answers `FETCH`, `STORE` or `SEARCH` (RFC 3501 §7.4.1);
//! - a session's own `STORE` answer shows its change, its own `EXPUNGE`/`UID MOVE` removes the message
//!   from its view before the tagged `OK`;
//! - at the end, after a `NOOP`, what each session learned from the updates alone (flags and UIDs of
//!   every message) is exactly what a new session reads with `FETCH 1:* (UID FLAGS)`.
//!
//! This is the kind of check imaptest's stress mode makes (which cannot be built on this machine, see
//! `docs/imaptest.md`); the model and the rules here are our own. The run is reproducible: the seed is
//! printed, and `MSGR_IMAP_STRESS_SEED` replays one.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const USER: &str = "stress@example.com";
const PASSWORD: &str = "correct horse";
const SESSIONS: usize = 4;
const STEPS: usize = 120;
/// Flags the sessions set and clear (`\Recent` is the server's, `\Deleted` is set only to expunge).
const FLAGS: [&str; 5] = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work"];

/// xorshift64*: a small deterministic generator, so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What one session knows of a message: its UID (0 until the server names it) and its flags (`None`
/// until the server sends them), `\Recent` left out.
#[derive(Clone, Debug, PartialEq)]
struct Known {
    uid: u32,
    flags: Option<BTreeSet<String>>,
}

/// The kind of command in progress: RFC 3501 §7.4.1 forbids `EXPUNGE` during the sequence-number forms
/// of `FETCH`, `STORE` and `SEARCH`.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    NoExpunge,
    Any,
}

/// One session: its socket, its model of the selected mailbox, and what it was told was expunged.
struct Session {
    name: String,
    r: BufReader<tokio::io::ReadHalf<TcpStream>>,
    w: tokio::io::WriteHalf<TcpStream>,
    view: Vec<Known>,
    expunged: HashSet<u32>,
    tags: u32,
    /// The `(message, flags)` of every `FETCH` the current command's answer carried.
    fetches: Vec<(usize, Option<BTreeSet<String>>)>,
    /// How many `EXPUNGE`s this session was sent.
    expunges: usize,
}

/// UIDs handed out by `APPENDUID` in the whole run, by every session.
type Issued = Arc<Mutex<HashSet<u32>>>;

impl Session {
    async fn open(addr: SocketAddr, name: String) -> Result<Session> {
        let s = TcpStream::connect(addr).await?;
        let (r, w) = tokio::io::split(s);
        let mut s = Session {
            name,
            r: BufReader::new(r),
            w,
            view: Vec::new(),
            expunged: HashSet::new(),
            tags: 0,
            fetches: Vec::new(),
            expunges: 0,
        };
        let greeting = s.line().await?;
        ensure!(greeting.starts_with("* OK"), "{greeting}");
        let r = s
            .run(&format!("LOGIN {USER} \"{PASSWORD}\""), Kind::Any)
            .await?;
        ensure!(r.starts_with("OK"), "{}: LOGIN {r}", s.name);
        let r = s.run("SELECT INBOX", Kind::Any).await?;
        ensure!(r.starts_with("OK"), "{}: SELECT {r}", s.name);
        Ok(s)
    }

    async fn line(&mut self) -> Result<String> {
        let mut l = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, self.r.read_until(b'\n', &mut l))
            .await
            .with_context(|| format!("{}: no answer from the server", self.name))??;
        ensure!(n > 0, "{}: connection closed", self.name);
        let l = String::from_utf8(l).context("a response that is not UTF-8")?;
        Ok(l.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Sends one command (a line, or a line and a LITERAL+ literal), applies every untagged response to
    /// the model, and returns the tagged status with its text (`OK [APPENDUID 1 7] …`).
    async fn run(&mut self, command: &str, kind: Kind) -> Result<String> {
        Ok(self.run_collect(command, kind).await?.0)
    }

    /// As `run`, also returning the untagged lines the model did not consume (`SEARCH`, `STATUS`…).
    async fn run_collect(&mut self, command: &str, kind: Kind) -> Result<(String, Vec<String>)> {
        self.tags += 1;
        let tag = format!("t{}", self.tags);
        self.w
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let mut other = Vec::new();
        self.fetches.clear();
        loop {
            let l = self.line().await?;
            if let Some(status) = l.strip_prefix(&format!("{tag} ")) {
                return Ok((status.to_owned(), other));
            }
            if let Some(rest) = l.strip_prefix("* ") {
                if !self
                    .apply(rest, kind)
                    .with_context(|| format!("{}: `{l}` in answer to `{command}`", self.name))?
                {
                    other.push(rest.to_owned());
                }
            } else if !l.starts_with('+') {
                bail!("{}: unexpected line `{l}` for `{command}`", self.name);
            }
        }
    }

    /// Applies one untagged response to the model; false when it is not a mailbox update.
    fn apply(&mut self, rest: &str, kind: Kind) -> Result<bool> {
        let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(n) = first.parse::<usize>() else {
            return Ok(false);
        };
        let (word, data) = tail.split_once(' ').unwrap_or((tail, ""));
        match word {
            "EXISTS" => {
                ensure!(
                    n >= self.view.len(),
                    "EXISTS {n} below the {} messages known: only EXPUNGE may shrink the mailbox",
                    self.view.len()
                );
                self.view.resize(
                    n,
                    Known {
                        uid: 0,
                        flags: None,
                    },
                );
            }
            "EXPUNGE" => {
                ensure!(kind == Kind::Any, "EXPUNGE during FETCH, STORE or SEARCH");
                ensure!(
                    (1..=self.view.len()).contains(&n),
                    "EXPUNGE {n} of {} messages",
                    self.view.len()
                );
                let gone = self.view.remove(n - 1);
                self.expunges += 1;
                if gone.uid != 0 {
                    self.expunged.insert(gone.uid);
                }
            }
            "FETCH" => self.fetched(n, data)?,
            "RECENT" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `* n FETCH (… UID u … FLAGS (…) …)`: checks the UID against the model and records the flags.
    fn fetched(&mut self, n: usize, data: &str) -> Result<()> {
        ensure!(
            (1..=self.view.len()).contains(&n),
            "FETCH for message {n} of {}",
            self.view.len()
        );
        let uid = after(data, "UID ")
            .map(|s| {
                s.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .map(|d| d.parse::<u32>())
            .transpose()
            .context("a bad UID")?;
        let flags = after(data, "FLAGS (").map(|s| {
            s.split(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .filter(|f| *f != "\\Recent")
                .map(str::to_owned)
                .collect::<BTreeSet<_>>()
        });
        if let Some(uid) = uid {
            ensure!(uid > 0, "UID 0");
            ensure!(
                !self.expunged.contains(&uid),
                "UID {uid} again after its EXPUNGE"
            );
            let known = self.view[n - 1].uid;
            ensure!(
                known == 0 || known == uid,
                "message {n} was UID {known}, now {uid}"
            );
            // Ascending: every known UID before n is smaller, every one after is larger.
            let before = self.view[..n - 1]
                .iter()
                .map(|k| k.uid)
                .filter(|&u| u != 0)
                .max();
            let after_n = self.view[n..]
                .iter()
                .map(|k| k.uid)
                .filter(|&u| u != 0)
                .min();
            ensure!(
                before.is_none_or(|b| b < uid) && after_n.is_none_or(|a| a > uid),
                "UID {uid} at {n} out of order: {:?}",
                self.view.iter().map(|k| k.uid).collect::<Vec<_>>()
            );
            self.view[n - 1].uid = uid;
        }
        self.fetches.push((n, flags.clone()));
        if let Some(flags) = flags {
            self.view[n - 1].flags = Some(flags);
        }
        Ok(())
    }

    /// The whole view, every UID and flag known (a `FETCH 1:* (UID FLAGS)` fills the gaps).
    async fn fill(&mut self) -> Result<()> {
        if self.view.iter().any(|k| k.uid == 0 || k.flags.is_none()) {
            let r = self.run("FETCH 1:* (UID FLAGS)", Kind::NoExpunge).await?;
            ensure!(r.starts_with("OK"), "{}: FETCH {r}", self.name);
        }
        Ok(())
    }

    /// The UID of message `n` (a FETCH first if some UID is not known yet); `None` when the server
    /// left it out, being already expunged by another session.
    async fn known_uid(&mut self, n: usize) -> Result<Option<u32>> {
        self.fill().await?;
        Ok(self.view.get(n - 1).map(|k| k.uid).filter(|&u| u != 0))
    }

    /// After this session expunged or moved `uid`: it is gone from the view once the session polls,
    /// whichever session removed it first (a server may hold back another session's expunge during a
    /// UID command, never past `NOOP`).
    async fn gone_after_poll(&mut self, uid: u32, what: &str) -> Result<()> {
        let r = self.run("NOOP", Kind::Any).await?;
        ensure!(r.starts_with("OK"), "{}: NOOP {r}", self.name);
        ensure!(
            self.view.iter().all(|k| k.uid != uid),
            "{}: UID {uid} still in view after {what}",
            self.name
        );
        Ok(())
    }

    /// One random operation, checked.
    async fn step(&mut self, rng: &mut Rng, issued: &Issued) -> Result<()> {
        let len = self.view.len();
        let pick = rng.below(len) + 1;
        match rng.below(10) {
            0 | 1 => {
                let body = format!(
                    "From: s@example.com\r\nSubject: {} {}\r\n\r\nbody {}\r\n",
                    self.name,
                    rng.next(),
                    rng.next()
                );
                let flag = FLAGS[rng.below(FLAGS.len())];
                let r = self
                    .run(
                        &format!("APPEND INBOX ({flag}) {{{}+}}\r\n{body}", body.len()),
                        Kind::Any,
                    )
                    .await?;
                ensure!(r.starts_with("OK [APPENDUID "), "{}: APPEND {r}", self.name);
                let uid: u32 = r
                    .split_whitespace()
                    .nth(3)
                    .and_then(|u| u.trim_end_matches(']').parse().ok())
                    .with_context(|| format!("APPENDUID in {r}"))?;
                ensure!(
                    issued.lock().unwrap().insert(uid),
                    "UID {uid} handed out twice"
                );
            }
            2 | 3 if len > 0 => {
                self.fill().await?;
                let Some(uid) = self.view.get(pick - 1).map(|k| k.uid) else {
                    return Ok(());
                };
                let flag = FLAGS[rng.below(FLAGS.len())];
                let (op, add) = if rng.below(2) == 0 {
                    ("+FLAGS", true)
                } else {
                    ("-FLAGS", false)
                };
                let r = self
                    .run(&format!("STORE {pick} {op} ({flag})"), Kind::NoExpunge)
                    .await?;
                // The answer carries the message's flags after this change (the message cannot have left
                // this session's view: no EXPUNGE during STORE). Another session's later change to the
                // same message may be reported in the same answer, so one of the FETCHes must show it.
                let shown = r.starts_with("OK")
                    && self
                        .fetches
                        .iter()
                        .filter(|(n, _)| *n == pick)
                        .filter_map(|(_, f)| f.as_ref())
                        .any(|f| f.contains(flag) == add);
                if !shown {
                    // Allowed only for a message another session expunged meanwhile (RFC 3501 §7.4.1:
                    // the server may answer NO, or OK without its FETCH); the next poll must say so.
                    // A message the server already knew to be gone may never have had its UID sent
                    // (FETCH may leave such messages out), so then any EXPUNGE must come.
                    let answer = (r.clone(), self.fetches.clone());
                    let before = self.expunges;
                    let n = self.run("NOOP", Kind::Any).await?;
                    ensure!(n.starts_with("OK"), "{}: NOOP {n}", self.name);
                    ensure!(
                        self.expunged.contains(&uid) || (uid == 0 && self.expunges > before),
                        "{}: STORE {pick} {op} ({flag}) (UID {uid}) answered {answer:?}",
                        self.name
                    );
                }
            }
            4 if len > 0 => {
                let Some(uid) = self.known_uid(pick).await? else {
                    return Ok(());
                };
                let r = self
                    .run(
                        &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
                        Kind::Any,
                    )
                    .await?;
                ensure!(r.starts_with("OK"), "{}: UID STORE {r}", self.name);
                let r = self.run(&format!("UID EXPUNGE {uid}"), Kind::Any).await?;
                ensure!(r.starts_with("OK"), "{}: UID EXPUNGE {r}", self.name);
                self.gone_after_poll(uid, "UID EXPUNGE").await?;
            }
            5 if len > 0 => {
                let Some(uid) = self.known_uid(pick).await? else {
                    return Ok(());
                };
                let r = self
                    .run(&format!("UID MOVE {uid} Archive"), Kind::Any)
                    .await?;
                // Another session may have expunged it meanwhile: then there is nothing to move, still OK.
                ensure!(r.starts_with("OK"), "{}: UID MOVE {r}", self.name);
                self.gone_after_poll(uid, "UID MOVE").await?;
            }
            6 => {
                let (r, other) = self.run_collect("UID SEARCH ALL", Kind::Any).await?;
                ensure!(r.starts_with("OK"), "{}: UID SEARCH {r}", self.name);
                let found: Vec<u32> = other
                    .iter()
                    .filter_map(|l| l.strip_prefix("SEARCH"))
                    .flat_map(|l| l.split_whitespace().map(str::parse::<u32>))
                    .collect::<Result<_, _>>()?;
                ensure!(
                    found.windows(2).all(|w| w[0] < w[1]),
                    "{}: SEARCH not ascending: {found:?}",
                    self.name
                );
                for uid in found {
                    ensure!(
                        !self.expunged.contains(&uid),
                        "{}: SEARCH found UID {uid} after its EXPUNGE",
                        self.name
                    );
                }
            }
            7 if len > 0 => {
                let r = self
                    .run(&format!("FETCH {pick}:* (UID FLAGS)"), Kind::NoExpunge)
                    .await?;
                ensure!(r.starts_with("OK"), "{}: FETCH {r}", self.name);
            }
            _ => {
                let r = self.run("NOOP", Kind::Any).await?;
                ensure!(r.starts_with("OK"), "{}: NOOP {r}", self.name);
            }
        }
        Ok(())
    }
}

/// The text after the first `key` in `data`.
fn after<'a>(data: &'a str, key: &str) -> Option<&'a str> {
    data.find(key).map(|i| &data[i + key.len()..])
}

/// Four sessions × 120 random operations on one mailbox, every response checked as it comes, then
/// every session's picture compared with a new session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_keep_a_consistent_state() -> Result<()> {
    let server = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            allow_plaintext_auth: true,
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(USER, PASSWORD, "Stress").await?;
    let addr = server.addrs.mail.imap.expect("a TestServer binds IMAP");
    let seed = std::env::var("MSGR_IMAP_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1a9a_2026_1129_u64);
    eprintln!("seed {seed} (MSGR_IMAP_STRESS_SEED replays it)");

    let mut setup = Session::open(addr, "setup".into()).await?;
    let r = setup.run("CREATE Archive", Kind::Any).await?;
    ensure!(r.starts_with("OK"), "CREATE {r}");

    let issued: Issued = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let issued = issued.clone();
        let mut s = Session::open(addr, format!("session {i}")).await?;
        let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        tasks.push(tokio::spawn(async move {
            for n in 0..STEPS {
                s.step(&mut rng, &issued)
                    .await
                    .with_context(|| format!("{} step {n}", s.name))?;
            }
            Ok::<_, anyhow::Error>(s)
        }));
    }
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(t.await??);
    }
    ensure!(
        issued.lock().unwrap().len() >= SESSIONS * STEPS / 10,
        "too few APPENDs to test anything: {}",
        issued.lock().unwrap().len()
    );

    // The truth, as a new session reads it.
    let mut fresh = Session::open(addr, "fresh".into()).await?;
    fresh.fill().await?;
    ensure!(
        fresh.view.iter().all(|k| k.uid != 0 && k.flags.is_some()),
        "FETCH 1:* left gaps: {:?}",
        fresh.view
    );
    let truth = fresh.view.clone();
    let mut moved_or_expunged = 0;
    for s in &mut sessions {
        // Whatever happened since its last command reaches it now.
        let r = s.run("NOOP", Kind::Any).await?;
        ensure!(r.starts_with("OK"), "{}: NOOP {r}", s.name);
        ensure!(
            s.view.len() == truth.len(),
            "{}: {} messages, a new session sees {}",
            s.name,
            s.view.len(),
            truth.len()
        );
        // Every message it knows must match; the ones it never had a FETCH for are filled now and
        // must match too.
        for (k, t) in s.view.iter().zip(&truth) {
            ensure!(
                k.uid == 0 || k.uid == t.uid,
                "{}: UID {} where a new session sees {}",
                s.name,
                k.uid,
                t.uid
            );
            if k.uid != 0 {
                ensure!(
                    k.flags.is_none() || k.flags == t.flags,
                    "{}: UID {} has flags {:?} from the updates, {:?} in a new session",
                    s.name,
                    k.uid,
                    k.flags,
                    t.flags
                );
            }
        }
        s.fill().await?;
        ensure!(s.view == truth, "{}: {:?} vs {:?}", s.name, s.view, truth);
        moved_or_expunged += s.expunged.len();
    }
    ensure!(moved_or_expunged > 0, "no EXPUNGE was ever seen");
    // What moved is in Archive, every UID there distinct.
    let (r, other) = fresh
        .run_collect("STATUS Archive (MESSAGES)", Kind::Any)
        .await?;
    ensure!(r.starts_with("OK"), "STATUS {r}: {other:?}");
    eprintln!(
        "{} messages appended, {} left in INBOX, {other:?}",
        issued.lock().unwrap().len(),
        truth.len()
    );
    Ok(())
}
