-- The history of events, the norm items they make, and the audit log (router/core/history.py), for
-- the embedded mode. Times are ISO 8601 text in UTC (`2026-11-02T09:15:00.000000+00:00`), which sorts
-- as time does. Append-only as in PostgreSQL: rows of history_events and history_audit are never
-- updated, and deleted only while the purge or the erasure holds a row in history_retention.

CREATE TABLE history_events (
    event_id    TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    at          TEXT NOT NULL,
    contact_id  TEXT,
    callback_id TEXT,
    reply_id    TEXT,
    team        TEXT,
    from_team   TEXT,
    to_team     TEXT,
    channel     TEXT,
    category    TEXT,
    rule        TEXT,
    kind        TEXT,
    due         TEXT,
    received_at TEXT,
    on_time     INTEGER,
    closed      INTEGER,
    counted     INTEGER,
    outcome     TEXT,
    origin      TEXT,
    agent       TEXT,
    credential  TEXT,
    transfers   INTEGER,
    attempt     INTEGER,
    deadlines   TEXT,
    stored_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
CREATE INDEX history_events_contact ON history_events (contact_id);
CREATE INDEX history_events_tenant_at ON history_events (tenant, at);
CREATE INDEX history_events_agent ON history_events (agent, at);

CREATE TABLE history_items (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id       TEXT,
    contact_id       TEXT,
    tenant           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    channel          TEXT NOT NULL,
    category         TEXT,
    norm_channel     TEXT,
    norm_category    TEXT,
    term             TEXT NOT NULL,
    team             TEXT,
    month            TEXT NOT NULL,
    started_at       TEXT,
    due              TEXT,
    extended_due     TEXT,
    met_at           TEXT,
    met_by           TEXT,
    breached_at      TEXT,
    met              INTEGER NOT NULL,
    on_time          INTEGER,
    within_extension INTEGER,
    work_seconds     INTEGER,
    UNIQUE (subject_id, kind)
);
CREATE INDEX history_items_report ON history_items (tenant, month);
CREATE INDEX history_items_contact ON history_items (contact_id);

CREATE TABLE history_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    agent      TEXT,
    credential TEXT
);
CREATE INDEX history_audit_contact ON history_audit (contact_id, at);
CREATE INDEX history_audit_agent ON history_audit (agent, at);
CREATE INDEX history_audit_tenant_at ON history_audit (tenant, at);

-- A row here, inside the purge's or the erasure's own transaction, is what lets them delete.
CREATE TABLE history_retention (running INTEGER NOT NULL);

CREATE TRIGGER history_events_no_update BEFORE UPDATE ON history_events
BEGIN SELECT RAISE(ABORT, 'history_events is append-only: rows are never updated'); END;
CREATE TRIGGER history_audit_no_update BEFORE UPDATE ON history_audit
BEGIN SELECT RAISE(ABORT, 'history_audit is append-only: rows are never updated'); END;
CREATE TRIGGER history_events_no_delete BEFORE DELETE ON history_events
WHEN NOT EXISTS (SELECT 1 FROM history_retention)
BEGIN SELECT RAISE(ABORT, 'history_events is append-only: rows are removed by the retention purge and the erasure only'); END;
CREATE TRIGGER history_audit_no_delete BEFORE DELETE ON history_audit
WHEN NOT EXISTS (SELECT 1 FROM history_retention)
BEGIN SELECT RAISE(ABORT, 'history_audit is append-only: rows are removed by the retention purge and the erasure only'); END;
