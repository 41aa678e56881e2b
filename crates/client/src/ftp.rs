//! MSNFTP: file transfer between two clients, outside the servers.
//!
//! The invitation travels as a switchboard message of type `text/x-msmsgsinvite` whose body is
//! `Name: value` lines. The sender offers (`Invitation-Command: INVITE` with
//! `Application-Name`, `Application-GUID` {5D3E02AB-…}, `Invitation-Cookie`, `Application-File`,
//! `Application-FileSize`); the receiver answers `ACCEPT` (or `CANCEL` with a `Cancel-Code`);
//! the sender then sends a second `ACCEPT` carrying `IP-Address`, `Port` and `AuthCookie`, and
//! listens there. The receiver connects and the two speak lines without TrIDs:
//!
//! | receiver | sender |
//! |---|---|
//! | `VER MSNFTP` | `VER MSNFTP` |
//! | `USR email authcookie` | `FIL size` |
//! | `TFR` | data blocks: `0 lo hi` + up to 2045 bytes; `1 0 0` to cancel |
//! | `BYE 16777989` when every byte arrived, or `CCL` to cancel | closes |
//!
//! Only the sender listening is implemented (the receiver never serves).

use crate::error::ClientError;
use bytes::{Buf, BytesMut};
use msgr_proto::frame::{Frame, FrameDecoder, Limits, Peer};
use msgr_proto::mime::MimeBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The file-transfer application's GUID in invitations.
pub const FILE_TRANSFER_GUID: &str = "{5D3E02AB-6190-11d3-BBBB-00C04F795683}";
/// The largest data block, as the official client sent them.
pub const MAX_BLOCK: usize = 2045;
/// `BYE` reason: the file arrived whole.
pub const BYE_RECEIVED: &str = "16777989";
pub const CONTENT_TYPE: &str = "text/x-msmsgsinvite";

/// How far a transfer has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub transferred: u64,
    pub total: u64,
}

/// Called after every data block.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

fn payload(fields: &[(&str, String)]) -> Vec<u8> {
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(k);
        body.push_str(": ");
        body.push_str(&v.replace(['\r', '\n'], " "));
        body.push_str("\r\n");
    }
    body.push_str("\r\n");
    MimeBuilder::new()
        .header("Content-Type", format!("{CONTENT_TYPE}; charset=UTF-8"))
        .body(body.into_bytes())
        .to_bytes()
}

pub(crate) fn invite(cookie: &str, file_name: &str, size: u64) -> Vec<u8> {
    payload(&[
        ("Application-Name", "File Transfer".into()),
        ("Application-GUID", FILE_TRANSFER_GUID.into()),
        ("Invitation-Command", "INVITE".into()),
        ("Invitation-Cookie", cookie.into()),
        ("Application-File", file_name.into()),
        ("Application-FileSize", size.to_string()),
        ("Connectivity", "N".into()),
    ])
}

/// The receiver's `ACCEPT`.
pub(crate) fn accept(cookie: &str) -> Vec<u8> {
    payload(&[
        ("Invitation-Command", "ACCEPT".into()),
        ("Invitation-Cookie", cookie.into()),
        ("Launch-Application", "FALSE".into()),
        ("Request-Data", "IP-Address:".into()),
    ])
}

/// The sender's `ACCEPT`, naming where it listens.
pub(crate) fn accept_with_address(cookie: &str, addr: SocketAddr, auth_cookie: u32) -> Vec<u8> {
    payload(&[
        ("Invitation-Command", "ACCEPT".into()),
        ("Invitation-Cookie", cookie.into()),
        ("IP-Address", addr.ip().to_string()),
        ("Port", addr.port().to_string()),
        ("AuthCookie", auth_cookie.to_string()),
        ("Launch-Application", "FALSE".into()),
        ("Request-Data", "IP-Address:".into()),
    ])
}

pub(crate) fn cancel(cookie: &str, code: &str) -> Vec<u8> {
    payload(&[
        ("Invitation-Command", "CANCEL".into()),
        ("Invitation-Cookie", cookie.into()),
        ("Cancel-Code", code.into()),
    ])
}

/// A data block's three-byte header.
pub fn block_header(len: usize) -> [u8; 3] {
    let len = len.min(MAX_BLOCK) as u16;
    [0, (len & 0xff) as u8, (len >> 8) as u8]
}

/// What a block header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Data(usize),
    /// `1 0 0`: the sender cancelled.
    Cancel,
}

pub fn parse_block_header(h: [u8; 3]) -> Block {
    if h[0] != 0 {
        Block::Cancel
    } else {
        Block::Data(usize::from(h[1]) | usize::from(h[2]) << 8)
    }
}

/// MSNFTP's text lines, framed by the MSNP codec (they are MSNP-shaped, without TrIDs).
struct Lines<S> {
    stream: S,
    buf: BytesMut,
    decoder: FrameDecoder,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lines<S> {
    fn new(stream: S, peer: Peer, timeout: Duration) -> Self {
        Lines {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(
                peer,
                Limits {
                    max_line: 1024,
                    max_payload: 0,
                },
            ),
            timeout,
        }
    }

    async fn read(&mut self) -> Result<Frame, ClientError> {
        let work = async {
            loop {
                if let Some(f) = self.decoder.decode(&mut self.buf)? {
                    return Ok(f);
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(ClientError::Closed);
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        self.stream.write_all(line.as_bytes()).await?;
        self.stream.write_all(b"\r\n").await?;
        Ok(())
    }

    async fn expect(&mut self, command: &'static str) -> Result<Frame, ClientError> {
        let f = self.read().await?;
        if f.command() == command {
            Ok(f)
        } else if f.command() == "CCL" {
            Err(ClientError::Cancelled)
        } else {
            Err(ClientError::protocol(command, f.line()))
        }
    }
}

/// The sender's side: accept one connection on `listener`, check the receiver's `USR`, send
/// the file, wait for `BYE`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    receiver: String,
    auth_cookie: u32,
    path: PathBuf,
    size: u64,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let stream = tokio::select! {
        a = tokio::time::timeout(timeout, listener.accept()) => {
            a.map_err(|_| ClientError::Timeout(timeout))??.0
        }
        _ = cancel.cancelled() => return Err(ClientError::Cancelled),
    };
    drop(listener);
    stream.set_nodelay(true)?;
    let mut lines = Lines::new(stream, Peer::Client, timeout);
    let ver = lines.expect("VER").await?;
    if !ver.args().any(|a| a == "MSNFTP") {
        return Err(ClientError::protocol("VER MSNFTP", ver.line()));
    }
    lines.send("VER MSNFTP").await?;
    let usr = lines.expect("USR").await?;
    let ok = match usr.args().collect::<Vec<_>>().as_slice() {
        [email, cookie] => {
            email.eq_ignore_ascii_case(&receiver) && *cookie == auth_cookie.to_string()
        }
        _ => false,
    };
    if !ok {
        return Err(ClientError::Transfer(format!(
            "wrong receiver or cookie: {:?}",
            usr.line()
        )));
    }
    lines.send(&format!("FIL {size}")).await?;
    lines.expect("TFR").await?;

    let mut file = tokio::fs::File::open(&path).await?;
    let mut sent = 0u64;
    let mut block = vec![0u8; MAX_BLOCK];
    while sent < size {
        if cancel.is_cancelled() {
            let _ = lines.stream.write_all(&[1, 0, 0]).await;
            return Err(ClientError::Cancelled);
        }
        let want = usize::try_from(size - sent)
            .unwrap_or(MAX_BLOCK)
            .min(MAX_BLOCK);
        file.read_exact(&mut block[..want]).await?;
        let write = async {
            lines.stream.write_all(&block_header(want)).await?;
            lines.stream.write_all(&block[..want]).await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        sent += want as u64;
        if let Some(p) = &progress {
            p(Progress {
                transferred: sent,
                total: size,
            });
        }
    }
    lines.stream.flush().await?;
    // The receiver says BYE once it has everything (or CCL if it gave up).
    let bye = lines.expect("BYE").await?;
    if bye.args().next() != Some(BYE_RECEIVED) {
        return Err(ClientError::Transfer(format!(
            "receiver ended with {:?}",
            bye.line()
        )));
    }
    Ok(sent)
}

/// The receiver's side: connect, identify, read `size` bytes into `dest`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn receive(
    addr: SocketAddr,
    email: String,
    auth_cookie: String,
    dest: PathBuf,
    size: u64,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let result = receive_inner(
        addr,
        &email,
        &auth_cookie,
        &dest,
        size,
        progress,
        &cancel,
        timeout,
    )
    .await;
    if result.is_err() {
        // Never leave a partial file that looks like the real one.
        let _ = tokio::fs::remove_file(&dest).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn receive_inner(
    addr: SocketAddr,
    email: &str,
    auth_cookie: &str,
    dest: &Path,
    size: u64,
    progress: Option<ProgressFn>,
    cancel: &CancellationToken,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    let mut lines = Lines::new(stream, Peer::Server, timeout);
    lines.send("VER MSNFTP").await?;
    lines.expect("VER").await?;
    lines.send(&format!("USR {email} {auth_cookie}")).await?;
    let fil = lines.expect("FIL").await?;
    let announced: u64 = fil
        .args()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::protocol("FIL size", fil.line()))?;
    if announced != size {
        let _ = lines.send("CCL").await;
        return Err(ClientError::Transfer(format!(
            "FIL {announced} but the invitation said {size} bytes"
        )));
    }
    lines.send("TFR").await?;
    let mut file = tokio::fs::File::create(dest).await?;
    let Lines {
        mut stream,
        mut buf,
        ..
    } = lines;
    let mut got = 0u64;
    while got < size {
        let read_block = async {
            while buf.len() < 3 {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(ClientError::Closed);
                }
            }
            let header = [buf[0], buf[1], buf[2]];
            buf.advance(3);
            let len = match parse_block_header(header) {
                Block::Cancel => return Err(ClientError::Cancelled),
                Block::Data(len) => len,
            };
            if got + len as u64 > size {
                return Err(ClientError::Transfer("more data than announced".into()));
            }
            while buf.len() < len {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(ClientError::Closed);
                }
            }
            Ok(buf.split_to(len))
        };
        let data = tokio::select! {
            r = tokio::time::timeout(timeout, read_block) => r.map_err(|_| ClientError::Timeout(timeout))??,
            _ = cancel.cancelled() => {
                let _ = stream.write_all(b"CCL\r\n").await;
                return Err(ClientError::Cancelled);
            }
        };
        file.write_all(&data).await?;
        got += data.len() as u64;
        if let Some(p) = &progress {
            p(Progress {
                transferred: got,
                total: size,
            });
        }
    }
    file.flush().await?;
    file.sync_all().await?;
    stream
        .write_all(format!("BYE {BYE_RECEIVED}\r\n").as_bytes())
        .await?;
    let _ = stream.shutdown().await;
    Ok(got)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use msgr_proto::mime::MimeMessage;

    #[test]
    fn block_headers() {
        assert_eq!(block_header(2045), [0, 0xfd, 0x07]);
        assert_eq!(parse_block_header([0, 0xfd, 0x07]), Block::Data(2045));
        assert_eq!(parse_block_header([1, 0, 0]), Block::Cancel);
        assert_eq!(block_header(11), [0, 11, 0]);
    }

    #[test]
    fn invitation_fields_parse_back() {
        let p = invite("42", "a b.txt", 1234);
        let m = MimeMessage::parse(&p).unwrap();
        assert!(m.is_content_type(CONTENT_TYPE));
        let f = m.body_fields().unwrap();
        assert!(f.contains(&("Invitation-Cookie", "42")));
        assert!(f.contains(&("Application-File", "a b.txt")));
        assert!(f.contains(&("Application-FileSize", "1234")));
    }

    #[tokio::test]
    async fn transfer_over_loopback() {
        let dir = std::env::temp_dir().join(format!("msgr-ftp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.bin");
        let dst = dir.join("dst.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Duration::from_secs(5);
        let size = data.len() as u64;
        let sender = tokio::spawn(serve(
            listener,
            "b@x.com".into(),
            7,
            src,
            size,
            None,
            CancellationToken::new(),
            t,
        ));
        let got = receive(
            addr,
            "b@x.com".into(),
            "7".into(),
            dst.clone(),
            size,
            None,
            CancellationToken::new(),
            t,
        )
        .await
        .unwrap();
        assert_eq!(got, size);
        assert_eq!(sender.await.unwrap().unwrap(), size);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        let _ = std::fs::remove_dir_all(dir);
    }
}
