-- Per-user spam training: what each account taught the filter by moving messages into Junk (spam) or out of
-- it (ham). The counts have the shape of the global model's (messages per class, and per token the messages of
-- each class that contained it), so the mail side adds them to the global model when it scores that
-- account's mail. Deleting an account deletes its training.

CREATE TABLE spam_user_totals (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    spam       INTEGER NOT NULL DEFAULT 0 CHECK (spam >= 0),
    ham        INTEGER NOT NULL DEFAULT 0 CHECK (ham >= 0)
);

-- WITHOUT ROWID: the primary key is the only lookup (an account's counts for one message's tokens).
CREATE TABLE spam_user_tokens (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token      TEXT    NOT NULL,
    spam       INTEGER NOT NULL DEFAULT 0 CHECK (spam >= 0),
    ham        INTEGER NOT NULL DEFAULT 0 CHECK (ham >= 0),
    PRIMARY KEY (account_id, token)
) WITHOUT ROWID;
