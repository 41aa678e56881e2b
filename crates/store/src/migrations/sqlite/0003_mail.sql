-- Mailboxes: every account receives mail at its Passport name.
--
-- Raw messages are BLOBs in this database (mail_blobs), not files beside it. One SQLite transaction then makes a
-- delivery durable with one WAL fsync (several deliveries share it: the mail side commits them in groups), a
-- message and its summary appear together or not at all after a crash, and no directory fsync or orphan-file
-- sweep is needed. A blob is shared by every copy of a message (several local recipients, the Sent copy, the
-- outbound queue, IMAP COPY) and deleted by the triggers below when nothing refers to it any more.

CREATE TABLE mailboxes (
    account_id       INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    -- Bytes of every message in every folder of the account (kept by triggers on mail_messages).
    used_bytes       INTEGER NOT NULL DEFAULT 0,
    -- The account's own quota; NULL means the configured default ([mail] quota_bytes).
    quota_bytes      INTEGER NULL,
    -- The UIDVALIDITY the next folder created gets. A folder deleted and created again under the same name must
    -- never reuse an old UIDVALIDITY, so this only grows.
    next_uidvalidity INTEGER NOT NULL
);

CREATE TABLE mail_folders (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES mailboxes(account_id) ON DELETE CASCADE,
    -- The IMAP name ("INBOX", "Sent", "Work/Projects"); NOCASE so "Inbox" and "INBOX" are one folder.
    name           TEXT    NOT NULL COLLATE NOCASE,
    -- 'inbox', 'sent', 'drafts', 'junk', 'trash' for the folders every account has (RFC 6154), NULL otherwise.
    special        TEXT    NULL CHECK (special IN ('inbox', 'sent', 'drafts', 'junk', 'trash')),
    uidvalidity    INTEGER NOT NULL,
    uidnext        INTEGER NOT NULL DEFAULT 1 CHECK (uidnext >= 1),
    -- CONDSTORE's HIGHESTMODSEQ: every change to a message of the folder takes the next value.
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    subscribed     INTEGER NOT NULL DEFAULT 1 CHECK (subscribed IN (0, 1)),
    UNIQUE (account_id, name),
    UNIQUE (account_id, special)
);

CREATE TABLE mail_blobs (
    id   INTEGER PRIMARY KEY,
    -- The RFC 5322 bytes exactly as received (trace headers prepended by msgr included).
    data BLOB NOT NULL
);

CREATE TABLE mail_messages (
    id              INTEGER PRIMARY KEY,
    folder_id       INTEGER NOT NULL REFERENCES mail_folders(id) ON DELETE CASCADE,
    -- Denormalised from the folder, for the quota triggers and per-account queries.
    account_id      INTEGER NOT NULL,
    uid             INTEGER NOT NULL CHECK (uid >= 1),
    modseq          INTEGER NOT NULL,
    -- System flags as bits: \Seen 1, \Answered 2, \Flagged 4, \Deleted 8, \Draft 16.
    flags           INTEGER NOT NULL DEFAULT 0,
    -- IMAP keywords, space-separated, sorted.
    keywords        TEXT    NOT NULL DEFAULT '',
    internal_date   INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    blob_id         INTEGER NOT NULL REFERENCES mail_blobs(id),
    -- The parsed summary, so that a folder can be listed without reading any message.
    from_addr       TEXT    NOT NULL DEFAULT '',
    to_addr         TEXT    NOT NULL DEFAULT '',
    subject         TEXT    NOT NULL DEFAULT '',
    sent_date       INTEGER NULL,
    message_id      TEXT    NOT NULL DEFAULT '',
    has_attachments INTEGER NOT NULL DEFAULT 0,
    UNIQUE (folder_id, uid)
);
CREATE INDEX mail_messages_by_blob ON mail_messages (blob_id);

-- The outbound queue: one row per message, one per recipient still to be delivered.
CREATE TABLE mail_queue (
    id         INTEGER PRIMARY KEY,
    -- The reverse-path ('' for a bounce, which must never bounce again).
    sender     TEXT    NOT NULL,
    -- The account that submitted it, which hears about a failure (NULL for mail relayed for nobody local).
    account_id INTEGER NULL REFERENCES accounts(id) ON DELETE SET NULL,
    blob_id    INTEGER NOT NULL REFERENCES mail_blobs(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX mail_queue_by_blob ON mail_queue (blob_id);

CREATE TABLE mail_queue_rcpts (
    id           INTEGER PRIMARY KEY,
    queue_id     INTEGER NOT NULL REFERENCES mail_queue(id) ON DELETE CASCADE,
    recipient    TEXT    NOT NULL,
    -- Lowercased domain of the recipient: deliveries are grouped by it.
    domain       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_error   TEXT    NULL
);
CREATE INDEX mail_queue_rcpts_due ON mail_queue_rcpts (next_attempt);
CREATE INDEX mail_queue_rcpts_by_queue ON mail_queue_rcpts (queue_id);

-- Quota bookkeeping.
CREATE TRIGGER mail_messages_used_insert AFTER INSERT ON mail_messages BEGIN
    UPDATE mailboxes SET used_bytes = used_bytes + NEW.size WHERE account_id = NEW.account_id;
END;
CREATE TRIGGER mail_messages_used_delete AFTER DELETE ON mail_messages BEGIN
    UPDATE mailboxes SET used_bytes = used_bytes - OLD.size WHERE account_id = OLD.account_id;
END;

-- Blob collection: a blob goes with the last message or queue entry that refers to it.
CREATE TRIGGER mail_messages_blob_gc AFTER DELETE ON mail_messages BEGIN
    DELETE FROM mail_blobs WHERE id = OLD.blob_id
        AND NOT EXISTS (SELECT 1 FROM mail_messages WHERE blob_id = OLD.blob_id)
        AND NOT EXISTS (SELECT 1 FROM mail_queue WHERE blob_id = OLD.blob_id);
END;
CREATE TRIGGER mail_queue_blob_gc AFTER DELETE ON mail_queue BEGIN
    DELETE FROM mail_blobs WHERE id = OLD.blob_id
        AND NOT EXISTS (SELECT 1 FROM mail_messages WHERE blob_id = OLD.blob_id)
        AND NOT EXISTS (SELECT 1 FROM mail_queue WHERE blob_id = OLD.blob_id);
END;
-- A queued message goes when its last recipient is done with.
CREATE TRIGGER mail_queue_rcpts_done AFTER DELETE ON mail_queue_rcpts BEGIN
    DELETE FROM mail_queue WHERE id = OLD.queue_id
        AND NOT EXISTS (SELECT 1 FROM mail_queue_rcpts WHERE queue_id = OLD.queue_id);
END;

-- Every account has a mailbox with the five standard folders, created with it (and backfilled below).
CREATE TRIGGER accounts_mailbox AFTER INSERT ON accounts BEGIN
    INSERT INTO mailboxes (account_id, next_uidvalidity)
        VALUES (NEW.id, (CAST(strftime('%s', 'now') AS INTEGER) % 2000000000) + 5);
    INSERT INTO mail_folders (account_id, name, special, uidvalidity)
        SELECT NEW.id, f.name, f.special, m.next_uidvalidity - 5 + f.n
        FROM mailboxes m,
             (SELECT 'INBOX' AS name, 'inbox' AS special, 0 AS n
              UNION ALL SELECT 'Sent', 'sent', 1
              UNION ALL SELECT 'Drafts', 'drafts', 2
              UNION ALL SELECT 'Junk', 'junk', 3
              UNION ALL SELECT 'Trash', 'trash', 4) f
        WHERE m.account_id = NEW.id;
END;

INSERT INTO mailboxes (account_id, next_uidvalidity)
    SELECT id, (CAST(strftime('%s', 'now') AS INTEGER) % 2000000000) + 5 FROM accounts;
INSERT INTO mail_folders (account_id, name, special, uidvalidity)
    SELECT m.account_id, f.name, f.special, m.next_uidvalidity - 5 + f.n
    FROM mailboxes m,
         (SELECT 'INBOX' AS name, 'inbox' AS special, 0 AS n
          UNION ALL SELECT 'Sent', 'sent', 1
          UNION ALL SELECT 'Drafts', 'drafts', 2
          UNION ALL SELECT 'Junk', 'junk', 3
          UNION ALL SELECT 'Trash', 'trash', 4) f;
