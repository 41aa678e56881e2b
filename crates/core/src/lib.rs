//! The rules of the msgr service, free of any IO.
//!
//! This crate decides what is allowed (which account names exist, how passwords are kept, and later the contact
//! lists, privacy and presence rules); the server only carries bytes and the store only keeps rows.

pub mod passport;
pub mod password;
