//! Sans-IO MSNP: everything about the bytes on the wire and nothing about sockets.
//!
//! Invariants (see `ARCHITECTURE.md`):
//! - no IO and no async runtime: every function is pure over bytes;
//! - any byte sequence is handled without panicking, and no allocation is larger than the
//!   configured [`frame::Limits`];
//! - feeding the same bytes in chunks of any size yields the same frames.

pub mod challenge;
pub mod dialect;
pub mod error_code;
pub mod frame;
pub mod mime;
pub mod urlenc;

pub use dialect::Dialect;
pub use error_code::ErrorCode;
pub use frame::{Frame, FrameDecoder, FrameError, Limits, Peer};
