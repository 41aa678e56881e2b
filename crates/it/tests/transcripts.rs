//! Transcript tests: each file in `tests/transcripts/` is a client script with the exact
//! lines the server must answer (format: `msgr_it::transcript`), played against a fresh
//! server over real sockets.

#![allow(clippy::unwrap_used)]

use anyhow::Result;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts")
}

macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() -> Result<()> {
                let file = dir().join(concat!(stringify!($name), ".txt"));
                msgr_it::transcript::run_file(&file).await
            }
        )*

        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

transcripts! {
    dispatch,
    errors,
    md5_login_msnp7,
    msn_pecan_signon_msnp12,
    ns_login_msnp8,
    ns_login_msnp11,
    out_oth,
    switchboard_msnp8,
}

/// A transcript file nobody runs would be a test that silently never fails.
#[test]
fn every_transcript_file_is_listed() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".txt").map(str::to_owned))
        .collect();
    files.sort();
    let mut listed: Vec<&str> = LISTED.to_vec();
    listed.sort();
    assert_eq!(
        files, listed,
        "add new transcripts to the transcripts! list"
    );
}
