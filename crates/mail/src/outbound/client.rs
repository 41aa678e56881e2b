//! The SMTP client of outbound delivery (RFC 5321 §3 and §4): one session to one host delivers one message to
//! the recipients that host is responsible for, and reports an outcome per recipient.
//!
//! The dialogue: greeting `220`; `EHLO` (`HELO` when the server does not know `EHLO`); `STARTTLS` when the
//! server offers it (RFC 3207), then `EHLO` again over TLS; `MAIL FROM:<sender>` with `SIZE=` when the server
//! announced `SIZE` (RFC 1870); one `RCPT TO` per recipient, each answered on its own; `DATA`, the message with
//! dot-stuffing (§4.5.2) and the final `.`; `QUIT`. Commands go one at a time (no PIPELINING): a message's
//! recipients at one domain are few, and the per-recipient replies stay unambiguous.
//!
//! Every step has the same deadline (`outbound_timeout_secs`); RFC 5321 §4.5.3.2 suggests longer ones (5 minutes
//! for the greeting, 10 for the end of data), which the configuration can give.

use super::reply::{self, Extensions, Reply, ReplyError};
use bytes::{Buf, BytesMut};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one session needs besides the message.
pub struct SessionParams<'a> {
    /// The name this server gives in `EHLO`.
    pub helo_name: &'a str,
    /// The host name of the next hop: the TLS server name and what logs and DSNs call it.
    pub host: &'a str,
    pub addr: SocketAddr,
    /// The deadline for each step.
    pub timeout: Duration,
    /// The TLS client configuration, `None` to never try `STARTTLS`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The envelope of one delivery.
pub struct Envelope<'a> {
    /// The reverse-path, empty for a bounce (`MAIL FROM:<>`).
    pub sender: &'a str,
    pub recipients: &'a [String],
}

/// What happened to one recipient in a session that got as far as `MAIL FROM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The server took responsibility for the message (`250` after the final dot).
    Delivered(Reply),
    /// A `4xx` reply at some step: try again later.
    Transient(Reply),
    /// A `5xx` reply: the message will never be accepted for this recipient.
    Permanent(Reply),
}

impl RcptOutcome {
    fn from_reply(reply: Reply) -> RcptOutcome {
        if reply.is_positive() {
            RcptOutcome::Delivered(reply)
        } else if reply.is_permanent() {
            RcptOutcome::Permanent(reply)
        } else {
            // 4xx, and a 3xx where it makes no sense: both mean "not now".
            RcptOutcome::Transient(reply)
        }
    }
}

/// Why a session ended before it could say anything about the recipients. The queue treats all of them as
/// temporary failures (and tries the next MX host).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("the server sent data after its STARTTLS reply")]
    TlsInjection,
    /// The envelope has internationalized addresses and the server does not support SMTPUTF8: a permanent
    /// failure (RFC 6531 §3.2, status 5.6.7).
    #[error("the server does not support internationalized addresses (SMTPUTF8)")]
    NoSmtpUtf8,
    /// The server refused the session itself (greeting, `EHLO`/`HELO`, `MAIL FROM`). Carried so the queue can
    /// bounce on a `5xx` and report the remote reply.
    #[error("{step} refused: {reply}")]
    Refused { step: &'static str, reply: Reply },
}

/// One SMTP connection: a stream and the bytes read from it that no reply has used yet.
struct Conn<S> {
    stream: S,
    buf: BytesMut,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, timeout: Duration) -> Self {
        Conn {
            stream,
            buf: BytesMut::with_capacity(1024),
            timeout,
        }
    }

    async fn read_reply(&mut self, step: &'static str) -> Result<Reply, ClientError> {
        loop {
            if let Some((reply, used)) = reply::parse(&self.buf)? {
                self.buf.advance(used);
                return Ok(reply);
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ClientError::Timeout(step))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], step: &'static str) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout(step))??;
        Ok(())
    }

    /// Sends one command line and reads its reply.
    async fn command(&mut self, line: &str, step: &'static str) -> Result<Reply, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes, step).await?;
        self.read_reply(step).await
    }

    /// `EHLO`, or `HELO` when the server answers `EHLO` with a `5xx` (an RFC 821 server). The extensions, empty
    /// after `HELO`.
    async fn hello(&mut self, name: &str) -> Result<Extensions, ClientError> {
        let reply = self.command(&format!("EHLO {name}"), "EHLO").await?;
        if reply.is_positive() {
            return Ok(reply.extensions());
        }
        if reply.is_permanent() {
            let reply = self.command(&format!("HELO {name}"), "HELO").await?;
            if reply.is_positive() {
                return Ok(Extensions::default());
            }
            return Err(ClientError::Refused {
                step: "HELO",
                reply,
            });
        }
        Err(ClientError::Refused {
            step: "EHLO",
            reply,
        })
    }

    /// Everything after the greeting and hello: the mail transaction and `QUIT`.
    async fn transaction(
        &mut self,
        ext: Extensions,
        envelope: &Envelope<'_>,
        message: &[u8],
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
        if ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if ext.eight_bit_mime && !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let needs_utf8 =
            !(envelope.sender.is_ascii() && envelope.recipients.iter().all(|r| r.is_ascii()));
        if needs_utf8 && !ext.smtputf8 {
            // RFC 6531 §3.2: internationalized addresses only go to a server that announced SMTPUTF8.
            self.quit().await;
            return Err(ClientError::NoSmtpUtf8);
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let reply = self.command(&mail, "MAIL").await?;
        if !reply.is_positive() {
            self.quit().await;
            return Err(ClientError::Refused {
                step: "MAIL",
                reply,
            });
        }

        // Each recipient's reply to RCPT; those accepted wait for the answer to the data.
        let mut outcomes: Vec<Option<RcptOutcome>> = Vec::with_capacity(envelope.recipients.len());
        for rcpt in envelope.recipients {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>"), "RCPT").await?;
            outcomes.push((!reply.is_positive()).then(|| RcptOutcome::from_reply(reply)));
        }
        if outcomes.iter().all(Option::is_some) {
            // Nobody took it: no DATA (RFC 5321 §3.3 would answer 554 anyway).
            self.quit().await;
            return Ok(outcomes.into_iter().flatten().collect());
        }

        let reply = self.command("DATA", "DATA").await?;
        let final_reply = if reply.is_intermediate() {
            for chunk in dot_stuff(message).chunks(64 * 1024) {
                self.write(chunk, "the message data").await?;
            }
            self.read_reply("the reply to the message data").await?
        } else {
            reply
        };
        self.quit().await;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| RcptOutcome::from_reply(final_reply.clone())))
            .collect())
    }

    /// `QUIT`, politely and without caring for the answer: the outcome is already known.
    async fn quit(&mut self) {
        let _ = self.command("QUIT", "QUIT").await;
    }
}

/// One session with one host: connect, greet, upgrade to TLS when offered, deliver. The outcomes are in the
/// order of `envelope.recipients`.
///
/// When the TLS handshake fails the session is tried once more without TLS, as MTAs do for opportunistic TLS:
/// a server with a broken certificate setup still gets its mail, exactly as it would without `STARTTLS`.
pub async fn deliver(
    params: &SessionParams<'_>,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Result<Vec<RcptOutcome>, ClientError> {
    match session(params, envelope, message, params.tls.clone()).await {
        Err(ClientError::Tls(e)) => {
            tracing::info!(host = params.host, error = %e, "TLS handshake failed; trying again without TLS");
            session(params, envelope, message, None).await
        }
        other => other,
    }
}

async fn session(
    params: &SessionParams<'_>,
    envelope: &Envelope<'_>,
    message: &[u8],
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Vec<RcptOutcome>, ClientError> {
    let tcp = tokio::time::timeout(params.timeout, TcpStream::connect(params.addr))
        .await
        .map_err(|_| ClientError::Timeout("the connection"))?
        .map_err(|e| ClientError::Connect(params.addr, e))?;
    let mut conn = Conn::new(tcp, params.timeout);
    let greeting = conn.read_reply("the greeting").await?;
    if !greeting.is_positive() {
        conn.quit().await;
        return Err(ClientError::Refused {
            step: "the greeting",
            reply: greeting,
        });
    }
    let ext = conn.hello(params.helo_name).await?;
    let Some(tls) = tls.filter(|_| ext.starttls) else {
        return conn.transaction(ext, envelope, message).await;
    };
    let reply = conn.command("STARTTLS", "STARTTLS").await?;
    if !reply.is_positive() {
        // Offered but refused: go on in plaintext, as without the offer.
        return conn.transaction(ext, envelope, message).await;
    }
    if !conn.buf.is_empty() {
        // RFC 3207 §5: anything sent before the handshake could have been injected by a man in the middle.
        return Err(ClientError::TlsInjection);
    }
    let name = ServerName::try_from(params.host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(params.addr.ip().into()));
    let connector = tokio_rustls::TlsConnector::from(tls);
    let stream = tokio::time::timeout(params.timeout, connector.connect(name, conn.stream))
        .await
        .map_err(|_| ClientError::Timeout("the TLS handshake"))?
        .map_err(ClientError::Tls)?;
    let mut conn = Conn::new(stream, params.timeout);
    // RFC 3207 §4.2: forget what was learnt before TLS and ask again.
    let ext = conn.hello(params.helo_name).await?;
    conn.transaction(ext, envelope, message).await
}

/// The message as `DATA` sends it: lines end in CRLF (a bare LF becomes CRLF), a line starting with `.` gets a
/// second one (RFC 5321 §4.5.2, so that no line of the message reads as the end), and the final `.` line.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    if !message.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The TLS client configuration for `STARTTLS`: any certificate is accepted.
///
/// Opportunistic TLS between MTAs (RFC 3207, RFC 7435) protects against passive eavesdropping only: without
/// DANE or MTA-STS there is no name to check a certificate against (the MX host name comes from unauthenticated
/// DNS), so MTAs encrypt whatever certificate the server shows, and a failed check would only push the mail
/// back to plaintext. Handshake signatures are still verified, so the session is bound to the presented key.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A verifier that trusts every certificate but checks the handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(
            dot_stuff(b"Subject: x\r\n\r\n.\r\n..two\nbare lf\r\n. x"),
            b"Subject: x\r\n\r\n..\r\n...two\r\nbare lf\r\n.. x\r\n.\r\n"
        );
    }

    /// A scripted server: for each command line it reads, the next canned reply. Returns what it read.
    async fn fake_server(
        replies: Vec<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let mut seen = Vec::new();
            let mut replies = replies.into_iter();
            w.write_all(b"220 fake ESMTP\r\n").await.expect("greet");
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.expect("read") == 0 {
                    break;
                }
                seen.push(line.trim_end().to_owned());
                if in_data && line != ".\r\n" {
                    continue;
                }
                let was_data = line == "DATA\r\n";
                let Some(reply) = replies.next() else { break };
                in_data = was_data && reply.starts_with("354");
                if line == ".\r\n" {
                    in_data = false;
                }
                w.write_all(reply.as_bytes()).await.expect("reply");
            }
            seen
        });
        (addr, task)
    }

    fn params(addr: SocketAddr) -> SessionParams<'static> {
        SessionParams {
            helo_name: "me.test",
            host: "fake.test",
            addr,
            timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    #[tokio::test]
    async fn per_recipient_outcomes() {
        let (addr, server) = fake_server(vec![
            "250-fake\r\n250-SIZE 100000\r\n250 STARTTLS\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "450 4.2.1 mailbox busy\r\n",
            "550 5.1.1 no such user\r\n",
            "354 go on\r\n",
            "250 2.0.0 queued\r\n",
            "221 bye\r\n",
        ])
        .await;
        let recipients = vec![
            "a@x.test".to_owned(),
            "b@x.test".to_owned(),
            "c@x.test".to_owned(),
        ];
        let message = b"Subject: hi\r\n\r\n.leading dot\r\n";
        let outcomes = deliver(
            &params(addr),
            &Envelope {
                sender: "s@me.test",
                recipients: &recipients,
            },
            message,
        )
        .await
        .expect("session");
        assert!(matches!(&outcomes[0], RcptOutcome::Delivered(r) if r.code == 250));
        assert!(matches!(&outcomes[1], RcptOutcome::Transient(r) if r.code == 450));
        assert!(matches!(&outcomes[2], RcptOutcome::Permanent(r) if r.status() == "5.1.1"));
        let seen = server.await.expect("server");
        assert_eq!(
            seen,
            [
                "EHLO me.test",
                "MAIL FROM:<s@me.test> SIZE=29",
                "RCPT TO:<a@x.test>",
                "RCPT TO:<b@x.test>",
                "RCPT TO:<c@x.test>",
                "DATA",
                "Subject: hi",
                "",
                "..leading dot",
                ".",
                "QUIT",
            ]
        );
    }

    #[tokio::test]
    async fn helo_fallback_and_refused_sender() {
        let (addr, server) = fake_server(vec![
            "502 what\r\n",
            "250 hello\r\n",
            "553 5.7.1 sender refused\r\n",
            "221 bye\r\n",
        ])
        .await;
        let recipients = vec!["a@x.test".to_owned()];
        let err = deliver(
            &params(addr),
            &Envelope {
                sender: "",
                recipients: &recipients,
            },
            b"x\r\n",
        )
        .await
        .expect_err("refused");
        assert!(
            matches!(&err, ClientError::Refused { step: "MAIL", reply } if reply.code == 553),
            "{err}"
        );
        let seen = server.await.expect("server");
        assert_eq!(
            seen,
            ["EHLO me.test", "HELO me.test", "MAIL FROM:<>", "QUIT"]
        );
    }

    #[tokio::test]
    async fn internationalized_addresses_need_smtputf8() {
        let (addr, server) = fake_server(vec!["250 fake\r\n", "221 bye\r\n"]).await;
        let recipients = vec!["jos\u{e9}@x.test".to_owned()];
        let err = deliver(
            &params(addr),
            &Envelope {
                sender: "s@me.test",
                recipients: &recipients,
            },
            b"x\r\n",
        )
        .await
        .expect_err("no SMTPUTF8");
        assert!(matches!(err, ClientError::NoSmtpUtf8), "{err}");
        assert_eq!(server.await.expect("server"), ["EHLO me.test", "QUIT"]);
    }

    #[tokio::test]
    async fn a_dead_server_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let recipients = vec!["a@x.test".to_owned()];
        let err = deliver(
            &params(addr),
            &Envelope {
                sender: "s@me.test",
                recipients: &recipients,
            },
            b"x\r\n",
        )
        .await
        .expect_err("nobody listens");
        assert!(matches!(err, ClientError::Connect(..)), "{err}");
    }
}
