//! Signing in on the notification server, up to `USR … OK`, following `XFR NS` redirects.
//!
//! | dialect | steps |
//! |---|---|
//! | MSNP2–MSNP7 | `VER`, `INF` → `MD5`, `USR t MD5 I email` → `USR t MD5 S salt`, `USR t MD5 S md5(salt+password)` → `USR t OK email name` |
//! | MSNP8–MSNP12 | `VER`, `CVR`, `USR t TWN I email` → `USR t TWN S challenge`, Passport 1.4, `USR t TWN S ticket` → `USR t OK email …` |
//!
//! A dispatch server answers `USR … I` with `XFR t NS host:port …`; the client starts over there.

use crate::config::Config;
use crate::error::{AuthFailure, ClientError};
use crate::passport::Passport;
use crate::wire::{server_error, Wire};
use msgr_proto::frame::Frame;
use msgr_proto::{urlenc, Dialect};

/// Dispatch servers hand out one redirect; a chain longer than this is a loop.
const MAX_REDIRECTS: usize = 3;

/// Unrelated lines tolerated while waiting for one reply (a broken server may chatter).
const MAX_UNRELATED: usize = 64;

/// A signed-in NS connection, before `SYN`.
pub(crate) struct SignedIn {
    pub wire: Wire,
    pub dialect: Dialect,
    /// The display name `USR OK` carried (MSNP2–9).
    pub name: Option<String>,
    /// The next free TrID.
    pub next_trid: u32,
}

enum Step {
    Redirect(String),
    Done(SignedIn),
}

pub(crate) async fn sign_in(cfg: &Config) -> Result<SignedIn, ClientError> {
    let mut addr = cfg.server.clone();
    for _ in 0..=MAX_REDIRECTS {
        match attempt(cfg, &addr).await? {
            Step::Redirect(next) => {
                tracing::debug!(%next, "XFR NS: following the redirect");
                addr = next;
            }
            Step::Done(s) => return Ok(s),
        }
    }
    Err(ClientError::TooManyRedirects)
}

/// Waits for the reply to `trid`: a line with that TrID, or its numeric error.
pub(crate) async fn reply(
    wire: &mut Wire,
    trid: u32,
    cfg_timeout: std::time::Duration,
) -> Result<Frame, ClientError> {
    for _ in 0..MAX_UNRELATED {
        let f = wire.read_frame_within(cfg_timeout).await?;
        if f.trid().map(|t| t.0) != Some(trid) {
            tracing::debug!(
                line = f.line(),
                "ignoring an unrelated line while signing in"
            );
            continue;
        }
        if let Some(e) = server_error(&f) {
            return Err(e);
        }
        return Ok(f);
    }
    Err(ClientError::protocol(
        "chatter instead of a reply",
        format!("TrID {trid}"),
    ))
}

fn expect(f: &Frame, command: &'static str) -> Result<(), ClientError> {
    if f.command() == command {
        Ok(())
    } else {
        Err(ClientError::protocol(command, f.line()))
    }
}

/// `XFR t NS host:port …`, the address to go to.
fn redirect(f: &Frame) -> Option<String> {
    let p = f.params();
    (f.command() == "XFR" && p.first() == Some(&"NS"))
        .then(|| p.get(1).map(|a| (*a).to_owned()))
        .flatten()
}

fn md5_hex(salt: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

fn auth_error(e: ClientError) -> ClientError {
    match e.server_code() {
        Some(s) if matches!(s.number, 911 | 917) => ClientError::Auth(AuthFailure::Rejected),
        _ => e,
    }
}

async fn attempt(cfg: &Config, addr: &str) -> Result<Step, ClientError> {
    let t = cfg.timeout;
    let dialect = cfg.dialect;
    if cfg.email.is_empty() || cfg.email.contains(char::is_whitespace) {
        return Err(ClientError::InvalidArgument(format!(
            "not an account name: {:?}",
            cfg.email
        )));
    }
    let mut wire = Wire::connect(addr, t).await?;
    wire.send_line("VER", Some(1), &[dialect.token(), "CVR0"])
        .await?;
    let ver = reply(&mut wire, 1, t).await?;
    expect(&ver, "VER")?;
    if !ver.args().any(|a| a == dialect.token()) {
        return Err(ClientError::NoDialect);
    }
    wire.set_dialect(dialect);
    let email = cfg.email.as_str();

    let ok = if dialect < Dialect::Msnp8 {
        wire.send_line("INF", Some(2), &[]).await?;
        let inf = reply(&mut wire, 2, t).await?;
        if !inf.params().contains(&"MD5") {
            return Err(ClientError::protocol("INF (no MD5)", inf.line()));
        }
        wire.send_line("USR", Some(3), &["MD5", "I", email]).await?;
        let usr = reply(&mut wire, 3, t).await.map_err(auth_error)?;
        if let Some(next) = redirect(&usr) {
            return Ok(Step::Redirect(next));
        }
        expect(&usr, "USR")?;
        let salt = match usr.params().as_slice() {
            ["MD5", "S", salt] => (*salt).to_owned(),
            _ => return Err(ClientError::protocol("USR MD5 S", usr.line())),
        };
        let proof = md5_hex(&salt, &cfg.password);
        wire.send_line("USR", Some(4), &["MD5", "S", &proof])
            .await?;
        reply(&mut wire, 4, t).await.map_err(auth_error)?
    } else {
        wire.send_line(
            "CVR",
            Some(2),
            &[
                "0x0409", "win", "4.10", "i386", "MSNMSGR", "6.2.0208", "MSMSGS", email,
            ],
        )
        .await?;
        expect(&reply(&mut wire, 2, t).await?, "CVR")?;
        wire.send_line("USR", Some(3), &["TWN", "I", email]).await?;
        let usr = reply(&mut wire, 3, t).await.map_err(auth_error)?;
        if let Some(next) = redirect(&usr) {
            return Ok(Step::Redirect(next));
        }
        expect(&usr, "USR")?;
        let challenge = match usr.params().as_slice() {
            ["TWN", "S", challenge] => (*challenge).to_owned(),
            _ => return Err(ClientError::protocol("USR TWN S", usr.line())),
        };
        let passport = Passport {
            tls: cfg.tls.connector()?,
            timeout: t,
        };
        let dalogin = passport.dalogin(&cfg.nexus).await?;
        let ticket = passport
            .ticket(&dalogin, email, &cfg.password, &challenge)
            .await?;
        wire.send_line("USR", Some(4), &["TWN", "S", &ticket])
            .await?;
        reply(&mut wire, 4, t).await.map_err(auth_error)?
    };
    expect(&ok, "USR")?;
    let p = ok.params();
    if p.first() != Some(&"OK") {
        return Err(ClientError::protocol("USR OK", ok.line()));
    }
    // MSNP2–9: `OK email name …`; MSNP10+: `OK email verified 0` (the name comes with SYN).
    let name = (dialect < Dialect::Msnp10)
        .then(|| {
            p.get(2)
                .map(|n| urlenc::decode(n).map_or_else(|_| (*n).to_owned(), |c| c.into_owned()))
        })
        .flatten();
    Ok(Step::Done(SignedIn {
        wire,
        dialect,
        name,
        next_trid: 5,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_proof_is_lowercase_hex() {
        // RFC 1321 test vector for "abc", split between salt and password.
        assert_eq!(md5_hex("a", "bc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
