//! Contacts' phone numbers over real sockets: alice sets her numbers with `PRP`; bob, who has
//! her on his forward list, sees them as `BPR` after her `LST` line in `SYN` and live, each in
//! his own dialect, while carol (who does not list alice) hears nothing. Run for MSNP7 (legacy
//! MD5) and MSNP8–12, and for mixed pairs.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::{ensure, Result};
use common::*;
use msgr_it::Conn;
use msgr_proto::Dialect;

fn matches(pattern: &str, line: &str) -> bool {
    msgr_it::transcript::line_matches(pattern, line)
}

/// `PRP t PROP [value]` from alice, checking the echo of her dialect.
async fn prp(c: &mut Conn, d: Dialect, trid: u32, prop: &str, value: Option<&str>) -> Result<()> {
    let tail = value.map(|v| format!(" {v}")).unwrap_or_default();
    c.send(&format!("PRP {trid} {prop}{tail}")).await?;
    if d >= Dialect::Msnp10 {
        c.expect_line(&format!("PRP {trid} {prop}{tail}")).await?;
    } else {
        c.expect_match(&format!("PRP {trid} {{digits}} {prop}{tail}"))
            .await?;
    }
    Ok(())
}

/// alice's `LST` line in bob's `SYN 3 1` (bob has her on FL only; his list is at version 2), and
/// the `BPR` lines that must follow it when her home phone is `01 234` and nothing else is set.
fn alice_in_bobs_syn(bob: Dialect) -> Vec<&'static str> {
    match bob {
        Dialect::Msnp7 => vec![
            "LST 3 FL 2 1 1 alice@x.com Alice%20N 0",
            "BPR 2 alice@x.com PHH 01%20234",
            "BPR 2 alice@x.com PHW",
            "BPR 2 alice@x.com PHM",
            "BPR 2 alice@x.com MOB N",
        ],
        Dialect::Msnp8 | Dialect::Msnp9 => {
            vec!["LST alice@x.com Alice%20N 1 0", "BPR PHH 01%20234"]
        }
        Dialect::Msnp10 | Dialect::Msnp11 => vec![
            "LST N=alice@x.com F=Alice%20N C={any} 1",
            "BPR PHH 01%20234",
        ],
        _ => vec![
            "LST N=alice@x.com F=Alice%20N C={any} 1 1",
            "BPR PHH 01%20234",
        ],
    }
}

async fn phones(a: Dialect, b: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, a, "alice").await?;
    let mut bob = user(&srv, b, "bob").await?;
    let mut carol = user(&srv, b, "carol").await?;
    add(&mut bob, b, 10, "FL", "alice").await?;
    alice.expect_match(&rl_notice(a, "bob")).await?;

    // Live, before bob has even set a status, with his new list version: his cached copy
    // (version 1, after adding alice) holds her phones, so her change moves it to 2.
    prp(&mut alice, a, 11, "PHH", Some("01%20234")).await?;
    bob.expect_line("BPR 2 alice@x.com PHH 01%20234").await?;

    // A client that missed it (still at version 1) gets the whole list again, with the
    // number right after alice's LST line.
    drop(bob);
    let mut bob = relogin(&srv, b, "bob").await?;
    let list = syn(&mut bob, b, 3, 1).await?;
    let want = alice_in_bobs_syn(b);
    let at = list.iter().position(|l| matches(want[0], l));
    ensure!(
        at.is_some_and(|i| list.len() >= i + want.len()
            && list[i..i + want.len()]
                .iter()
                .zip(&want)
                .all(|(g, w)| matches(w, g))),
        "bob's SYN {list:?} lacks {want:?}"
    );
    ensure!(
        list.iter().filter(|l| l.starts_with("BPR")).count() == want.len() - 1,
        "stray BPR in {list:?}"
    );

    // Changes and clearing reach bob at once; MBE is not the client's to set.
    prp(&mut alice, a, 12, "MOB", Some("Y")).await?;
    bob.expect_line("BPR 3 alice@x.com MOB Y").await?;
    prp(&mut alice, a, 13, "PHH", None).await?;
    bob.expect_line("BPR 4 alice@x.com PHH").await?;
    alice.send("PRP 14 MBE Y").await?;
    alice.expect_match("{digits} 14").await?;

    // After the clear, the seed's form: only MOB Y is left from MSNP8 on.
    let list = syn(&mut bob, b, 4, 0).await?;
    let bpr: Vec<&String> = list.iter().filter(|l| l.starts_with("BPR")).collect();
    if b >= Dialect::Msnp8 {
        ensure!(bpr == ["BPR MOB Y"], "bob's SYN {list:?}");
    } else {
        ensure!(
            bpr == [
                "BPR 4 alice@x.com PHH",
                "BPR 4 alice@x.com PHW",
                "BPR 4 alice@x.com PHM",
                "BPR 4 alice@x.com MOB Y"
            ],
            "bob's SYN {list:?}"
        );
    }

    // carol does not have alice on her forward list: nothing for her.
    quiet(&mut carol).await?;
    quiet(&mut alice).await?;
    quiet(&mut bob).await
}

/// Once alice blocks bob, her numbers are no longer his to see, live or in `SYN`.
async fn blocked(a: Dialect, b: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, a, "alice").await?;
    let mut bob = user(&srv, b, "bob").await?;
    add(&mut bob, b, 10, "FL", "alice").await?;
    alice.expect_match(&rl_notice(a, "bob")).await?;
    add(&mut alice, a, 11, "BL", "bob").await?;
    prp(&mut alice, a, 12, "PHW", Some("55")).await?;
    // His version still moves (version 2 after adding alice and the change), silently.
    let list = syn(&mut bob, b, 3, 0).await?;
    ensure!(
        !list.iter().any(|l| l.starts_with("BPR")),
        "bob's SYN {list:?}"
    );
    let up_to_date = if b >= Dialect::Msnp10 {
        "SYN 4 2 2"
    } else {
        "SYN 4 2"
    };
    ensure!(
        syn(&mut bob, b, 4, 2).await? == [up_to_date],
        "bob's version"
    );
    quiet(&mut bob).await
}

macro_rules! pairs {
    ($($name:ident => $a:expr, $b:expr);+ $(;)?) => {
        $(
            #[tokio::test]
            async fn $name() -> Result<()> {
                phones($a, $b).await
            }
        )+
    };
}

pairs!(
    phones_msnp7 => Dialect::Msnp7, Dialect::Msnp7;
    phones_msnp8 => Dialect::Msnp8, Dialect::Msnp8;
    phones_msnp9 => Dialect::Msnp9, Dialect::Msnp9;
    phones_msnp10 => Dialect::Msnp10, Dialect::Msnp10;
    phones_msnp11 => Dialect::Msnp11, Dialect::Msnp11;
    phones_msnp12 => Dialect::Msnp12, Dialect::Msnp12;
    phones_msnp12_seen_by_msnp8 => Dialect::Msnp12, Dialect::Msnp8;
    phones_msnp8_seen_by_msnp12 => Dialect::Msnp8, Dialect::Msnp12;
    phones_msnp12_seen_by_msnp7 => Dialect::Msnp12, Dialect::Msnp7;
);

#[tokio::test]
async fn blocked_watcher_gets_no_phones_msnp8() -> Result<()> {
    blocked(Dialect::Msnp8, Dialect::Msnp8).await
}

#[tokio::test]
async fn blocked_watcher_gets_no_phones_msnp12() -> Result<()> {
    blocked(Dialect::Msnp12, Dialect::Msnp10).await
}
