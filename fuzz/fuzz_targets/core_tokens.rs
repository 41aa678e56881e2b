//! Arbitrary text through msgr-core's parsers of client-supplied tokens: Passport sign-in names, list
//! GUIDs, presence statuses, list names, friendly names. Never a panic, and what parses prints back to
//! a form that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msgr_core::lists::{Guid, List};
use msgr_core::passport::{validate_friendly_name, Passport};
use msgr_core::presence::Status;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    if let Ok(p) = Passport::parse(s) {
        assert_eq!(format!("{}@{}", p.local_part(), p.domain()), p.as_str());
        assert_eq!(Passport::parse(p.as_str()).ok().as_ref(), Some(&p));
    }
    if let Ok(g) = Guid::parse(s) {
        assert!(Guid::parse(g.text().as_str()).ok() == Some(g));
    }
    if let Ok(st) = Status::parse_client(s) {
        assert_eq!(Status::from_token(&st.to_string()), Some(st));
    }
    let _ = Status::from_token(s);
    let _ = List::from_token(s);
    let _ = validate_friendly_name(s);
});
