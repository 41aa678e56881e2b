//! DNS blocklists (RFC 5782) on the MX, off unless `[mail] dnsbl` names zones. The client's address,
//! reversed under each zone (`1.2.0.192.zen.example.org.` for 192.0.2.1; 32 nibbles for IPv6), is looked
//! up as an A record: an address in 127.0.0.0/8 means listed, NXDOMAIN (or no A record) means not listed.
//! A listing becomes a spam-score hit (`RCVD_IN_DNSBL_<ZONE>`, `[mail] dnsbl_score` points): the message
//! is judged like any other, lands in `Junk` when the score says so, and is never refused.
//!
//! A zone that fails to answer in time, answers with an error, or answers in 127.255.255.0/24 (the
//! range big lists use to say "query refused", typically to queries relayed by a public resolver) counts
//! as not listing the client: a broken list must not cost mail. Its failure is logged once, until it
//! answers again. Answers are kept per client address for a few minutes, so a client sending many
//! messages is looked up once, not once per message.

use crate::MailConfig;
use mail_auth::hickory_resolver::TokioResolver;
use msgr_spam::Hit;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a client's answers are reused.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Client addresses whose answers are kept at most.
const CACHE_MAX: usize = 4096;

/// The configured lists and what was learnt from them.
pub struct Blocklists {
    zones: Vec<Zone>,
    score: f64,
    timeout: Duration,
    skip_private: bool,
    /// Recent answers by client address: the hits and when they were learnt.
    cache: Mutex<HashMap<IpAddr, (Instant, Vec<Hit>)>>,
}

struct Zone {
    /// Lowercase, without the final dot.
    name: String,
    /// The hit a listing adds.
    hit: &'static str,
    /// The zone's last lookup failed (logged once until it answers again).
    failing: AtomicBool,
}

/// What one zone said about one address.
#[derive(Debug, PartialEq)]
enum Answer {
    Listed(Ipv4Addr),
    NotListed,
    /// No usable answer: the reason, for the log.
    Failed(String),
}

impl Blocklists {
    /// The lists of `[mail] dnsbl`; `None` when there are none (no lookups at all).
    pub fn new(config: &MailConfig) -> Option<Blocklists> {
        let mut zones: Vec<Zone> = Vec::new();
        for zone in &config.dnsbl {
            let name = zone.trim().trim_matches('.').to_ascii_lowercase();
            if name.is_empty() || zones.iter().any(|z| z.name == name) {
                continue;
            }
            zones.push(Zone {
                hit: hit_name(&name),
                name,
                failing: AtomicBool::new(false),
            });
        }
        if zones.is_empty() {
            return None;
        }
        Some(Blocklists {
            zones,
            score: config.dnsbl_score,
            timeout: Duration::from_secs(config.dnsbl_timeout_secs.max(1)),
            skip_private: config.dnsbl_skip_private,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The hits for a client at `ip`: one per zone listing it. Asks every zone at once and waits at most
    /// `[mail] dnsbl_timeout_secs`.
    pub async fn check(&self, resolver: &TokioResolver, ip: IpAddr) -> Vec<Hit> {
        if self.skip_private && is_private(ip) {
            return Vec::new();
        }
        if let Some(hits) = self.cached(ip) {
            return hits;
        }
        let lookups = self.zones.iter().map(|zone| async move {
            let name = query_name(ip, &zone.name);
            let answer = match tokio::time::timeout(self.timeout, lookup(resolver, &name)).await {
                Ok(answer) => answer,
                Err(_) => Answer::Failed(format!("no answer within {:?}", self.timeout)),
            };
            (zone, answer)
        });
        let mut hits = Vec::new();
        for (zone, answer) in futures_util::future::join_all(lookups).await {
            match answer {
                Answer::Failed(error) => {
                    if !zone.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(zone = %zone.name, error = %error, "DNS blocklist failing; counted as not listing until it answers again");
                    }
                    continue;
                }
                Answer::Listed(code) => {
                    tracing::info!(client = %ip, zone = %zone.name, code = %code, "client listed by DNS blocklist");
                    hits.push(Hit {
                        name: zone.hit,
                        score: self.score,
                    });
                }
                Answer::NotListed => {}
            }
            if zone.failing.swap(false, Ordering::Relaxed) {
                tracing::info!(zone = %zone.name, "DNS blocklist answering again");
            }
        }
        self.remember(ip, &hits);
        hits
    }

    fn cached(&self, ip: IpAddr) -> Option<Vec<Hit>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&ip)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, hits)| hits.clone())
    }

    fn remember(&self, ip: IpAddr, hits: &[Hit]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                // A flood of new clients: start over rather than grow.
                cache.clear();
            }
        }
        cache.insert(ip, (Instant::now(), hits.to_vec()));
    }
}

/// One zone's answer for `name`.
async fn lookup(resolver: &TokioResolver, name: &str) -> Answer {
    match resolver.ipv4_lookup(name).await {
        Ok(found) => classify(found.iter().map(|a| a.0)),
        Err(e) if e.is_no_records_found() => Answer::NotListed,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// RFC 5782 §2.1: listed means an A record in 127.0.0.0/8. Answers in 127.255.255.0/24 are the lists'
/// error codes, and answers elsewhere come from resolvers that rewrite NXDOMAIN: neither lists anyone.
fn classify(addresses: impl Iterator<Item = Ipv4Addr>) -> Answer {
    let mut failure = None;
    for a in addresses {
        match a.octets() {
            [127, 255, 255, _] => failure = Some(format!("error code {a}")),
            [127, ..] => return Answer::Listed(a),
            _ => failure = Some(format!("answer {a} outside 127.0.0.0/8")),
        }
    }
    failure.map_or(Answer::NotListed, Answer::Failed)
}

/// The name asked for `ip` in `zone` (fully qualified, so no search domain is appended).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    match ip_v4(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}.")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len() + 1);
            for byte in v6.octets().iter().rev() {
                name.push(hex_digit(byte & 0xf));
                name.push('.');
                name.push(hex_digit(byte >> 4));
                name.push('.');
            }
            name.push_str(zone);
            name.push('.');
            name
        }
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// An IPv4 client seen through a dual-stack socket (`::ffff:192.0.2.1`) as the IPv4 address it is.
fn ip_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private (RFC 1918, RFC 4193 unique local), link-local, shared (RFC 6598), unspecified or
/// broadcast: addresses no public list can say anything about.
pub fn is_private(ip: IpAddr) -> bool {
    match ip_v4(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && b & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
        }
    }
}

/// `RCVD_IN_DNSBL_ZEN_EXAMPLE_ORG` for `zen.example.org`. The spam filter's hits are named by
/// `&'static str`; zone names come from the configuration, so each distinct one is leaked once per
/// process (bounded by the configuration, not by traffic).
fn hit_name(zone: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    names.entry(zone.to_owned()).or_insert_with(|| {
        let suffix: String = zone
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        Box::leak(format!("RCVD_IN_DNSBL_{suffix}").into_boxed_str())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_names_reverse_the_address() {
        let v4: IpAddr = [192, 0, 2, 99].into();
        assert_eq!(query_name(v4, "bl.test"), "99.2.0.192.bl.test.");
        let mapped: IpAddr = "::ffff:192.0.2.99".parse().unwrap();
        assert_eq!(query_name(mapped, "bl.test"), "99.2.0.192.bl.test.");
        // RFC 5782 §2.4's example.
        let v6: IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().unwrap();
        assert_eq!(
            query_name(v6, "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."
        );
    }

    #[test]
    fn private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(is_private(ip), "{private}");
        }
        for public in [
            "192.0.2.1",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(!is_private(ip), "{public}");
        }
    }

    #[test]
    fn answers() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            classify([a("127.0.0.2")].into_iter()),
            Answer::Listed(a("127.0.0.2"))
        );
        assert_eq!(
            classify([a("127.0.0.10"), a("127.0.0.4")].into_iter()),
            Answer::Listed(a("127.0.0.10"))
        );
        assert_eq!(classify(std::iter::empty()), Answer::NotListed);
        assert!(matches!(
            classify([a("127.255.255.254")].into_iter()),
            Answer::Failed(_)
        ));
        assert!(matches!(
            classify([a("198.51.100.7")].into_iter()),
            Answer::Failed(_)
        ));
    }

    #[test]
    fn zones_from_the_configuration() {
        assert!(
            Blocklists::new(&MailConfig::default()).is_none(),
            "off by default"
        );
        let lists = Blocklists::new(&MailConfig {
            dnsbl: vec![
                "Zen.Example.org.".into(),
                "zen.example.org".into(),
                " ".into(),
                "b.test".into(),
            ],
            ..MailConfig::default()
        });
        let names: Vec<(&str, &str)> = lists
            .iter()
            .flat_map(|l| l.zones.iter().map(|z| (z.name.as_str(), z.hit)))
            .collect();
        assert_eq!(
            names,
            [
                ("zen.example.org", "RCVD_IN_DNSBL_ZEN_EXAMPLE_ORG"),
                ("b.test", "RCVD_IN_DNSBL_B_TEST")
            ]
        );
        // The same zone's name is made once.
        assert!(std::ptr::eq(hit_name("b.test"), hit_name("b.test")));
    }
}
