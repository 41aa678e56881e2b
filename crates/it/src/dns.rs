//! A DNS server of the test's own on loopback UDP (`127.0.0.1:0`): the server under test's sender
//! authentication and DNS blocklist lookups are pointed at it with `[mail] auth_dns`, so no test asks
//! outside DNS. It answers TXT and A queries from a fixed [`Zone`], says NXDOMAIN for names it does not
//! know, ignores queries under the zone's `silent` names (a server that does not answer), and keeps the
//! name of every query it received ([`DnsStub::queries`]).
//!
//! The replies follow RFC 1035 §4.1: the question echoed, the answers after it with a compression
//! pointer to the question's name.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the stub knows. Names are lowercase, without the final dot.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    /// One TXT record per name (split into 255-byte strings on the wire).
    pub txt: HashMap<String, String>,
    /// A records.
    pub a: HashMap<String, Vec<Ipv4Addr>>,
    /// Queries for these names and the names under them get no reply at all.
    pub silent: Vec<String>,
}

impl Zone {
    /// A zone of TXT records only.
    pub fn txt(records: impl IntoIterator<Item = (String, String)>) -> Zone {
        Zone {
            txt: records.into_iter().collect(),
            ..Zone::default()
        }
    }

    /// Whether `name` exists: it has records, or names under it do (RFC 8020: an empty non-terminal is
    /// not NXDOMAIN).
    fn knows(&self, name: &str) -> bool {
        let under = format!(".{name}");
        self.txt
            .keys()
            .chain(self.a.keys())
            .any(|k| k == name || k.ends_with(&under))
    }

    fn is_silent(&self, name: &str) -> bool {
        self.silent
            .iter()
            .any(|s| name == s || name.ends_with(&format!(".{s}")))
    }
}

/// The running stub; it stops when dropped.
pub struct DnsStub {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl DnsStub {
    /// Binds `127.0.0.1:0` and answers from `zone` until dropped.
    pub async fn start(zone: Zone) -> Result<DnsStub> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .context("binding the DNS stub")?;
        let addr = socket.local_addr()?;
        let queries = Arc::new(Mutex::new(Vec::new()));
        let log = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Some((name, qtype, end)) = question(&buf[..n]) else {
                    continue;
                };
                log.lock().unwrap().push(name.clone());
                if zone.is_silent(&name) {
                    continue;
                }
                if let Some(reply) = answer(&buf[..n], end, &name, qtype, &zone) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Ok(DnsStub {
            addr,
            queries,
            task,
        })
    }

    /// The names asked so far, in order (lowercase, without the final dot), repeats included.
    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The query's name (lowercase, dot-joined), its type, and where the question section ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// The reply to `query`, whose question (`name`, `qtype`) ends at `question_end`.
fn answer(
    query: &[u8],
    question_end: usize,
    name: &str,
    qtype: u16,
    zone: &Zone,
) -> Option<Vec<u8>> {
    let question = query.get(12..question_end)?;
    let mut rdatas: Vec<(u16, Vec<u8>)> = Vec::new();
    match qtype {
        1 => {
            for ip in zone.a.get(name).into_iter().flatten() {
                rdatas.push((1, ip.octets().to_vec()));
            }
        }
        16 => {
            if let Some(text) = zone.txt.get(name) {
                let mut rdata = Vec::new();
                for chunk in text.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
                rdatas.push((16, rdata));
            }
        }
        _ => {}
    }
    let mut out = Vec::new();
    out.extend_from_slice(query.get(..2)?); // The query's id.
                                            // A response, recursion desired and available; NOERROR or NXDOMAIN.
    out.extend_from_slice(if zone.knows(name) {
        &[0x81, 0x80]
    } else {
        &[0x81, 0x83]
    });
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(rdatas.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for (rtype, rdata) in rdatas {
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]); // class IN, TTL 60 s
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}
