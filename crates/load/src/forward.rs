//! A bare TCP byte forwarder, the baseline of `relay --baseline`: for each pair one loopback
//! listener accepts two connections and copies bytes between them both ways
//! (`tokio::io::copy_bidirectional`), without parsing anything. When one side ends its
//! output, the other side's output is shut down; when both have, both are closed.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Running forwarders, one per pair. Dropping this stops them all.
pub struct Forwarder {
    /// Where the two connections of pair p go.
    pub addrs: Vec<SocketAddr>,
    tasks: JoinSet<io::Result<(u64, u64)>>,
}

impl Forwarder {
    /// Binds `pairs` listeners on 127.0.0.1 (ports chosen by the OS).
    pub async fn start(pairs: usize) -> io::Result<Forwarder> {
        let mut f = Forwarder {
            addrs: Vec::with_capacity(pairs),
            tasks: JoinSet::new(),
        };
        for _ in 0..pairs {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            f.addrs.push(listener.local_addr()?);
            f.tasks.spawn(forward_pair(listener));
        }
        Ok(f)
    }

    /// Waits for every pair to end; each gives the bytes copied first → second and back.
    pub async fn finish(mut self) -> Vec<io::Result<(u64, u64)>> {
        let mut out = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            out.push(r.unwrap_or_else(|e| Err(io::Error::other(e))));
        }
        out
    }
}

/// Accepts two connections and copies between them until both have ended.
async fn forward_pair(listener: TcpListener) -> io::Result<(u64, u64)> {
    let (mut a, _) = listener.accept().await?;
    let (mut b, _) = listener.accept().await?;
    drop(listener);
    // Like the server's MSNP sockets.
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut a, &mut b).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .expect("in time")
            .expect("reads");
        buf
    }

    async fn read_eof(s: &mut TcpStream) {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("EOF in time")
            .expect("reads");
        assert_eq!(n, 0, "expected end of stream");
    }

    #[tokio::test]
    async fn forwards_both_ways_and_closes_both_sides() {
        let f = Forwarder::start(1).await.expect("starts");
        let mut a = TcpStream::connect(f.addrs[0]).await.expect("a");
        let mut b = TcpStream::connect(f.addrs[0]).await.expect("b");
        a.write_all(b"MSG 3 A 5\r\nhello").await.expect("a writes");
        assert_eq!(read_exact(&mut b, 16).await, b"MSG 3 A 5\r\nhello");
        b.write_all(b"MSG 2 A 3\r\nhey").await.expect("b writes");
        assert_eq!(read_exact(&mut a, 14).await, b"MSG 2 A 3\r\nhey");
        // a ends its output: b sees the end, and can still answer.
        a.shutdown().await.expect("a shuts down");
        read_eof(&mut b).await;
        b.write_all(b"bye").await.expect("b writes after a's EOF");
        assert_eq!(read_exact(&mut a, 3).await, b"bye");
        // b ends too: a sees the end, and the pair is over.
        b.shutdown().await.expect("b shuts down");
        read_eof(&mut a).await;
        let done = tokio::time::timeout(Duration::from_secs(5), f.finish())
            .await
            .expect("forwarder ends");
        assert_eq!(done.len(), 1);
        let (ab, ba) = done[0].as_ref().expect("no error");
        assert_eq!((*ab, *ba), (16, 17));
    }

    #[tokio::test]
    async fn a_closed_connection_closes_the_other_side() {
        let f = Forwarder::start(1).await.expect("starts");
        let a = TcpStream::connect(f.addrs[0]).await.expect("a");
        let mut b = TcpStream::connect(f.addrs[0]).await.expect("b");
        drop(a);
        read_eof(&mut b).await;
        drop(b);
        let done = tokio::time::timeout(Duration::from_secs(5), f.finish())
            .await
            .expect("forwarder ends");
        assert_eq!(done.len(), 1);
    }

    #[tokio::test]
    async fn pairs_are_independent() {
        let f = Forwarder::start(2).await.expect("starts");
        assert_ne!(f.addrs[0], f.addrs[1]);
        let mut a0 = TcpStream::connect(f.addrs[0]).await.expect("a0");
        let mut b0 = TcpStream::connect(f.addrs[0]).await.expect("b0");
        let mut a1 = TcpStream::connect(f.addrs[1]).await.expect("a1");
        let mut b1 = TcpStream::connect(f.addrs[1]).await.expect("b1");
        a0.write_all(b"zero").await.expect("writes");
        a1.write_all(b"one!").await.expect("writes");
        assert_eq!(read_exact(&mut b1, 4).await, b"one!");
        assert_eq!(read_exact(&mut b0, 4).await, b"zero");
    }
}
