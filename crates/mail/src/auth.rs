//! Sender authentication on the MX (mail-auth): SPF (RFC 7208) for the `MAIL FROM` identity, DKIM
//! (RFC 6376) for every signature, DMARC (RFC 7489) alignment and the domain's policy. The results
//! become one `Authentication-Results` header (RFC 8601) on the stored message and hits in the spam
//! score; a DMARC failure under `p=reject` is refused at `DATA` (`550 5.7.1`) when `[mail]
//! dmarc_enforce` is set, and otherwise sends the message to `Junk` like `p=quarantine` does.
//!
//! The DNS blocklists of `[mail] dnsbl` ([`crate::dnsbl`]) are asked here too, beside these checks and
//! through the same resolver, and add their hits to the same verdict; they run even with `[mail]
//! sender_auth = false`.
//!
//! mail-auth brings its own resolver; `[mail] auth_dns` points it at given servers (tests run one on
//! loopback), else it reads the system's `resolv.conf`.

use crate::dnsbl::Blocklists;
use crate::MailConfig;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};
use msgr_spam::Hit;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The resolver could not be set up (no usable `resolv.conf`).
#[derive(Debug, thiserror::Error)]
#[error("no resolver for sender authentication: {0}")]
pub struct AuthSetupError(String);

/// What sender authentication found about one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthVerdict {
    /// The `Authentication-Results: …` line, CRLF-terminated.
    pub header: String,
    /// Points for the spam score (failures add, a DMARC pass subtracts a little).
    pub hits: Vec<Hit>,
    /// DMARC failed and the domain asks receivers to reject.
    pub dmarc_reject: bool,
    /// DMARC failed and the domain asks for quarantine or rejection: the message belongs in `Junk`.
    pub dmarc_junk: bool,
    /// DMARC failed under any policy: the `From` address is not the sender's to use (allow-list entries
    /// for it are not honoured).
    pub dmarc_fail: bool,
}

/// The MX's authenticator: one resolver (with its cache) shared by every session.
pub struct SenderAuth {
    auth: MessageAuthenticator,
    /// The `authserv-id` of the header: this server's name.
    hostname: String,
    /// `[mail] sender_auth`: SPF, DKIM and DMARC are checked. Off, only the blocklists are asked.
    sender_auth: bool,
    /// `[mail] dnsbl`, when it names any zone.
    blocklists: Option<Blocklists>,
}

impl SenderAuth {
    /// The checks `config` asks for (`sender_auth`, `dnsbl`), through `config.auth_dns` over UDP, or the
    /// system's resolvers when that is empty.
    pub fn new(config: &MailConfig, hostname: &str) -> Result<SenderAuth, AuthSetupError> {
        let servers: &[SocketAddr] = &config.auth_dns;
        let auth = if servers.is_empty() {
            MessageAuthenticator::new_system_conf().map_err(|e| AuthSetupError(e.to_string()))?
        } else {
            let mut config =
                ResolverConfig::from_parts(None, vec![], Vec::<NameServerConfig>::new());
            for s in servers {
                config.add_name_server(NameServerConfig::new(*s, ProtocolConfig::Udp));
            }
            let mut opts = ResolverOpts::default();
            opts.timeout = Duration::from_secs(5);
            opts.attempts = 2;
            opts.use_hosts_file = ResolveHosts::Never;
            MessageAuthenticator::new(config, opts).map_err(|e| AuthSetupError(e.to_string()))?
        };
        Ok(SenderAuth {
            auth,
            hostname: hostname.to_owned(),
            sender_auth: config.sender_auth,
            blocklists: Blocklists::new(config),
        })
    }

    /// Checks one message: `ip` and `helo` of the client, `mail_from` its reverse-path (empty for
    /// bounces: SPF then checks the HELO name), `message` the bytes it sent. The blocklists are asked
    /// while SPF, DKIM and DMARC run.
    pub async fn check(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
    ) -> AuthVerdict {
        let blocklisted = async {
            match &self.blocklists {
                Some(lists) => lists.check(self.auth.resolver(), ip).await,
                None => Vec::new(),
            }
        };
        let authenticated = async {
            if self.sender_auth {
                self.authenticate(ip, helo, mail_from, message).await
            } else {
                AuthVerdict::default()
            }
        };
        let (mut verdict, listed) = tokio::join!(authenticated, blocklisted);
        verdict.hits.extend(listed);
        verdict
    }

    /// SPF, DKIM, ARC and DMARC.
    async fn authenticate(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
    ) -> AuthVerdict {
        let sender = if mail_from.is_empty() {
            format!("postmaster@{helo}")
        } else {
            mail_from.to_owned()
        };
        let spf = self
            .auth
            .verify_spf(SpfParameters::verify_mail_from(
                ip,
                helo,
                &self.hostname,
                &sender,
            ))
            .await;
        let mut results = AuthenticationResults::new(&self.hostname)
            .with_spf_mailfrom_result(&spf, ip, &sender, helo);
        let mut hits = Vec::new();
        match spf.result() {
            SpfResult::Fail => hits.push(Hit {
                name: "SPF_FAIL",
                score: 2.0,
            }),
            SpfResult::SoftFail => hits.push(Hit {
                name: "SPF_SOFTFAIL",
                score: 1.0,
            }),
            _ => {}
        }
        let mut verdict = AuthVerdict::default();
        if let Some(parsed) = AuthenticatedMessage::parse(message) {
            let dkim = self.auth.verify_dkim(&parsed).await;
            let header_from = parsed.from.first().cloned().unwrap_or_default();
            results = results.with_dkim_results(&dkim, &header_from);
            // ARC (RFC 8617): the chain of seals forwarders added. Recorded for the user and for filters
            // downstream; msgr forwards nothing, so it never seals, and a broken chain only costs points.
            let arc = self.auth.verify_arc(&parsed).await;
            results = results.with_arc_result(&arc, ip);
            if matches!(arc.result(), DkimResult::Fail(_) | DkimResult::PermError(_)) {
                hits.push(Hit {
                    name: "ARC_INVALID",
                    score: 1.0,
                });
            }
            // A body that no longer matches its signature is `neutral` in mail-auth's terms; for the score
            // it is as bad as a signature that fails.
            if dkim.iter().any(|d| {
                matches!(
                    d.result(),
                    DkimResult::Fail(_) | DkimResult::PermError(_) | DkimResult::Neutral(_)
                )
            }) {
                hits.push(Hit {
                    name: "DKIM_INVALID",
                    score: 1.5,
                });
            }
            let mail_from_domain = sender.rsplit_once('@').map_or(helo, |(_, d)| d);
            let dmarc = self
                .auth
                .verify_dmarc(DmarcParameters::new(&parsed, &dkim, mail_from_domain, &spf))
                .await;
            let mut dmarc_part = String::new();
            if !dmarc.domain().is_empty() {
                // RFC 7489 §6.6.2: with a policy record, DMARC fails unless an aligned SPF or DKIM
                // identifier passes. (mail-auth 0.7 reports that case as `none`, so the verdict and its
                // header part are made here.)
                let pass = dmarc.spf_result() == &DmarcResult::Pass
                    || dmarc.dkim_result() == &DmarcResult::Pass;
                let temp = matches!(dmarc.spf_result(), DmarcResult::TempError(_))
                    || matches!(dmarc.dkim_result(), DmarcResult::TempError(_));
                let policy = dmarc.policy();
                let result = if pass {
                    hits.push(Hit {
                        name: "DMARC_PASS",
                        score: -1.0,
                    });
                    "pass"
                } else if temp {
                    "temperror"
                } else {
                    verdict.dmarc_fail = policy != Policy::Unspecified;
                    match policy {
                        Policy::Reject => {
                            verdict.dmarc_reject = true;
                            verdict.dmarc_junk = true;
                            hits.push(Hit {
                                name: "DMARC_REJECT",
                                score: 4.0,
                            });
                            "fail"
                        }
                        Policy::Quarantine => {
                            verdict.dmarc_junk = true;
                            hits.push(Hit {
                                name: "DMARC_QUARANTINE",
                                score: 3.0,
                            });
                            "fail"
                        }
                        Policy::None => {
                            hits.push(Hit {
                                name: "DMARC_FAIL",
                                score: 1.0,
                            });
                            "fail"
                        }
                        // No policy record: nothing to fail.
                        Policy::Unspecified => "none",
                    }
                };
                dmarc_part = format!(
                    ";\r\n\tdmarc={result} header.from={} policy.dmarc={policy}",
                    dmarc.domain()
                );
            }
            verdict.header = format!("Authentication-Results: {results}{dmarc_part}\r\n");
        } else {
            verdict.header = format!("Authentication-Results: {results}\r\n");
        }
        verdict.hits = hits;
        verdict
    }
}
