//! Passport 1.4, the client side: ask the nexus (`PassportURLs` header) where `DALogin` is, then
//! send the credentials and the server's `TWN` challenge there; a `200` carries the ticket in
//! `Authentication-Info: … from-PP='t=…&p=…'`, a `401` means wrong credentials. One request per
//! connection, as the old clients did, and always over HTTPS.

use crate::error::{AuthFailure, ClientError};
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The most of a response we read: Passport answers are a few headers and no body to speak of.
const MAX_RESPONSE: usize = 64 * 1024;

/// An `https://host[:port]/path` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpsUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpsUrl {
    /// `DALogin` comes without a scheme (`host/login2.srf`); clients prefix `https://`.
    pub fn parse(url: &str) -> Result<HttpsUrl, ClientError> {
        let rest = match url.split_once("://") {
            Some(("https", rest)) => rest,
            Some((scheme, _)) => {
                return Err(ClientError::Passport(format!(
                    "{scheme}:// is not allowed for Passport (HTTPS only): {url}"
                )))
            }
            None => url,
        };
        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| ClientError::Passport(format!("bad port in {url:?}")))?,
            ),
            None => (hostport, 443),
        };
        if host.is_empty() {
            return Err(ClientError::Passport(format!("no host in {url:?}")));
        }
        Ok(HttpsUrl {
            host: host.to_owned(),
            port,
            path: if path.is_empty() { "/" } else { path }.to_owned(),
        })
    }
}

/// A response head, enough for Passport.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes everything but unreserved characters, as Passport clients did.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) struct Passport {
    pub tls: TlsConnector,
    pub timeout: Duration,
}

impl Passport {
    async fn get(&self, url: &HttpsUrl, extra_headers: &str) -> Result<Response, ClientError> {
        let work = async {
            let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| ClientError::Passport(format!("bad host {:?}: {e}", url.host)))?;
            let mut tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}:{}\r\n{extra_headers}Connection: close\r\n\r\n",
                url.path, url.host, url.port
            );
            tls.write_all(request.as_bytes()).await?;
            tls.flush().await?;
            let mut data = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(resp) = parse_head(&data)? {
                    return Ok(resp);
                }
                let n = tls.read(&mut chunk).await?;
                if n == 0 {
                    return Err(ClientError::Passport(
                        "connection closed before the response head".into(),
                    ));
                }
                if data.len() + n > MAX_RESPONSE {
                    return Err(ClientError::Passport("response head too large".into()));
                }
                data.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// The nexus's `DALogin`, as an HTTPS URL.
    pub async fn dalogin(&self, nexus: &str) -> Result<HttpsUrl, ClientError> {
        let resp = self.get(&HttpsUrl::parse(nexus)?, "").await?;
        if resp.status != 200 {
            return Err(ClientError::Passport(format!(
                "nexus answered {}",
                resp.status
            )));
        }
        let urls = resp
            .header("PassportURLs")
            .ok_or_else(|| ClientError::Passport("nexus sent no PassportURLs".into()))?;
        let dalogin = urls
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("DALogin="))
            .ok_or_else(|| ClientError::Passport(format!("no DALogin in {urls:?}")))?;
        HttpsUrl::parse(dalogin)
    }

    /// Trades the credentials and the `TWN` challenge for a ticket (`t=…&p=…`).
    pub async fn ticket(
        &self,
        dalogin: &HttpsUrl,
        email: &str,
        password: &str,
        challenge: &str,
    ) -> Result<String, ClientError> {
        let auth = format!(
            "Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
             sign-in={},pwd={},{challenge}\r\n",
            percent_encode(email),
            percent_encode(password)
        );
        let resp = self.get(dalogin, &auth).await?;
        match resp.status {
            200 => {}
            401 => {
                return Err(ClientError::Auth(AuthFailure::PassportRefused {
                    status: resp.status,
                }))
            }
            s => return Err(ClientError::Passport(format!("login answered {s}"))),
        }
        let info = resp.header("Authentication-Info").ok_or_else(|| {
            ClientError::Passport("200 from login without Authentication-Info".into())
        })?;
        info.split_once("from-PP='")
            .and_then(|(_, rest)| rest.split('\'').next())
            .filter(|t| t.starts_with("t=") && t.contains("&p="))
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Passport(format!("no ticket in {info:?}")))
    }
}

/// A complete response head in `data`, if there is one (the body is not needed).
fn parse_head(data: &[u8]) -> Result<Option<Response>, ClientError> {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&data[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Passport(format!("bad status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Response { status, headers }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let u = HttpsUrl::parse("127.0.0.1:8443/login2.srf").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8443, "/login2.srf")
        );
        let u = HttpsUrl::parse("https://login.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/"));
        assert!(HttpsUrl::parse("http://x/y").is_err());
        assert!(HttpsUrl::parse("https://x:notaport/").is_err());
    }

    #[test]
    fn heads() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
        let r = parse_head(b"HTTP/1.1 200 OK\r\nPassportURLs: DALogin=a/b\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("passporturls"), Some("DALogin=a/b"));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
