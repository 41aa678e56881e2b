//! The rules of the msgr service, free of any IO.
//!
//! This crate decides what is allowed: which account names exist, how passwords are kept, what the contact lists
//! may hold and how they change ([`lists`]), who may see or contact whom ([`privacy`]), what presence looks
//! like ([`presence`]), and how fast passwords may be guessed ([`throttle`]). The server only carries bytes and
//! the store only keeps rows.

pub mod lists;
pub mod passport;
pub mod password;
pub mod presence;
pub mod privacy;
pub mod throttle;
