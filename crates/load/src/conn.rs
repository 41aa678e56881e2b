//! Raw MSNP connections: source-address rotation, connecting, framing with `msgr_proto`.

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

pub struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
}

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

    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.wr.write_all(bytes).await?;
        Ok(())
    }

    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.rd.decoder.set_dialect(dialect);
    }
}

impl Reader {
    /// The next frame, waiting at most `STEP_TIMEOUT`.
    pub async fn recv(&mut self) -> Result<Frame> {
        tokio::time::timeout(STEP_TIMEOUT, self.recv_forever())
            .await
            .context("timed out waiting for the server")?
    }

    /// The next frame, however long it takes. Cancel-safe (usable in `select!`).
    pub async fn recv_forever(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                return Ok(f);
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                bail!("server closed the connection");
            }
        }
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
