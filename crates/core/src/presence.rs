//! Presence: the statuses a user can be in and the client capability bits sent along with them.
//!
//! Statuses travel as three-letter tokens in `CHG`, `ILN` and `NLN`. `FLN` is never set by a client (the server
//! answers `CHG … FLN` with 201); it is what watchers are told when a user signs out, hides, or may no longer be
//! seen. What a given watcher is shown is [`visible_status`] of the real status and the privacy verdict from
//! [`crate::privacy::may_see`].

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use msgr_proto::ErrorCode;

/// A user's presence status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `NLN`: online.
    Online,
    /// `AWY`: away.
    Away,
    /// `BSY`: busy.
    Busy,
    /// `BRB`: be right back.
    BeRightBack,
    /// `PHN`: on the phone.
    OnThePhone,
    /// `LUN`: out to lunch.
    OutToLunch,
    /// `IDL`: idle (set by clients after inactivity).
    Idle,
    /// `HDN`: signed in but appearing offline to everyone.
    Hidden,
    /// `FLN`: offline; only ever sent by the server.
    Offline,
}

impl Status {
    /// Every status, the settable ones first in the order clients show them.
    pub const ALL: [Status; 9] = [
        Status::Online,
        Status::Away,
        Status::Busy,
        Status::BeRightBack,
        Status::OnThePhone,
        Status::OutToLunch,
        Status::Idle,
        Status::Hidden,
        Status::Offline,
    ];

    /// The wire token.
    pub const fn token(self) -> &'static str {
        match self {
            Status::Online => "NLN",
            Status::Away => "AWY",
            Status::Busy => "BSY",
            Status::BeRightBack => "BRB",
            Status::OnThePhone => "PHN",
            Status::OutToLunch => "LUN",
            Status::Idle => "IDL",
            Status::Hidden => "HDN",
            Status::Offline => "FLN",
        }
    }

    /// The status a wire token names, `FLN` included.
    pub fn from_token(token: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.token() == token)
    }

    /// The status a client asks for in `CHG`: any but `FLN`; 201 for `FLN` or an unknown token, as the official
    /// server answered.
    pub fn parse_client(token: &str) -> Result<Status, ErrorCode> {
        Status::from_token(token)
            .filter(|s| *s != Status::Offline)
            .ok_or(ErrorCode::InvalidParameter)
    }

    /// Whether others can see the user online in this status (anything but `HDN` and `FLN`).
    pub const fn is_visible(self) -> bool {
        !matches!(self, Status::Hidden | Status::Offline)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// What a watcher is shown of a user whose real status is `status`, given whether privacy lets the watcher see
/// the user at all (`allowed`, from [`crate::privacy::may_see`]): the real status, or `FLN` if the user is
/// hidden, offline or not visible to this watcher.
pub const fn visible_status(status: Status, allowed: bool) -> Status {
    if allowed && status.is_visible() {
        status
    } else {
        Status::Offline
    }
}

/// Client capability bits (the number after the status in `CHG`/`ILN`/`NLN`, MSNP8 and later).
///
/// The top four bits are not flags but the highest MSNC (peer-to-peer) version the client speaks.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// The client runs on a Windows Mobile device.
    pub const MOBILE_ONLINE: u32 = 0x0000_0001;
    /// MSN Explorer 8 (sometimes set when a client resets its capabilities).
    pub const MSN8_USER: u32 = 0x0000_0002;
    /// Receives ink as GIF.
    pub const RENDERS_GIF: u32 = 0x0000_0004;
    /// Sends and receives ink as ISF.
    pub const RENDERS_ISF: u32 = 0x0000_0008;
    /// Has a webcam and shares that fact.
    pub const WEBCAM: u32 = 0x0000_0010;
    /// Accepts messages split over several packets.
    pub const SUPPORTS_CHUNKING: u32 = 0x0000_0020;
    /// Reachable through MSN Mobile (the `MOB` property).
    pub const MOBILE_ENABLED: u32 = 0x0000_0040;
    /// Reachable through MSN Direct / Web Watch (the `WWE` property).
    pub const DIRECT_DEVICE: u32 = 0x0000_0080;
    /// Signed in through the web-based client.
    pub const WEB_CLIENT: u32 = 0x0000_0200;
    /// Office Communicator through a gateway.
    pub const TGW_CLIENT: u32 = 0x0000_0800;
    /// Has an MSN Space (blog).
    pub const HAS_SPACE: u32 = 0x0000_1000;
    /// Windows XP Media Center Edition.
    pub const MEDIA_CENTER: u32 = 0x0000_2000;
    /// Supports direct connections for instant messages.
    pub const DIRECT_IM: u32 = 0x0000_4000;
    /// Supports winks.
    pub const WINKS: u32 = 0x0000_8000;
    /// Supports shared search.
    pub const SHARED_SEARCH: u32 = 0x0001_0000;
    /// A provisioned account (a bot).
    pub const BOT: u32 = 0x0002_0000;
    /// Supports voice clips.
    pub const VOICE_CLIPS: u32 = 0x0004_0000;
    /// Supports encrypted conversations.
    pub const SECURE_IM: u32 = 0x0008_0000;
    /// Supports sharing folders.
    pub const SHARING_FOLDERS: u32 = 0x0040_0000;

    const MSNC_SHIFT: u32 = 28;

    /// Whether every bit of `flag` is set.
    pub const fn has(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// The highest MSNC version advertised (0 = none, 1 = Messenger 6.0, 2 = 6.1, …).
    pub const fn msnc_version(self) -> u8 {
        // Four bits always fit in a u8.
        (self.0 >> Self::MSNC_SHIFT) as u8
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Capabilities({:#010x})", self.0)
    }
}

/// The capability field of `CHG`/`NLN`/`ILN`: the decimal [`Capabilities`], optionally followed by `:` and the
/// extended capabilities that later clients append (`2147778596:0`).
///
/// [`Display`](fmt::Display) writes back the form that was parsed, so a field can be relayed unchanged; a
/// presenter for a dialect that predates the extended form sends only [`ClientCaps::caps`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientCaps {
    /// The capability bits.
    pub caps: Capabilities,
    /// The extended capability bits, when the client sent the `caps:extcaps` form.
    pub extended: Option<u32>,
}

/// A capability field that is not `u32` or `u32:u32` in decimal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid client capabilities")]
pub struct CapsError(#[source] ParseIntError);

impl FromStr for ClientCaps {
    type Err = CapsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `u32::from_str` accepts a leading '+', which no client sends; it is harmless to accept too.
        let (caps, extended) = match s.split_once(':') {
            Some((c, e)) => (c, Some(e.parse().map_err(CapsError)?)),
            None => (s, None),
        };
        Ok(ClientCaps {
            caps: Capabilities(caps.parse().map_err(CapsError)?),
            extended,
        })
    }
}

impl fmt::Display for ClientCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.caps.0)?;
        if let Some(e) = self.extended {
            write!(f, ":{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn status_tokens_round_trip() {
        let tokens = [
            "NLN", "AWY", "BSY", "BRB", "PHN", "LUN", "IDL", "HDN", "FLN",
        ];
        for (s, t) in Status::ALL.into_iter().zip(tokens) {
            assert_eq!(s.token(), t);
            assert_eq!(Status::from_token(t), Some(s));
            assert_eq!(s.to_string(), t);
        }
        for bad in ["", "nln", "XXX", "NLN ", "ONLINE"] {
            assert_eq!(Status::from_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn clients_may_set_everything_but_fln() {
        for s in Status::ALL {
            let got = Status::parse_client(s.token());
            if s == Status::Offline {
                assert_eq!(got, Err(ErrorCode::InvalidParameter));
            } else {
                assert_eq!(got, Ok(s));
            }
        }
        assert_eq!(
            Status::parse_client("ABC"),
            Err(ErrorCode::InvalidParameter)
        );
    }

    #[test]
    fn visible_status_table() {
        use Status::*;
        let cases = [
            (Online, true, Online),
            (Away, true, Away),
            (Idle, true, Idle),
            (Hidden, true, Offline),
            (Offline, true, Offline),
            (Online, false, Offline),
            (Busy, false, Offline),
            (Hidden, false, Offline),
        ];
        for (status, allowed, want) in cases {
            assert_eq!(
                visible_status(status, allowed),
                want,
                "{status:?} {allowed}"
            );
        }
    }

    #[test]
    fn capabilities_parse_and_print() {
        let cases: &[(&str, u32, Option<u32>)] = &[
            ("0", 0, None),
            ("536870948", 536_870_948, None),
            ("2147778596:0", 2_147_778_596, Some(0)),
            ("268435456:48", 0x1000_0000, Some(48)),
        ];
        for (text, caps, ext) in cases {
            let parsed: ClientCaps = text.parse().unwrap();
            assert_eq!(parsed.caps, Capabilities(*caps), "{text}");
            assert_eq!(parsed.extended, *ext, "{text}");
            assert_eq!(parsed.to_string(), *text);
        }
        for bad in ["", "x", "-1", "4294967296", "1:", ":1", "1:2:3", "1 2"] {
            assert!(bad.parse::<ClientCaps>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn capability_bits() {
        // The seed's ILN example: MSNC2, ink as GIF, multi-packet messages.
        let c = Capabilities(536_870_948);
        assert_eq!(c.msnc_version(), 2);
        assert!(c.has(Capabilities::RENDERS_GIF));
        assert!(c.has(Capabilities::SUPPORTS_CHUNKING));
        assert!(!c.has(Capabilities::WEBCAM));
        assert_eq!(Capabilities(0x1000_0000).msnc_version(), 1);
        assert_eq!(Capabilities(u32::MAX).msnc_version(), 15);
        assert_eq!(format!("{c:?}"), "Capabilities(0x20000024)");
    }
}
