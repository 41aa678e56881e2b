-- Accounts: one row per Passport name.
-- email is stored lowercased by the code; COLLATE NOCASE additionally makes the UNIQUE index and lookups
-- case-insensitive, so a row written by an older or careless writer can still not be duplicated by case.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    md5_secret    TEXT    NULL,
    created_at    INTEGER NOT NULL
);
