//! Outbound delivery: the queue runner that takes mail for other domains out of the durable queue and hands it
//! to the next hop by SMTP, with retries and bounces (RFC 5321 §4.5.4.1, §6.1).
//!
//! The queue lives in the store (`MailStore::queue_*`), so it survives restarts and `msgr mail retry` can
//! change it from another process. [`run`] loops: it takes what is due, groups it by message and domain (one
//! SMTP session delivers a message to all its recipients at one domain), runs at most `outbound_concurrency`
//! sessions at once, and records each recipient's outcome:
//!
//! - `2xx` after the data: delivered, the recipient leaves the queue;
//! - `4xx`, or no usable answer (DNS failure, refused connection, timeout): deferred, the next attempt after
//!   `retry_initial_secs`, doubling each time up to `retry_max_secs` ([`backoff_secs`]), until the message is
//!   `queue_lifetime_secs` old, when it fails like a `5xx`;
//! - `5xx`: failed; the recipient leaves the queue and, in the same store transaction, a delivery status
//!   notification ([`dsn`]) goes to the sender.
//!
//! Modules: [`reply`] parses SMTP replies, [`client`] is the SMTP client session, [`route`] finds the next hop.

pub mod client;
pub mod dsn;
pub mod reply;
pub mod route;

use crate::Context;
use client::{ClientError, Envelope, RcptOutcome, SessionParams};
use dsn::Failure;
use hickory_resolver::TokioResolver;
use msgr_store::{MailStore, QueuedRecipient};
use route::Route;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the store is asked for due entries even without a kick: entries deferred earlier become due, and
/// `msgr mail retry` run by another process is noticed within this time.
const POLL: Duration = Duration::from_secs(2);

/// Queue entries taken per look at the store (at least a few times the concurrency).
const BATCH: usize = 256;

/// How long sessions in flight may finish at shutdown before they are cut. One cut after the final dot but
/// before the reply is recorded makes the message go out once more after the restart: RFC 5321 §6.1 accepts
/// such duplicates rather than losses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The delay before the next attempt after `attempts` earlier failed ones: `initial`, doubling, at most `max`.
pub fn backoff_secs(attempts: u32, initial: u64, max: u64) -> u64 {
    let factor = 1u64.checked_shl(attempts).unwrap_or(u64::MAX);
    initial.max(1).saturating_mul(factor).min(max.max(1))
}

/// Runs outbound delivery until `shutdown`. The server spawns it once beside the mail listeners.
///
/// Whoever queues mail wakes it with `ctx.outbound_kick.notify_one()` (a permit is kept when the runner is busy,
/// so no kick is lost); without a kick it still looks at the queue every `POLL` (2 s).
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let resolver = match TokioResolver::builder_tokio() {
        Ok(builder) => Some(Arc::new(builder.build())),
        Err(e) => {
            // Routes still work; mail for other domains waits in the queue until DNS is configured.
            tracing::warn!(error = %e, "no DNS resolver: outbound mail only goes to configured routes");
            None
        }
    };
    let tls = match client::tls_config() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "no TLS for outbound mail");
            None
        }
    };
    let runner = Arc::new(Runner { ctx, resolver, tls });
    let concurrency = runner.ctx.config.outbound_concurrency.max(1);
    let mut tasks = JoinSet::new();
    // The (message, domain) groups being delivered, so that a group still due in the store is not started twice.
    let mut in_flight: HashMap<tokio::task::Id, (i64, String)> = HashMap::new();

    loop {
        if tasks.len() < concurrency {
            let limit = BATCH.max(concurrency * 4);
            let store = runner.ctx.store.clone();
            match tokio::task::spawn_blocking(move || store.queue_due(unix_now(), limit)).await {
                Ok(Ok(due)) => {
                    for (key, recipients) in group(due) {
                        if tasks.len() >= concurrency {
                            break;
                        }
                        if in_flight.values().any(|k| *k == key) {
                            continue;
                        }
                        let id = tasks
                            .spawn(runner.clone().deliver(key.0, key.1.clone(), recipients))
                            .id();
                        in_flight.insert(id, key);
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the outbound queue failed"),
                Err(e) => tracing::warn!(error = %e, "reading the outbound queue failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = runner.ctx.outbound_kick.notified() => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        tracing::error!(error = %e, "an outbound delivery task failed");
                        e.id()
                    }
                };
                in_flight.remove(&id);
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::info!(
            sessions = tasks.len(),
            "outbound sessions cut at shutdown; they will be retried"
        );
        tasks.shutdown().await;
    }
}

/// Recipients per SMTP transaction at most: RFC 5321 §4.5.3.1.8 has servers accept at least 100. The rest of a
/// larger group stay due and go in the next session.
const MAX_RCPTS_PER_SESSION: usize = 100;

/// Due recipients grouped by (queue id, domain), oldest message first as the store listed them, at most
/// [`MAX_RCPTS_PER_SESSION`] per group.
fn group(due: Vec<QueuedRecipient>) -> Vec<((i64, String), Vec<QueuedRecipient>)> {
    let mut order = Vec::new();
    let mut groups: BTreeMap<(i64, String), Vec<QueuedRecipient>> = BTreeMap::new();
    for r in due {
        let key = (r.queue_id, r.domain.to_ascii_lowercase());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        let group = groups.entry(key).or_default();
        if group.len() < MAX_RCPTS_PER_SESSION {
            group.push(r);
        }
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k).map(|g| (k, g)))
        .collect()
}

/// What the delivery tasks share.
struct Runner {
    ctx: Arc<Context>,
    resolver: Option<Arc<TokioResolver>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// One recipient's result of one attempt.
#[derive(Debug)]
enum Attempt {
    Delivered {
        host: String,
        reply: String,
    },
    Deferred {
        host: Option<String>,
        error: String,
        status: String,
        /// The remote reply, when the failure was one: the `Diagnostic-Code` if the message expires.
        reply: Option<String>,
    },
    Failed(Failure),
}

impl Runner {
    /// One attempt to deliver message `queue_id` to its `recipients` at `domain`, and its outcome recorded.
    async fn deliver(
        self: Arc<Self>,
        queue_id: i64,
        domain: String,
        recipients: Vec<QueuedRecipient>,
    ) {
        let store = self.ctx.store.clone();
        let message = match tokio::task::spawn_blocking(move || store.queue_message(queue_id)).await
        {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return, // Delivered or failed meanwhile (another process, or an operator).
            Ok(Err(e)) => {
                tracing::warn!(queue_id, error = %e, "reading a queued message failed");
                return;
            }
            Err(e) => {
                tracing::warn!(queue_id, error = %e, "reading a queued message failed");
                return;
            }
        };
        let Some(sender) = recipients.first().map(|r| r.sender.clone()) else {
            return;
        };
        // Signed as the sender's domain (submission only queues mail from local accounts), at every
        // attempt: the signature's timestamp is then the time it left.
        let message = match (&self.ctx.dkim, sender.rsplit_once('@')) {
            (Some(signer), Some((_, domain))) => match signer.sign(domain, &message) {
                Some(header) => [header.as_bytes(), &message].concat(),
                None => message,
            },
            _ => message,
        };
        let addresses: Vec<String> = recipients.iter().map(|r| r.recipient.clone()).collect();
        let attempts = self.attempt(&domain, &sender, &addresses, &message).await;
        for (r, a) in recipients.iter().zip(&attempts) {
            match a {
                Attempt::Delivered { host, reply } => {
                    tracing::info!(queue_id, recipient = %r.recipient, host = %host, outcome = "delivered", reply = %reply, "outbound attempt")
                }
                Attempt::Deferred { host, error, .. } => {
                    tracing::info!(queue_id, recipient = %r.recipient, host = host.as_deref().unwrap_or("-"), outcome = "deferred", attempts = r.attempts + 1, error = %error, "outbound attempt")
                }
                Attempt::Failed(f) => {
                    tracing::info!(queue_id, recipient = %r.recipient, host = f.remote_mta.as_deref().unwrap_or("-"), outcome = "failed", status = %f.status, error = %f.diagnostic.as_deref().unwrap_or(&f.reason), "outbound attempt")
                }
            }
        }
        let runner = self.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            runner.record(queue_id, &recipients, attempts, &message)
        })
        .await;
        match recorded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(queue_id, error = %e, "recording outbound outcomes failed")
            }
            Err(e) => tracing::error!(queue_id, error = %e, "recording outbound outcomes failed"),
        }
    }

    /// Tries the next hops in order until one gives an answer about the recipients.
    async fn attempt(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Vec<Attempt> {
        let config = &self.ctx.config;
        let resolver = self.resolver.as_deref();
        let deferred_all =
            |host: Option<String>, error: String, status: &str, reply: Option<String>| {
                recipients
                    .iter()
                    .map(|_| Attempt::Deferred {
                        host: host.clone(),
                        error: error.clone(),
                        status: status.to_owned(),
                        reply: reply.clone(),
                    })
                    .collect()
            };
        let hops =
            match route::resolve(&config.routes, resolver, domain, config.outbound_port).await {
                Ok(Route::Hops(hops)) => hops,
                Ok(Route::NoMail { status, reason }) => {
                    return recipients
                        .iter()
                        .map(|r| {
                            Attempt::Failed(Failure {
                                recipient: r.clone(),
                                status: status.to_owned(),
                                remote_mta: None,
                                diagnostic: None,
                                reason: reason.clone(),
                            })
                        })
                        .collect();
                }
                // 4.4.3: directory server failure (RFC 3463).
                Err(e) => return deferred_all(None, e.to_string(), "4.4.3", None),
            };

        let envelope = Envelope { sender, recipients };
        // The last failure: host, error, status, remote reply.
        let mut last: (Option<String>, String, String, Option<String>) =
            (None, "no host to try".to_owned(), "4.4.1".to_owned(), None);
        for hop in &hops {
            let addrs = match route::addresses(hop, resolver).await {
                Ok(a) => a,
                Err(e) => {
                    last = (
                        Some(hop.host.clone()),
                        e.to_string(),
                        "4.4.3".to_owned(),
                        None,
                    );
                    continue;
                }
            };
            for addr in addrs {
                let params = SessionParams {
                    helo_name: &self.ctx.hostname,
                    host: &hop.host,
                    addr,
                    timeout: config.outbound_timeout(),
                    tls: self.tls.clone(),
                };
                match client::deliver(&params, &envelope, message).await {
                    Ok(outcomes) => {
                        return recipients
                            .iter()
                            .zip(outcomes)
                            .map(|(r, o)| from_outcome(r, &hop.host, o))
                            .collect();
                    }
                    // The server refused the whole transaction for good (the greeting, `MAIL FROM`): a
                    // permanent failure for every recipient, with the server's words.
                    Err(ClientError::Refused { reply, .. }) if reply.is_permanent() => {
                        return recipients
                            .iter()
                            .map(|r| {
                                from_outcome(r, &hop.host, RcptOutcome::Permanent(reply.clone()))
                            })
                            .collect();
                    }
                    Err(e @ ClientError::NoSmtpUtf8) => {
                        return recipients
                            .iter()
                            .map(|r| {
                                Attempt::Failed(Failure {
                                    recipient: r.clone(),
                                    status: "5.6.7".to_owned(),
                                    remote_mta: Some(hop.host.clone()),
                                    diagnostic: None,
                                    reason: e.to_string(),
                                })
                            })
                            .collect();
                    }
                    Err(ClientError::Refused { reply, .. }) => {
                        last = (
                            Some(hop.host.clone()),
                            format!("{} said: {reply}", hop.host),
                            reply.status(),
                            Some(reply.to_string()),
                        );
                    }
                    Err(e) => {
                        tracing::info!(host = %hop.host, %addr, error = %e, "outbound session failed; next host");
                        // 4.4.1 no answer from host, 4.4.2 bad connection (RFC 3463).
                        let status = match e {
                            ClientError::Connect(..) | ClientError::Timeout(_) => "4.4.1",
                            _ => "4.4.2",
                        };
                        last = (
                            Some(hop.host.clone()),
                            format!("{}: {e}", hop.host),
                            status.to_owned(),
                            None,
                        );
                    }
                }
            }
        }
        deferred_all(last.0, last.1, &last.2, last.3)
    }

    /// Writes the outcomes to the store: delivered ones leave the queue, temporary failures are deferred (or
    /// fail when the message is too old), permanent ones fail with one notice to the sender for all of them.
    fn record(
        &self,
        queue_id: i64,
        recipients: &[QueuedRecipient],
        attempts: Vec<Attempt>,
        message: &[u8],
    ) -> msgr_store::Result<()> {
        let config = &self.ctx.config;
        let store = &self.ctx.store;
        let now = unix_now();
        // Delivered recipients are recorded first: if the store fails after that, the worst case is a
        // repeated attempt for the others, never a second copy to someone who has the message.
        let delivered: Vec<i64> = recipients
            .iter()
            .zip(&attempts)
            .filter(|(_, a)| matches!(a, Attempt::Delivered { .. }))
            .map(|(r, _)| r.id)
            .collect();
        if !delivered.is_empty() {
            store.queue_delivered(&delivered)?;
        }
        let mut failed = Vec::new();
        let mut failures = Vec::new();
        for (r, a) in recipients.iter().zip(attempts) {
            match a {
                Attempt::Delivered { .. } => {}
                Attempt::Deferred {
                    host,
                    error,
                    status,
                    reply,
                } => {
                    let expires = r.created_at.saturating_add(
                        i64::try_from(config.queue_lifetime_secs).unwrap_or(i64::MAX),
                    );
                    if now >= expires {
                        tracing::info!(queue_id, recipient = %r.recipient, "outbound queue lifetime over; giving up");
                        failed.push(r.id);
                        failures.push(Failure {
                            recipient: r.recipient.clone(),
                            // The last temporary status stands; "delivery time expired" when there was none.
                            status: if status.ends_with(".0.0") { "4.4.7".to_owned() } else { status },
                            remote_mta: host,
                            diagnostic: reply,
                            reason: format!(
                                "delivery kept failing temporarily for longer than the queue keeps mail ({}); \
                                 the last error was: {error}",
                                span(config.queue_lifetime_secs)
                            ),
                        });
                        continue;
                    }
                    let delay =
                        backoff_secs(r.attempts, config.retry_initial_secs, config.retry_max_secs);
                    // The last attempt falls at the end of the lifetime, not a whole interval after it.
                    let next = now
                        .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
                        .min(expires.max(now + 1));
                    store.queue_deferred(&[r.id], next, &error)?;
                }
                Attempt::Failed(f) => {
                    failed.push(r.id);
                    failures.push(f);
                }
            }
        }
        if let (false, Some(first)) = (failed.is_empty(), recipients.first()) {
            let report = dsn::Report {
                hostname: &self.ctx.hostname,
                sender: &first.sender,
                arrival: first.created_at,
                now,
                unique: queue_id,
                failures: &failures,
                original: message,
            };
            // The notice goes to the sender's Inbox when the sender has an account here.
            let local = match &first.account {
                Some(a) => Some(a.clone()),
                None if first.sender.is_empty() => None,
                None => store.mailbox(&first.sender)?.map(|m| m.email),
            };
            let notice = match dsn::delivery(&report, local.as_deref()) {
                Ok(n) => n,
                Err(e) => {
                    // Composing into memory cannot fail in practice; the failure is still recorded.
                    tracing::error!(queue_id, error = %e, "composing a delivery status notification failed");
                    None
                }
            };
            store.queue_failed(&failed, notice.as_ref(), config.quota_bytes)?;
        }
        Ok(())
    }
}

/// A recipient's attempt from the SMTP outcome.
fn from_outcome(recipient: &str, host: &str, outcome: RcptOutcome) -> Attempt {
    match outcome {
        RcptOutcome::Delivered(reply) => Attempt::Delivered {
            host: host.to_owned(),
            reply: reply.to_string(),
        },
        RcptOutcome::Transient(reply) => Attempt::Deferred {
            host: Some(host.to_owned()),
            error: format!("{host} said: {reply}"),
            status: reply.status(),
            reply: Some(reply.to_string()),
        },
        RcptOutcome::Permanent(reply) => Attempt::Failed(Failure {
            recipient: recipient.to_owned(),
            status: reply.status(),
            remote_mta: Some(host.to_owned()),
            diagnostic: Some(reply.to_string()),
            reason: "the remote server refused the message for this recipient".to_owned(),
        }),
    }
}

/// `5 days`, `3 hours`, `90 seconds`: a queue lifetime for people.
fn span(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let schedule: Vec<u64> = (0..8).map(|n| backoff_secs(n, 300, 3 * 3600)).collect();
        assert_eq!(schedule, [300, 600, 1200, 2400, 4800, 9600, 10800, 10800]);
        // No overflow however many attempts.
        assert_eq!(backoff_secs(63, 300, 3600), 3600);
        assert_eq!(backoff_secs(1000, 300, 3600), 3600);
        // A zero interval would be a busy loop.
        assert_eq!(backoff_secs(0, 0, 0), 1);
    }

    fn queued(id: i64, queue_id: i64, recipient: &str) -> QueuedRecipient {
        QueuedRecipient {
            id,
            queue_id,
            sender: "alice@a.test".into(),
            account: Some("alice@a.test".into()),
            recipient: recipient.into(),
            domain: recipient
                .rsplit('@')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase(),
            attempts: 0,
            created_at: 0,
            next_attempt: 0,
            last_error: None,
            size: 10,
        }
    }

    #[test]
    fn one_session_per_message_and_domain() {
        let groups = group(vec![
            queued(1, 10, "a@x.test"),
            queued(2, 10, "b@y.test"),
            queued(3, 10, "c@X.test"),
            queued(4, 11, "d@x.test"),
        ]);
        let summary: Vec<(i64, String, Vec<i64>)> = groups
            .into_iter()
            .map(|((q, d), rs)| (q, d, rs.iter().map(|r| r.id).collect()))
            .collect();
        assert_eq!(
            summary,
            [
                (10, "x.test".to_owned(), vec![1, 3]),
                (10, "y.test".to_owned(), vec![2]),
                (11, "x.test".to_owned(), vec![4]),
            ]
        );
    }

    #[test]
    fn at_most_a_hundred_recipients_per_session() {
        let due: Vec<QueuedRecipient> = (0..150)
            .map(|i| queued(i, 10, &format!("r{i}@x.test")))
            .collect();
        let groups = group(due);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1.len(), MAX_RCPTS_PER_SESSION);
        assert_eq!(
            groups[0].1[99].id, 99,
            "the oldest go first; the rest wait for the next session"
        );
    }
}
