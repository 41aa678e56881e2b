//! Arbitrary bytes through msgr-mail's POP3 line decoder (in arbitrary chunk sizes), command parser and
//! byte-stuffer: never a panic, never more buffered than one line, the same lines however the input is
//! split, and stuffing that a client undoes exactly. The checks live in the crate
//! (`msgr_mail::pop3::proto::fuzz_one`), where the unit tests run them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msgr_mail::pop3::proto::fuzz_one(data));
