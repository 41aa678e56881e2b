//! Numeric MSNP error replies (`201 12\r\n`): the server answers a failed command with a
//! three-digit code in place of the command name, followed by the failed command's TrID.
//!
//! The table below is the single source of truth: each row gives the variant, its wire number
//! and a short English meaning, and the enum, [`ErrorCode::code`], [`ErrorCode::from_code`],
//! [`ErrorCode::meaning`] and [`ErrorCode::ALL`] are all generated from it so they cannot
//! drift apart.
//!
//! Several codes in the 600s and 900s meant the same thing to users ("server busy",
//! "server unavailable"): the official servers picked different numbers for different
//! internal causes. Those variants carry their number in the name so that each stays
//! distinct and the server can choose exactly the code an official client expects.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $meaning:literal; )+) => {
        /// One MSNP error code. `Display` prints the bare number, as it appears on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every known code, in ascending numeric order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )+ ];

            /// The number sent on the wire.
            pub const fn code(self) -> u16 {
                match self {
                    $( ErrorCode::$variant => $code, )+
                }
            }

            /// The error with this wire number, if msgr knows it.
            pub fn from_code(code: u16) -> Option<Self> {
                match code {
                    $( $code => Some(ErrorCode::$variant), )+
                    _ => None,
                }
            }

            /// A short English description, for logs and the terminal client.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $meaning, )+
                }
            }
        }
    };
}

error_codes! {
    SyntaxError = 200, "syntax error";
    InvalidParameter = 201, "invalid parameter";
    /// `ADD` of a well-formed account name that does not exist (MSNP10+ uses 208 instead).
    InvalidUser = 205, "invalid user";
    DomainNameMissing = 206, "domain name missing";
    /// A second `USR` on a connection that is already signed in.
    AlreadyLoggedIn = 207, "already logged in";
    /// An account name the server cannot resolve, e.g. `CAL` of a bad address.
    InvalidPrincipal = 208, "invalid principal";
    /// `REA` with a blocked word, or from an unverified Passport.
    InvalidFriendlyName = 209, "invalid friendly name";
    ListFull = 210, "list full";
    /// `ADD` of a contact already on that list.
    AlreadyInList = 215, "already in list";
    /// `REM` of a contact who is not on that list.
    NotInList = 216, "not in list";
    /// `CAL` of a contact who is offline or hidden.
    PrincipalNotOnline = 217, "principal not online";
    AlreadyInMode = 218, "already in mode";
    /// Adding to AL someone on BL, or the reverse: the two lists exclude each other.
    AlreadyInOppositeList = 219, "already in opposite list";
    TooManyGroups = 223, "too many groups";
    InvalidGroup = 224, "invalid group";
    PrincipalNotInGroup = 225, "principal not in group";
    GroupNameTooLong = 229, "group name too long";
    /// `RMG 0`: group 0 ("Other Contacts") always exists.
    CannotRemoveGroupZero = 230, "cannot remove group zero";
    /// Listed as a second "invalid group" code; msgr uses it for an unusable group name.
    InvalidGroupName = 231, "invalid group name";
    SwitchboardFailed = 280, "switchboard failed";
    TransferToSwitchboardFailed = 281, "transfer to switchboard failed";
    RequiredFieldMissing = 300, "required field missing";
    /// A command that needs a signed-in session arrived before `USR ... OK`.
    NotLoggedIn = 302, "not logged in";
    InternalServerError = 500, "internal server error";
    DatabaseServerError = 501, "database server error";
    /// The command exists but is no longer supported.
    CommandDisabled = 502, "command disabled";
    FileOperationFailed = 510, "file operation failed";
    MemoryAllocationFailed = 520, "memory allocation failed";
    /// The `QRY` answer did not match the `CHL` challenge.
    ChallengeResponseFailed = 540, "challenge response failed";
    ServerBusy = 600, "server busy";
    ServerUnavailable = 601, "server unavailable";
    /// Another notification server the request needed is down.
    PeerNotificationServerDown = 602, "peer notification server down";
    DatabaseConnectFailed = 603, "database connect failed";
    /// The server is shutting down.
    ServerGoingDown = 604, "server going down";
    ServerUnavailable605 = 605, "server unavailable";
    InvalidLocation = 702, "invalid location";
    CreateConnectionFailed = 707, "could not create connection";
    /// The `CVR` parameters were malformed.
    InvalidCvrParameters = 710, "invalid CVR parameters";
    /// A write to the peer would have blocked.
    BlockingWrite = 711, "write is blocking";
    SessionOverloaded = 712, "session overloaded";
    /// Too many commands (typically `CAL`s) in a short time.
    UserTooActive = 713, "user too active";
    TooManySessions = 714, "too many sessions";
    /// A command the server did not expect in the current state.
    NotExpected = 715, "not expected";
    /// The server could not read the principal's stored contact list.
    BadFriendFile = 717, "bad friend file";
    /// Presence or name changed too often in a short time.
    ChangingTooRapidly = 800, "changing too rapidly";
    ServerBusy910 = 910, "server busy";
    /// Wrong password or ticket; the server closes the connection after sending it.
    AuthenticationFailed = 911, "authentication failed";
    ServerBusy912 = 912, "server busy";
    /// A command that needs a visible presence was sent while `HDN`.
    NotAllowedWhenOffline = 913, "not allowed when offline";
    ServerUnavailable914 = 914, "server unavailable";
    ServerUnavailable915 = 915, "server unavailable";
    ServerUnavailable916 = 916, "server unavailable";
    AuthenticationFailed917 = 917, "authentication failed";
    ServerBusy918 = 918, "server busy";
    ServerBusy919 = 919, "server busy";
    NotAcceptingNewUsers = 920, "not accepting new users";
    ServerBusy921 = 921, "server busy";
    ServerBusy922 = 922, "server busy";
    /// A Kids Passport whose parent has not given consent.
    KidsWithoutParentalConsent = 923, "kids passport without parental consent";
    /// The Passport's e-mail address has not been verified yet.
    PassportNotVerified = 924, "passport not verified";
    /// The Passport ticket presented in `USR ... S` is malformed or expired.
    BadTicket = 928, "bad ticket";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every number the seed transcripts list; the enum must cover exactly these.
    const SEED_CODES: &[u16] = &[
        200, 201, 205, 206, 207, 208, 209, 210, 215, 216, 217, 218, 219, 223, 224, 225, 229, 230,
        231, 280, 281, 300, 302, 500, 501, 502, 510, 520, 540, 600, 601, 602, 603, 604, 605, 702,
        707, 710, 711, 712, 713, 714, 715, 717, 800, 910, 911, 912, 913, 914, 915, 916, 917, 918,
        919, 920, 921, 922, 923, 924, 928,
    ];

    #[test]
    fn every_code_round_trips() {
        for &e in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(e.code()), Some(e));
            assert_eq!(e.to_string(), e.code().to_string());
            assert!(!e.meaning().is_empty());
        }
    }

    #[test]
    fn codes_are_unique_ascending_and_match_the_seeds() {
        let codes: Vec<u16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
        let unique: HashSet<u16> = codes.iter().copied().collect();
        assert_eq!(unique.len(), codes.len());
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(codes, SEED_CODES);
    }

    #[test]
    fn unknown_codes_are_none() {
        for n in [0, 1, 199, 202, 211, 999, u16::MAX] {
            assert_eq!(ErrorCode::from_code(n), None);
        }
        assert_eq!(ErrorCode::AlreadyInList.code(), 215);
        assert_eq!(ErrorCode::NotInList.code(), 216);
        assert_eq!(ErrorCode::AuthenticationFailed.to_string(), "911");
    }
}
