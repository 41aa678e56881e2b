-- Mail senders a user has judged once and for all, and greylisting's memory of who tried when.

-- Per-user allow and block lists of senders. Consulted before the spam score: an allowed sender's mail goes to
-- the Inbox, a blocked one's to Junk (never dropped). Messenger's own lists (contacts.lists) are consulted
-- too, by the mail side, after these; an entry here is the more specific wish and wins over them.
CREATE TABLE mail_sender_lists (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- A whole address (`bob@example.com`) or a whole domain (`@example.com`), lowercased by the code.
    sender     TEXT    NOT NULL COLLATE NOCASE,
    list       TEXT    NOT NULL CHECK (list IN ('allow', 'block')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, sender)
) WITHOUT ROWID;

-- Greylisting (when `[mail] greylisting` is on): one row per triplet of the client's network (IPv4 /24, IPv6
-- /64), the envelope sender and the local recipient. The first attempt is deferred; a retry after the delay
-- passes and marks the triplet, whose later mail then passes at once. Old rows are swept by the store.
CREATE TABLE mail_greylist (
    client_net TEXT    NOT NULL,
    sender     TEXT    NOT NULL COLLATE NOCASE,
    recipient  TEXT    NOT NULL COLLATE NOCASE,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    passed     INTEGER NOT NULL DEFAULT 0 CHECK (passed IN (0, 1)),
    PRIMARY KEY (client_net, sender, recipient)
) WITHOUT ROWID;

CREATE INDEX mail_greylist_by_last_seen ON mail_greylist (last_seen);
