//! Raw MSNP connections: source-address rotation, connecting, framing with `msgr_proto`.

use crate::msnp;
use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use msgr_proto::frame::{Frame, FrameDecoder, Limits, Peer};
use msgr_proto::Dialect;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

/// How long any single step waits for the server before the scenario gives up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Local source addresses handed out round-robin, so that one process can open more
/// connections than one address has ephemeral ports (about 28k here).
#[derive(Debug)]
pub struct Sources {
    addrs: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl Sources {
    /// `count` addresses 127.0.0.1 … 127.0.0.count (at most 254); 0 lets the OS choose.
    pub fn loopback(count: u8) -> Sources {
        Sources {
            addrs: (1..=count.min(254))
                .map(|i| Ipv4Addr::new(127, 0, 0, i))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next source address, or `None` when the OS chooses.
    pub fn pick(&self) -> Option<Ipv4Addr> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs.get(i % self.addrs.len()).copied()
    }
}

/// Resolves `host:port` to one address (the first the resolver gives).
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))
}

/// A connected MSNP stream, split so one task can read while it writes.
pub struct Conn {
    pub rd: Reader,
    pub wr: OwnedWriteHalf,
    pub next_trid: u32,
}

/// The read half of a connection. It answers a notification server's `CHL` itself, whenever one
/// arrives and whatever the caller is waiting for, so no scenario depends on a challenge coming
/// (or not coming) at a given moment; callers never see `CHL` frames.
pub struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// The dialect of the `QRY` answers (the one negotiated with `VER`).
    dialect: Dialect,
    /// The rest of a `QRY` the socket did not take at once. Written before anything more is
    /// read, and kept here so that a cancelled read loses none of it.
    answer: Vec<u8>,
    /// Transaction ids of our `QRY`s: a range of their own, so the reply (or the lack of one)
    /// never matches a caller's [`Reader::reply`].
    qry_trid: u32,
    /// Challenges answered so far.
    pub challenges: u32,
}

/// The first transaction id of the `QRY`s a [`Reader`] writes by itself.
pub const QRY_TRID_BASE: u32 = 1_000_000_000;

impl Conn {
    /// Connects from the next source address of `sources` (when the target is IPv4).
    pub async fn connect(addr: SocketAddr, sources: &Sources) -> Result<Conn> {
        let socket = match addr.ip() {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let (Some(src), IpAddr::V4(_)) = (sources.pick(), addr.ip()) {
            socket
                .bind(SocketAddr::new(IpAddr::V4(src), 0))
                .with_context(|| format!("binding to {src}"))?;
        }
        let stream = tokio::time::timeout(STEP_TIMEOUT, socket.connect(addr))
            .await
            .with_context(|| format!("timed out connecting to {addr}"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Conn {
            rd: Reader {
                half: rd,
                buf: BytesMut::with_capacity(1024),
                decoder: FrameDecoder::new(Peer::Server, Limits::default()),
                dialect: Dialect::Msnp12,
                answer: Vec::new(),
                qry_trid: QRY_TRID_BASE,
                challenges: 0,
            },
            wr,
            next_trid: 1,
        })
    }

    /// A fresh transaction ID.
    pub fn trid(&mut self) -> u32 {
        let t = self.next_trid;
        self.next_trid = self.next_trid.wrapping_add(1).max(1);
        t
    }

    /// Writes `bytes`, after any challenge answer the reader still holds.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.rd.finish_answer().await?;
        self.wr.write_all(bytes).await?;
        Ok(())
    }

    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.rd.decoder.set_dialect(dialect);
        self.rd.dialect = dialect;
    }
}

impl Reader {
    /// The next frame, waiting at most `STEP_TIMEOUT`.
    pub async fn recv(&mut self) -> Result<Frame> {
        tokio::time::timeout(STEP_TIMEOUT, self.recv_forever())
            .await
            .context("timed out waiting for the server")?
    }

    /// The next frame other than `CHL` (answered here), however long it takes. Cancel-safe
    /// (usable in `select!`).
    pub async fn recv_forever(&mut self) -> Result<Frame> {
        loop {
            self.finish_answer().await?;
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                if f.command() == "CHL" {
                    self.answer_challenge(&f);
                    continue;
                }
                return Ok(f);
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                bail!("server closed the connection");
            }
        }
    }

    /// Queues the `QRY` for a `CHL` (written by [`Reader::finish_answer`]).
    fn answer_challenge(&mut self, chl: &Frame) {
        let challenge = chl.params().first().copied().unwrap_or_default();
        let qry = msnp::qry(self.dialect, self.qry_trid, challenge);
        self.answer.extend_from_slice(qry.as_bytes());
        self.qry_trid = self.qry_trid.wrapping_add(1).max(QRY_TRID_BASE);
        self.challenges += 1;
    }

    /// Writes what is left of a `QRY` answer. The write goes through the shared socket while
    /// the connection's writer is idle: every scenario reads and writes a connection from one
    /// task, and callers that write between reads call this first (see [`Conn::send`]), so
    /// a `QRY` is never cut by another command. Cancel-safe: what was not written stays queued.
    pub async fn finish_answer(&mut self) -> Result<()> {
        while !self.answer.is_empty() {
            let stream: &tokio::net::TcpStream = self.half.as_ref();
            stream.writable().await?;
            match stream.try_write(&self.answer) {
                Ok(n) => {
                    self.answer.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads frames until one whose command is `command`, failing on an error line.
    pub async fn expect(&mut self, command: &str) -> Result<Frame> {
        loop {
            let f = self.recv().await?;
            if f.command() == command {
                return Ok(f);
            }
            if f.error_code().is_some() {
                bail!(
                    "server answered {:?} while we waited for {command}",
                    f.line()
                );
            }
        }
    }

    /// Reads frames until the reply to transaction `trid` (an error line is returned too).
    pub async fn reply(&mut self, trid: u32) -> Result<Frame> {
        loop {
            let f = self.recv().await?;
            if f.trid().map(|t| t.0) == Some(trid) {
                return Ok(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_over_loopback_addresses() {
        let s = Sources::loopback(3);
        let picked: Vec<_> = (0..7).filter_map(|_| s.pick()).collect();
        let a = |i| Ipv4Addr::new(127, 0, 0, i);
        assert_eq!(picked, vec![a(1), a(2), a(3), a(1), a(2), a(3), a(1)]);
    }

    #[test]
    fn zero_sources_lets_the_os_choose() {
        let s = Sources::loopback(0);
        assert_eq!(s.pick(), None);
        assert_eq!(s.pick(), None);
    }

    #[test]
    fn sources_are_capped_at_254() {
        let s = Sources::loopback(255);
        let last = (0..254).filter_map(|_| s.pick()).last();
        assert_eq!(last, Some(Ipv4Addr::new(127, 0, 0, 254)));
        assert_eq!(s.pick(), Some(Ipv4Addr::new(127, 0, 0, 1)));
    }
}
