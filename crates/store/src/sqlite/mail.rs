//! Mailboxes and the outbound queue in SQLite (schema: `migrations/sqlite/0003_mail.sql`).
#![allow(unused_variables)]

use super::SqliteStore;
use crate::mail::*;
use crate::Result;

impl MailStore for SqliteStore {
    fn mailbox(&self, account: &str) -> Result<Option<Mailbox>> { unimplemented!() }
    fn is_account_domain(&self, domain: &str) -> Result<bool> { unimplemented!() }
    fn folders(&self, account: &str) -> Result<Vec<Folder>> { unimplemented!() }
    fn folder(&self, account: &str, name: &str) -> Result<Option<Folder>> { unimplemented!() }
    fn create_folder(&self, account: &str, name: &str) -> Result<Folder> { unimplemented!() }
    fn delete_folder(&self, account: &str, name: &str) -> Result<()> { unimplemented!() }
    fn rename_folder(&self, account: &str, from: &str, to: &str) -> Result<()> { unimplemented!() }
    fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> Result<()> { unimplemented!() }
    fn set_quota(&self, account: &str, quota_bytes: Option<u64>) -> Result<()> { unimplemented!() }
    fn deliver(&self, batch: &[Delivery], default_quota: u64) -> Result<Vec<Result<Delivered>>> { unimplemented!() }
    fn messages(&self, folder_id: i64) -> Result<Vec<MessageMeta>> { unimplemented!() }
    fn message_raw(&self, folder_id: i64, uid: u32) -> Result<Option<Vec<u8>>> { unimplemented!() }
    fn store_flags(&self, folder_id: i64, uids: &[u32], op: FlagOp, flags: Flags, keywords: &[String]) -> Result<Vec<FlagsChanged>> { unimplemented!() }
    fn expunge(&self, folder_id: i64, uids: &[u32]) -> Result<Vec<u32>> { unimplemented!() }
    fn copy_messages(&self, from_folder: i64, uids: &[u32], to_folder: i64, remove_source: bool, default_quota: u64) -> Result<(u32, Vec<(u32, u32)>)> { unimplemented!() }
    fn queue_due(&self, now: i64, limit: usize) -> Result<Vec<QueuedRecipient>> { unimplemented!() }
    fn queue_list(&self) -> Result<Vec<QueuedRecipient>> { unimplemented!() }
    fn queue_message(&self, queue_id: i64) -> Result<Option<Vec<u8>>> { unimplemented!() }
    fn queue_delivered(&self, recipient_ids: &[i64]) -> Result<()> { unimplemented!() }
    fn queue_deferred(&self, recipient_ids: &[i64], next_attempt: i64, error: &str) -> Result<()> { unimplemented!() }
    fn queue_failed(&self, recipient_ids: &[i64], dsn: Option<&Delivery>, default_quota: u64) -> Result<()> { unimplemented!() }
    fn queue_retry_now(&self, now: i64) -> Result<u64> { unimplemented!() }
}
