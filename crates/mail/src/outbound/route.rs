//! The next hop for a domain: a configured route (`[mail] routes`, like a transport map), else the domain's MX
//! hosts in preference order (RFC 5321 §5.1), else — when the domain has no MX records — the domain itself as an
//! implicit MX with preference 0. A null MX (RFC 7505: one MX record whose exchange is `.`) says the domain
//! takes no mail at all.

use hickory_resolver::TokioResolver;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// A host to try, with the port to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// A host name (or an IP address, for routes): the TLS server name and what logs and DSNs call it.
    pub host: String,
    pub port: u16,
}

/// Where a domain's mail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Hosts in the order to try them.
    Hops(Vec<Hop>),
    /// The domain says, in DNS, that it accepts no mail (null MX), or it does not exist: a permanent failure.
    NoMail {
        status: &'static str,
        reason: String,
    },
}

/// The lookup could not be made now (no resolver, a DNS server failure or timeout): try again later.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup for {domain} failed: {reason}")]
pub struct RouteError {
    pub domain: String,
    pub reason: String,
}

/// The configured route for `domain` (exact domain, any letter case), as a hop. A route without a port uses
/// `default_port`.
pub fn configured(
    routes: &BTreeMap<String, String>,
    domain: &str,
    default_port: u16,
) -> Option<Hop> {
    let target = routes
        .iter()
        .find(|(d, _)| d.eq_ignore_ascii_case(domain))
        .map(|(_, t)| t.trim())?;
    Some(parse_hop(target, default_port))
}

/// `host:port`, `[v6]:port`, `host` or a bare IPv6 address.
fn parse_hop(target: &str, default_port: u16) -> Hop {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Hop {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
    }
    if target.parse::<IpAddr>().is_ok() {
        return Hop {
            host: target.to_owned(),
            port: default_port,
        };
    }
    match target.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => Hop {
            host: host.trim_matches(['[', ']']).to_owned(),
            port: port.parse().unwrap_or(default_port),
        },
        _ => Hop {
            host: target.to_owned(),
            port: default_port,
        },
    }
}

/// Where `domain`'s mail goes: its route, else its MX records.
pub async fn resolve(
    routes: &BTreeMap<String, String>,
    resolver: Option<&TokioResolver>,
    domain: &str,
    port: u16,
) -> Result<Route, RouteError> {
    if let Some(hop) = configured(routes, domain, port) {
        return Ok(Route::Hops(vec![hop]));
    }
    let failed = |reason: String| RouteError {
        domain: domain.to_owned(),
        reason,
    };
    let resolver = resolver.ok_or_else(|| failed("no DNS resolver is configured".into()))?;
    // A trailing dot makes the name absolute, so the resolver's search list is never appended to it.
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(mx) => {
            let records: Vec<(u16, String)> = mx
                .iter()
                .map(|r| {
                    let name = r.exchange().to_ascii();
                    (r.preference(), name.trim_end_matches('.').to_owned())
                })
                .collect();
            Ok(from_mx(domain, records, port))
        }
        Err(e) if e.is_nx_domain() => Ok(Route::NoMail {
            status: "5.1.2",
            reason: format!("the domain {domain} does not exist"),
        }),
        // No MX records at all: the domain is its own mail host (RFC 5321 §5.1, the implicit MX).
        Err(e) if e.is_no_records_found() => Ok(Route::Hops(vec![Hop {
            host: domain.to_owned(),
            port,
        }])),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The hops of MX records `(preference, exchange)`: lowest preference first. One record with an empty exchange
/// (the root, `.`) is a null MX.
pub fn from_mx(domain: &str, mut records: Vec<(u16, String)>, port: u16) -> Route {
    if records.len() == 1 && records[0].1.is_empty() {
        return Route::NoMail {
            status: "5.1.10",
            reason: format!("{domain} accepts no mail (null MX, RFC 7505)"),
        };
    }
    records.retain(|(_, host)| !host.is_empty());
    if records.is_empty() {
        // Only `.` records among others: nothing usable, which is the same answer.
        return Route::NoMail {
            status: "5.1.10",
            reason: format!("{domain} accepts no mail (null MX, RFC 7505)"),
        };
    }
    // A stable sort keeps the DNS order among equal preferences (the resolver already shuffles them).
    records.sort_by_key(|(pref, _)| *pref);
    Route::Hops(
        records
            .into_iter()
            .map(|(_, host)| Hop { host, port })
            .collect(),
    )
}

/// The addresses of a hop: the IP itself, else its A and AAAA records.
pub async fn addresses(
    hop: &Hop,
    resolver: Option<&TokioResolver>,
) -> Result<Vec<SocketAddr>, RouteError> {
    if let Ok(ip) = hop.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hop.port)]);
    }
    let failed = |reason: String| RouteError {
        domain: hop.host.clone(),
        reason,
    };
    let resolver = resolver.ok_or_else(|| failed("no DNS resolver is configured".into()))?;
    let fqdn = format!("{}.", hop.host.trim_end_matches('.'));
    let ips = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(ips.iter().map(|ip| SocketAddr::new(ip, hop.port)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_the_exact_domain_in_any_case() {
        let mut routes = BTreeMap::new();
        routes.insert("Other.Test".to_owned(), "127.0.0.1:2526".to_owned());
        routes.insert("named.test".to_owned(), "mx.named.test".to_owned());
        routes.insert("v6.test".to_owned(), "[::1]:26".to_owned());
        assert_eq!(
            configured(&routes, "other.TEST", 25),
            Some(Hop {
                host: "127.0.0.1".into(),
                port: 2526
            })
        );
        assert_eq!(configured(&routes, "sub.other.test", 25), None);
        assert_eq!(
            configured(&routes, "named.test", 25),
            Some(Hop {
                host: "mx.named.test".into(),
                port: 25
            })
        );
        assert_eq!(
            configured(&routes, "v6.test", 25),
            Some(Hop {
                host: "::1".into(),
                port: 26
            })
        );
    }

    #[test]
    fn mx_records_in_preference_order() {
        let route = from_mx(
            "x.test",
            vec![
                (20, "b.x.test".into()),
                (10, "a.x.test".into()),
                (20, "c.x.test".into()),
            ],
            25,
        );
        let hosts: Vec<String> = match route {
            Route::Hops(h) => h.into_iter().map(|h| h.host).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(hosts, ["a.x.test", "b.x.test", "c.x.test"]);
    }

    #[test]
    fn null_mx_is_permanent() {
        assert!(matches!(
            from_mx("x.test", vec![(0, String::new())], 25),
            Route::NoMail {
                status: "5.1.10",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_route_needs_no_resolver() {
        let mut routes = BTreeMap::new();
        routes.insert("other.test".to_owned(), "127.0.0.1:2526".to_owned());
        let route = resolve(&routes, None, "other.test", 25)
            .await
            .expect("route");
        assert_eq!(
            route,
            Route::Hops(vec![Hop {
                host: "127.0.0.1".into(),
                port: 2526
            }])
        );
        assert!(resolve(&routes, None, "elsewhere.test", 25).await.is_err());
    }
}
