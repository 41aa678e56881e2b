//! A minimal Passport 1.4 client: the nexus redirect and `login2.srf`, over HTTP or HTTPS,
//! one request per connection (as the old clients did).

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Client {
    tls: TlsConnector,
}

struct Url<'a> {
    https: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse_url(url: &str) -> Result<Url<'_>> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        // DALogin comes without a scheme; clients add https://.
        (true, url)
    };
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().context("bad port")?),
        None => (hostport, if https { 443 } else { 80 }),
    };
    Ok(Url {
        https,
        host,
        port,
        path: if path.is_empty() { "/" } else { path },
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(ca: Option<&Path>) -> Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = ca {
            for cert in CertificateDer::pem_file_iter(ca).context("reading --ca")? {
                roots.add(cert.context("reading --ca")?)?;
            }
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn get(&self, url: &str, extra_headers: &str) -> Result<String> {
        let u = parse_url(url)?;
        let tcp = TcpStream::connect((u.host, u.port))
            .await
            .with_context(|| format!("connecting to {}:{}", u.host, u.port))?;
        tcp.set_nodelay(true)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n{extra_headers}Connection: close\r\n\r\n",
            u.path, u.host
        );
        if u.https {
            let name = ServerName::try_from(u.host.to_owned())?;
            let tls = self.tls.connect(name, tcp).await?;
            exchange(tls, &request).await
        } else {
            exchange(tcp, &request).await
        }
    }

    /// Asks the nexus where to log in.
    pub async fn dalogin(&self, nexus: &str) -> Result<String> {
        let head = self.get(nexus, "").await?;
        let urls = header(&head, "PassportURLs").context("nexus sent no PassportURLs")?;
        let dalogin = urls
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("DALogin="))
            .context("PassportURLs without DALogin")?;
        Ok(dalogin.to_owned())
    }

    /// Trades the password for a ticket (`t=…&p=…`).
    pub async fn login(
        &self,
        dalogin: &str,
        email: &str,
        password: &str,
        twn: &str,
    ) -> Result<String> {
        let auth = format!(
            "Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,sign-in={},pwd={},{twn}\r\n",
            percent_encode(email),
            percent_encode(password)
        );
        let head = self.get(dalogin, &auth).await?;
        let info = header(&head, "Authentication-Info").context("login refused")?;
        let Some((_, rest)) = info.split_once("from-PP='") else {
            bail!("no from-PP in {info:?}")
        };
        Ok(rest.split('\'').next().unwrap_or_default().to_owned())
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> Result<String> {
    s.write_all(request.as_bytes()).await?;
    let mut resp = Vec::new();
    // Responses here carry no body; read until the server closes.
    let _ = s.read_to_end(&mut resp).await;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
