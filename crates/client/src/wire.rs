//! One MSNP connection's bytes: the socket, the read buffer and the codec from `msgr-proto`.
//! Owned by exactly one task; reading is cancel-safe (all state lives here), so the task can
//! `select!` on it.

use crate::error::ClientError;
use bytes::BytesMut;
use msgr_proto::frame::{write_line, write_payload, Frame, FrameDecoder, Limits, Peer, TrId};
use msgr_proto::Dialect;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// Frames the decoder skipped as recoverable (over-long payloads, non-UTF-8 lines): a
    /// hostile server costs us those frames, not the connection.
    pub skipped: u64,
}

impl Wire {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Wire, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        Ok(Wire::new(stream))
    }

    pub fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: BytesMut::with_capacity(4096),
            decoder: FrameDecoder::new(Peer::Server, Limits::default()),
            skipped: 0,
        }
    }

    /// Payload commands depend on the dialect; call once `VER` is agreed.
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.decoder.set_dialect(dialect);
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// The next frame. `Closed` when the server hangs up; a fatal framing error ends the
    /// connection, a recoverable one is counted and skipped.
    pub async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) if e.is_recoverable() => {
                    tracing::debug!(error = %e, "skipping a frame from the server");
                    self.skipped += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// [`Wire::read_frame`] with a deadline.
    pub async fn read_frame_within(&mut self, timeout: Duration) -> Result<Frame, ClientError> {
        tokio::time::timeout(timeout, self.read_frame())
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    pub async fn send_line(
        &mut self,
        command: &str,
        trid: Option<u32>,
        args: &[&str],
    ) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        write_line(&mut out, command, trid.map(TrId), args);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    pub async fn send_payload(
        &mut self,
        command: &str,
        trid: Option<u32>,
        args: &[&str],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        write_payload(&mut out, command, trid.map(TrId), args, payload);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Best effort goodbye (`OUT`) before dropping the socket.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.stream.write_all(b"OUT\r\n").await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// A numeric error line (`911 4`) as an error, if `frame` is one.
pub(crate) fn server_error(frame: &Frame) -> Option<ClientError> {
    frame
        .error_code()
        .map(|n| ClientError::Server(crate::error::ServerError::new(n)))
}
