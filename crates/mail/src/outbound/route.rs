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

    /// A DNS server on loopback UDP that answers from a fixed table, and a resolver that asks only it.
    mod fake_dns {
        use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
        use hickory_resolver::name_server::TokioConnectionProvider;
        use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
        use hickory_resolver::proto::rr::rdata::{A, MX};
        use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
        use hickory_resolver::proto::xfer::Protocol;
        use hickory_resolver::TokioResolver;
        use std::net::Ipv4Addr;
        use std::time::Duration;
        use tokio::net::UdpSocket;

        fn name(s: &str) -> Name {
            Name::from_ascii(s).expect("a valid name")
        }

        /// The zone: `mx.test` has two MX hosts, `null.test` a null MX, `nomx.test` only an address,
        /// `gone.test` does not exist.
        fn answer(qname: &str, qtype: RecordType) -> (ResponseCode, Vec<RData>) {
            let mx = |pref, host: &str| RData::MX(MX::new(pref, name(host)));
            let a = |ip: [u8; 4]| RData::A(A(Ipv4Addr::from(ip)));
            match (qname, qtype) {
                ("gone.test.", _) => (ResponseCode::NXDomain, vec![]),
                ("mx.test.", RecordType::MX) => (
                    ResponseCode::NoError,
                    vec![mx(20, "b.mx.test."), mx(10, "a.mx.test.")],
                ),
                ("null.test.", RecordType::MX) => (ResponseCode::NoError, vec![mx(0, ".")]),
                ("a.mx.test.", RecordType::A) | ("nomx.test.", RecordType::A) => {
                    (ResponseCode::NoError, vec![a([127, 0, 0, 7])])
                }
                _ => (ResponseCode::NoError, vec![]),
            }
        }

        pub async fn start() -> TokioResolver {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let addr = socket.local_addr().expect("addr");
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let Some(q) = query.queries().first().cloned() else {
                        continue;
                    };
                    let qname = q.name().to_ascii().to_ascii_lowercase();
                    let (code, rdatas) = answer(&qname, q.query_type());
                    let mut reply = Message::new();
                    reply
                        .set_id(query.id())
                        .set_message_type(MessageType::Response)
                        .set_op_code(query.op_code())
                        .set_recursion_desired(query.recursion_desired())
                        .set_recursion_available(true)
                        .set_response_code(code)
                        .add_query(q.clone());
                    for rdata in rdatas {
                        reply.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
                    }
                    if let Ok(bytes) = reply.to_vec() {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                }
            });
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            let mut builder =
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
            let opts = builder.options_mut();
            opts.attempts = 1;
            opts.timeout = Duration::from_secs(2);
            opts.use_hosts_file = ResolveHosts::Never;
            builder.build()
        }
    }

    #[tokio::test]
    async fn mx_lookups_through_dns() {
        let resolver = fake_dns::start().await;
        let none = BTreeMap::new();
        let resolve = |domain: &'static str| resolve(&none, Some(&resolver), domain, 25);

        let hops = |route| match route {
            Route::Hops(h) => h.into_iter().map(|h: Hop| h.host).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            hops(resolve("mx.test").await.expect("mx")),
            ["a.mx.test", "b.mx.test"]
        );
        // No MX: the domain itself (RFC 5321 §5.1).
        assert_eq!(
            hops(resolve("nomx.test").await.expect("implicit")),
            ["nomx.test"]
        );
        assert!(matches!(
            resolve("null.test").await.expect("null MX"),
            Route::NoMail {
                status: "5.1.10",
                ..
            }
        ));
        assert!(matches!(
            resolve("gone.test").await.expect("NXDOMAIN"),
            Route::NoMail {
                status: "5.1.2",
                ..
            }
        ));

        let a = Hop {
            host: "a.mx.test".into(),
            port: 2525,
        };
        assert_eq!(
            addresses(&a, Some(&resolver)).await.expect("A"),
            [SocketAddr::from(([127, 0, 0, 7], 2525))]
        );
        let ip = Hop {
            host: "127.0.0.9".into(),
            port: 26,
        };
        assert_eq!(
            addresses(&ip, None).await.expect("literal"),
            [SocketAddr::from(([127, 0, 0, 9], 26))]
        );
    }
}
