//! What can go wrong, as typed values: a server's numeric error carries its [`ErrorCode`] and the
//! code's meaning, so callers can match on it and people can read it.

use msgr_proto::frame::FrameError;
use msgr_proto::ErrorCode;
use std::fmt;

/// A numeric error line from the server (`911 4`), with its known meaning if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerError {
    /// The number on the wire, kept even when [`ErrorCode`] does not know it.
    pub number: u16,
    pub code: Option<ErrorCode>,
}

impl ServerError {
    pub fn new(number: u16) -> Self {
        ServerError {
            number,
            code: ErrorCode::from_code(number),
        }
    }

    /// What the code means, in the protocol documentation's words.
    pub fn meaning(&self) -> &'static str {
        self.code.map_or("unknown error", ErrorCode::meaning)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number, self.meaning())
    }
}

/// Why a login ended before the user was signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Passport answered 401 (wrong e-mail or password).
    PassportRefused { status: u16 },
    /// The server refused the credentials (`911`).
    Rejected,
}

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server error {0}")]
    Server(ServerError),
    #[error("sign-in refused: {0:?}")]
    Auth(AuthFailure),
    #[error("the server does not speak any dialect we offered")]
    NoDialect,
    #[error("unexpected {context}: {line:?}")]
    Protocol { context: &'static str, line: String },
    #[error("undecodable bytes from the server: {0}")]
    Frame(#[from] FrameError),
    #[error("connection closed by the server")]
    Closed,
    #[error("no answer from the server within {0:?}")]
    Timeout(std::time::Duration),
    #[error("too many redirects (XFR NS)")]
    TooManyRedirects,
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("Passport: {0}")]
    Passport(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the session has ended")]
    SessionEnded,
    #[error("file transfer: {0}")]
    Transfer(String),
    #[error("file transfer cancelled")]
    Cancelled,
}

impl ClientError {
    pub(crate) fn protocol(context: &'static str, line: impl Into<String>) -> Self {
        ClientError::Protocol {
            context,
            line: line.into(),
        }
    }

    /// The server's error code, if this is a server error.
    pub fn server_code(&self) -> Option<ServerError> {
        match self {
            ClientError::Server(e) => Some(*e),
            _ => None,
        }
    }

    /// Whether retrying the connection can help (network trouble, the server going away),
    /// as opposed to a refusal that would only repeat.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Io(_) | ClientError::Closed | ClientError::Timeout(_)
        ) || matches!(self, ClientError::Server(e) if matches!(e.number, 500 | 600 | 601 | 602 | 603 | 604 | 605 | 910 | 912 | 921 | 922))
    }
}
