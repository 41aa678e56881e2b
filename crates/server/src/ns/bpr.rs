//! `BPR`: a contact's own phone settings (what that contact set with `PRP`), as the users who
//! have it on their forward list see them. The server only ever sends it; a client's `BPR` is 200.
//!
//! | dialect | in `SYN`, right after the contact's `LST` | when the contact changes one with `PRP` |
//! |---|---|---|
//! | MSNP2–MSNP4 | — (no phone properties) | — |
//! | MSNP5–MSNP7 | after each `LST t FL …` entry: `BPR ver email PROP [value]` for `PHH`, `PHW`, `PHM` and `MOB`, set or not | `BPR ver email PROP [value]` |
//! | MSNP8–MSNP9 | `BPR PROP value` for each of `PHH PHW PHM` that is set, and `BPR MOB Y` | `BPR ver email PROP [value]` |
//! | MSNP10–MSNP12 | as MSNP8 | as MSNP8 |
//!
//! `ver` is the watcher's own list version, which every change of a contact's phones moves
//! (the watcher's cached `BPR` lines are part of its list); values are URL-encoded; a cleared
//! number has no value. `MBE` is never sent: contacts do not see it. Sources: msnp-wiki `bpr.md` (fields;
//! the handle is dropped inside `SYN` from MSNP8; the version only in `ABCHMigrated: 1` mode,
//! which msgr's numeric versions are not) and `syn.md` (placement per generation, unset
//! properties omitted from MSNP8); Gaim's MSNP8 client reads the four-field form outside `SYN`.
//!
//! Who hears a change: every account with the changer on its forward list gets a new list
//! version (`ContactStore::touch_watchers`, one statement, after the change is stored); those
//! online and in the changer's presence audience (not blocked; allowed, or `BLP AL`) get the
//! `BPR` line, whether or not they have sent `CHG` yet, and the others only the new version.
//! So a client that was offline syncs with an older version and receives the new numbers. In
//! `SYN`, the phones come from one store query (`ContactStore::contact_phones`) with the same
//! privacy rule, and are dropped once the answer is written.

use bytes::BytesMut;
use msgr_core::lists::{Phones, Property};
use msgr_proto::frame::write_line;
use msgr_proto::{urlenc, Dialect};

use super::OnlineUser;
use crate::hub::PropertyNotice;

/// The properties `BPR` carries, in the order `SYN` lists them.
const BPR_PROPERTIES: [Property; 4] = [
    Property::HomePhone,
    Property::WorkPhone,
    Property::MobilePhone,
    Property::MobileContact,
];

/// How a dialect shows contacts' phones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// MSNP2–MSNP4: not at all.
    None,
    /// MSNP5–MSNP7: every property, with version and handle, after `LST FL` entries.
    Iterated,
    /// MSNP8–MSNP12: only set properties, bare, after the contact's `LST`.
    Bare,
}

fn form(dialect: Dialect) -> Form {
    match dialect {
        Dialect::Msnp2 | Dialect::Msnp3 | Dialect::Msnp4 => Form::None,
        Dialect::Msnp5 | Dialect::Msnp6 | Dialect::Msnp7 => Form::Iterated,
        Dialect::Msnp8 | Dialect::Msnp9 | Dialect::Msnp10 | Dialect::Msnp11 | Dialect::Msnp12 => {
            Form::Bare
        }
    }
}

/// The `BPR` lines of one forward-list contact inside `SYN`, after its `LST` line. `phones` is
/// `None` for a contact with nothing set (or nothing the watcher may see); `ver` is the list
/// version the `SYN` answer carries.
pub(super) fn write_in_syn(
    dialect: Dialect,
    ver: &str,
    email: &str,
    phones: Option<&Phones>,
    out: &mut BytesMut,
) {
    let unset = Phones::default();
    let phones = phones.unwrap_or(&unset);
    match form(dialect) {
        Form::None => {}
        Form::Iterated => {
            for p in BPR_PROPERTIES {
                let value = phones.get(p).map(urlenc::encode);
                let mut args = vec![ver, email, p.token()];
                if let Some(v) = value.as_deref() {
                    args.push(v);
                }
                write_line(out, "BPR", None, &args);
            }
        }
        Form::Bare => {
            for p in BPR_PROPERTIES {
                match phones.get(p) {
                    None | Some("N") if p.is_flag() => {}
                    None => {}
                    Some(v) => write_line(out, "BPR", None, &[p.token(), &urlenc::encode(v)]),
                }
            }
        }
    }
}

/// The live `BPR ver email PROP [value]` a watcher whose list version is `version` receives.
pub(super) fn write_change(
    dialect: Dialect,
    version: u64,
    notice: &PropertyNotice,
    out: &mut BytesMut,
) {
    if form(dialect) == Form::None || !BPR_PROPERTIES.contains(&notice.property) {
        return;
    }
    let ver = version.to_string();
    let value = notice.value.as_deref().map(urlenc::encode);
    let mut args = vec![ver.as_str(), &notice.from, notice.property.token()];
    if let Some(v) = value.as_deref() {
        args.push(v);
    }
    write_line(out, "BPR", None, &args);
}

/// A contact on `user`'s forward list changed a phone property: take the list version the
/// store moved to (never backwards: the user's own changes may have moved it further already)
/// and, when the contact lets `user` see it, tell the client.
pub(super) fn contact_changed(
    dialect: Dialect,
    user: &OnlineUser,
    notice: Option<&PropertyNotice>,
    version: u64,
    out: &mut BytesMut,
) {
    {
        let mut list = user.state.list_mut();
        list.version = list.version.max(version);
    }
    if let Some(n) = notice {
        write_change(dialect, version, n, out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn phones() -> Phones {
        Phones {
            home: Some("01 234".into()),
            mobile_contact: true,
            mobile_enabled: true,
            ..Phones::default()
        }
    }

    fn render(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn in_syn_per_dialect() {
        let p = phones();
        for d in [Dialect::Msnp2, Dialect::Msnp4] {
            assert_eq!(render(|o| write_in_syn(d, "7", "a@x.com", Some(&p), o)), "");
        }
        for d in [Dialect::Msnp5, Dialect::Msnp7] {
            assert_eq!(
                render(|o| write_in_syn(d, "7", "a@x.com", Some(&p), o)),
                "BPR 7 a@x.com PHH 01%20234\r\nBPR 7 a@x.com PHW\r\nBPR 7 a@x.com PHM\r\n\
                 BPR 7 a@x.com MOB Y\r\n"
            );
            assert_eq!(
                render(|o| write_in_syn(d, "7", "a@x.com", None, o)),
                "BPR 7 a@x.com PHH\r\nBPR 7 a@x.com PHW\r\nBPR 7 a@x.com PHM\r\n\
                 BPR 7 a@x.com MOB N\r\n"
            );
        }
        // The seed's form: only what is set, MOB only when Y, never MBE.
        for d in [
            Dialect::Msnp8,
            Dialect::Msnp9,
            Dialect::Msnp10,
            Dialect::Msnp12,
        ] {
            assert_eq!(
                render(|o| write_in_syn(d, "7", "a@x.com", Some(&p), o)),
                "BPR PHH 01%20234\r\nBPR MOB Y\r\n"
            );
            assert_eq!(render(|o| write_in_syn(d, "7", "a@x.com", None, o)), "");
        }
    }

    #[test]
    fn live_change_per_dialect() {
        let set = PropertyNotice {
            from: "a@x.com".into(),
            property: Property::WorkPhone,
            value: Some("55 66".into()),
        };
        let cleared = PropertyNotice {
            value: None,
            ..set.clone()
        };
        let mbe = PropertyNotice {
            property: Property::MobileEnabled,
            value: Some("Y".into()),
            ..set.clone()
        };
        assert_eq!(render(|o| write_change(Dialect::Msnp4, 3, &set, o)), "");
        for d in [
            Dialect::Msnp5,
            Dialect::Msnp7,
            Dialect::Msnp8,
            Dialect::Msnp9,
            Dialect::Msnp10,
            Dialect::Msnp11,
            Dialect::Msnp12,
        ] {
            assert_eq!(
                render(|o| write_change(d, 3, &set, o)),
                "BPR 3 a@x.com PHW 55%2066\r\n",
                "{d}"
            );
            assert_eq!(
                render(|o| write_change(d, 3, &cleared, o)),
                "BPR 3 a@x.com PHW\r\n"
            );
            assert_eq!(render(|o| write_change(d, 3, &mbe, o)), "");
        }
    }
}
