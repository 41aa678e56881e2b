//! Arbitrary bytes through msgr-mail's SMTP parsers: the command parser on every line, the `DATA`
//! decoder whole and in chunks (same message, same end, never more than its limit kept), the MIME
//! summary. The checks live in the crate (`msgr_mail::smtp::fuzz_one`), where the property tests run
//! them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msgr_mail::smtp::fuzz_one(data));
