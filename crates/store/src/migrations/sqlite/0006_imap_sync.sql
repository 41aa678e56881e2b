-- IMAP resynchronisation (CONDSTORE and QRESYNC, RFC 7162), \Recent (RFC 3501) and \Noselect folders.

-- "Which messages of this folder changed since mod-sequence N" is answered from this index, so a session that
-- noticed a change reads only what changed, never the whole folder.
CREATE INDEX mail_messages_by_modseq ON mail_messages (folder_id, modseq);

-- The expunged-UID log: every message removed from a folder (EXPUNGE, MOVE, POP3 deletion, anything that deletes
-- the row) with the mod-sequence of its removal. QRESYNC's `VANISHED (EARLIER)` and the sessions' refresh read
-- it. It goes with the folder (a folder deleted and created again has a new UIDVALIDITY, so nothing is lost).
CREATE TABLE mail_expunged (
    folder_id INTEGER NOT NULL REFERENCES mail_folders(id) ON DELETE CASCADE,
    uid       INTEGER NOT NULL,
    modseq    INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX mail_expunged_by_modseq ON mail_expunged (folder_id, modseq);

-- Every removal takes the folder's next mod-sequence and is logged with it. A trigger, so that no delete path
-- (IMAP, POP3, the web inbox, a future one) can forget it. When the folder itself is being deleted (the rows go
-- by cascade after the folder row), there is nothing to log.
CREATE TRIGGER mail_messages_expunged AFTER DELETE ON mail_messages
WHEN EXISTS (SELECT 1 FROM mail_folders WHERE id = OLD.folder_id)
BEGIN
    UPDATE mail_folders SET highest_modseq = highest_modseq + 1 WHERE id = OLD.folder_id;
    INSERT OR REPLACE INTO mail_expunged (folder_id, uid, modseq)
        SELECT id, OLD.uid, highest_modseq FROM mail_folders WHERE id = OLD.folder_id;
END;

-- \Recent (RFC 3501 §2.3.2): messages with a UID at or above this are recent; the first read-write session that
-- selects the folder (or notices them while selected) takes them and moves this to UIDNEXT, so exactly one
-- session sees each message as recent. Existing folders start with nothing recent.
ALTER TABLE mail_folders ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;
UPDATE mail_folders SET first_recent_uid = uidnext;

-- A folder deleted while it had inferiors keeps its name as a \Noselect placeholder (RFC 3501 §6.3.4): no
-- messages, cannot be selected; CREATE makes it a real folder again, DELETE removes it once it has no inferiors.
ALTER TABLE mail_folders ADD COLUMN noselect INTEGER NOT NULL DEFAULT 0 CHECK (noselect IN (0, 1));
