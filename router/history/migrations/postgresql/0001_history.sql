-- The history of events, the norm items they make, and the audit log (router/core/history.py).
-- Append-only: a row of history_events or history_audit is never updated, and deleted only by the
-- retention purge and the erasure, which say so with `SET LOCAL history.retention = 'on'`.

CREATE TABLE history_events (
    event_id    uuid PRIMARY KEY,
    event       text NOT NULL,
    tenant      text NOT NULL,
    at          timestamptz NOT NULL,
    contact_id  uuid,
    callback_id text,
    reply_id    uuid,
    team        text,
    from_team   text,
    to_team     text,
    channel     text,
    category    text,
    rule        text,
    kind        text,
    due         timestamptz,
    received_at timestamptz,
    on_time     boolean,
    closed      boolean,
    counted     boolean,
    outcome     text,
    origin      text,
    agent       text,
    credential  text,
    transfers   integer,
    attempt     integer,
    deadlines   jsonb,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_events_contact ON history_events (contact_id);
CREATE INDEX history_events_tenant_at ON history_events (tenant, at);
CREATE INDEX history_events_closed ON history_events (tenant, at) WHERE event = 'contact.closed';
CREATE INDEX history_events_agent ON history_events (agent, at) WHERE agent IS NOT NULL;

-- One promise to a resident (a deadline of a contact, a callback request) and how it ended; derived
-- from the events (`history rebuild`). Once the events of its contact are purged or erased it stays
-- without ids and times, for the report: subject_id, contact_id and the times are NULL then.
CREATE TABLE history_items (
    id               bigserial PRIMARY KEY,
    subject_id       text,
    contact_id       uuid,
    tenant           text NOT NULL,
    kind             text NOT NULL,
    channel          text NOT NULL,
    category         text,
    norm_channel     text,
    norm_category    text,
    term             text NOT NULL,
    team             text,
    month            date NOT NULL,
    started_at       timestamptz,
    due              timestamptz,
    extended_due     timestamptz,
    met_at           timestamptz,
    met_by           text,
    breached_at      timestamptz,
    met              boolean NOT NULL,
    on_time          boolean,
    within_extension boolean,
    work_seconds     integer,
    UNIQUE (subject_id, kind)
);
CREATE INDEX history_items_report ON history_items (tenant, month);
CREATE INDEX history_items_contact ON history_items (contact_id);

CREATE INDEX history_items_open ON history_items (tenant, month) WHERE NOT met;

-- The report's aggregate: how many items of a norm that started in a month were met, on time or
-- not, within how many minutes. Kept up to date by every append (the change of the items it made) and
-- recomputed by `history rebuild`; it holds no ids. '' stands for "any" in norm_channel and
-- norm_category (a key of a unique index cannot be NULL and match). Items not met are counted from
-- history_items, as of the report's moment.
CREATE TABLE history_stats (
    tenant           text NOT NULL,
    month            date NOT NULL,
    kind             text NOT NULL,
    norm_channel     text NOT NULL,
    norm_category    text NOT NULL,
    term             text NOT NULL,
    on_time          boolean NOT NULL,
    within_extension boolean NOT NULL,
    minutes          integer NOT NULL,
    n                bigint NOT NULL,
    PRIMARY KEY (tenant, month, kind, norm_channel, norm_category, term, on_time, within_extension, minutes)
);

-- Who viewed or changed which contact, when.
CREATE TABLE history_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    tenant     text NOT NULL,
    contact_id uuid NOT NULL,
    action     text NOT NULL,
    agent      text,
    credential text
);
CREATE INDEX history_audit_contact ON history_audit (contact_id, at);
CREATE INDEX history_audit_agent ON history_audit (agent, at);
CREATE INDEX history_audit_tenant_at ON history_audit (tenant, at);

CREATE FUNCTION history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION '% is append-only: rows are never updated', TG_TABLE_NAME;
    END IF;
    IF coalesce(current_setting('history.retention', true), '') <> 'on' THEN
        RAISE EXCEPTION '% is append-only: rows are removed by the retention purge and the erasure only',
            TG_TABLE_NAME;
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER history_events_append_only BEFORE UPDATE OR DELETE ON history_events
    FOR EACH ROW EXECUTE FUNCTION history_append_only();
CREATE TRIGGER history_audit_append_only BEFORE UPDATE OR DELETE ON history_audit
    FOR EACH ROW EXECUTE FUNCTION history_append_only();
CREATE TRIGGER history_events_no_truncate BEFORE TRUNCATE ON history_events
    FOR EACH STATEMENT EXECUTE FUNCTION history_append_only();
CREATE TRIGGER history_audit_no_truncate BEFORE TRUNCATE ON history_audit
    FOR EACH STATEMENT EXECUTE FUNCTION history_append_only();
