-- Contact lists: per-account settings and list version, groups, contacts and group membership.
--
-- Everything hangs off accounts(id) with ON DELETE CASCADE, so deleting an account deletes its whole list state.
-- Every account always has a list_settings row and group 0 ("Other Contacts"): the trigger below creates them
-- with the account, and this migration backfills them for accounts that already exist. Group 0 needs a stored
-- GUID because MSNP10+ clients cache it.

CREATE TABLE list_settings (
    account_id       INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    -- How many list-changing operations the account has seen (msgr-core's ContactList::version).
    list_version     INTEGER NOT NULL DEFAULT 0 CHECK (list_version >= 0),
    -- The defaults are msgr-core's Settings::default(), the official service's: GTC A, BLP AL.
    gtc              TEXT    NOT NULL DEFAULT 'A' CHECK (gtc IN ('A', 'N')),
    blp              TEXT    NOT NULL DEFAULT 'AL' CHECK (blp IN ('AL', 'BL')),
    phone_home       TEXT    NULL,
    phone_work       TEXT    NULL,
    phone_mobile     TEXT    NULL,
    mobile_contact   INTEGER NOT NULL DEFAULT 0 CHECK (mobile_contact IN (0, 1)),
    mobile_enabled   INTEGER NOT NULL DEFAULT 0 CHECK (mobile_enabled IN (0, 1)),
    personal_message TEXT    NULL
);

-- Named list_groups because GROUPS is an SQL keyword.
CREATE TABLE list_groups (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL CHECK (group_id >= 0),
    guid       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    PRIMARY KEY (account_id, group_id),
    UNIQUE (account_id, guid)
) WITHOUT ROWID;

CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- Lowercased by the code; NOCASE as for accounts.email so that case can never duplicate an entry.
    email      TEXT    NOT NULL COLLATE NOCASE,
    nickname   TEXT    NOT NULL,
    -- The LST bit mask (FL=1, AL=2, BL=4, RL=8); an entry on no list is deleted, never kept as 0.
    lists      INTEGER NOT NULL CHECK (lists BETWEEN 1 AND 15),
    guid       TEXT    NOT NULL,
    UNIQUE (account_id, email),
    UNIQUE (account_id, guid),
    -- Lets contact_group_members require that a contact and its group belong to the same account.
    UNIQUE (id, account_id)
);

-- "Whose lists is this address on": account deletion and reverse lookups.
CREATE INDEX contacts_by_email ON contacts (email);

CREATE TABLE contact_group_members (
    contact_id INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    group_id   INTEGER NOT NULL,
    PRIMARY KEY (contact_id, group_id),
    FOREIGN KEY (contact_id, account_id) REFERENCES contacts (id, account_id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, group_id) REFERENCES list_groups (account_id, group_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX contact_group_members_by_group ON contact_group_members (account_id, group_id);

-- A random version-4 GUID in lowercase 8-4-4-4-12 form, written out in both places that need one.
INSERT INTO list_settings (account_id) SELECT id FROM accounts;
INSERT INTO list_groups (account_id, group_id, guid, name)
SELECT id, 0,
       lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
       substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||
       substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
       'Other Contacts'
FROM accounts;

CREATE TRIGGER accounts_list_state AFTER INSERT ON accounts
BEGIN
    INSERT INTO list_settings (account_id) VALUES (NEW.id);
    INSERT INTO list_groups (account_id, group_id, guid, name)
    VALUES (NEW.id, 0,
            lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
            substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||
            substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
            'Other Contacts');
END;

-- A deleted account disappears from everyone else's lists too, and each list that loses it counts one change,
-- so that clients with a cached copy resynchronise. Otherwise a later account with the same name would inherit
-- places on lists it never asked for, and the forward/reverse pairing between accounts would break.
CREATE TRIGGER accounts_leave_lists BEFORE DELETE ON accounts
BEGIN
    UPDATE list_settings SET list_version = list_version + 1
    WHERE account_id IN (SELECT account_id FROM contacts WHERE email = OLD.email AND account_id <> OLD.id);
    DELETE FROM contacts WHERE email = OLD.email AND account_id <> OLD.id;
END;
