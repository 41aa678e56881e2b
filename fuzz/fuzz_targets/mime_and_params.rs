//! MIME payload parsing, URL-decoding and the typed views: arbitrary input must be refused
//! cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msgr_proto::{mime, urlenc};

fuzz_target!(|data: &[u8]| {
    let _ = urlenc::decode_bytes(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = urlenc::decode(s) {
            let _ = urlenc::encode(&d);
        }
    }
    if let Ok(m) = mime::MimeMessage::parse(data) {
        let _ = m.content_type();
        let _ = mime::TextMessage::from_message(&m);
        let _ = mime::Profile::from_message(&m);
        let _ = mime::TypingNotification::from_message(&m);
    }
});
