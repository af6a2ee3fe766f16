//! The SQL that capture installs into a tracked database. Every statement
//! is idempotent (`IF NOT EXISTS`, `CREATE OR REPLACE`), so the same text
//! installs version 1 from nothing and brings a version-1 install up to date.

/// The schema that holds everything capture creates.
pub(crate) const SCHEMA: &str = "sealtrail";

/// The install version this code writes. A database holding a newer one is
/// left alone (an older binary must not downgrade it).
pub const VERSION: i32 = 1;

/// Trigger names on tracked tables; uninstall and re-install find them by
/// these names.
pub(crate) const INSERT_TRIGGER: &str = "sealtrail_capture_insert";
pub(crate) const DELETE_TRIGGER: &str = "sealtrail_capture_delete";
pub(crate) const UPDATE_TRIGGER: &str = "sealtrail_capture_update";
pub(crate) const TRUNCATE_TRIGGER: &str = "sealtrail_capture_truncate";
pub(crate) const TABLE_TRIGGERS: [&str; 4] = [INSERT_TRIGGER, DELETE_TRIGGER, UPDATE_TRIGGER, TRUNCATE_TRIGGER];

/// The event-trigger names (one per event).
pub(crate) const EVENT_TRIGGERS: [(&str, &str); 3] = [
    ("sealtrail_ddl_end", "ddl_command_end"),
    ("sealtrail_ddl_drop", "sql_drop"),
    ("sealtrail_ddl_rewrite", "table_rewrite"),
];

/// Tables, indexes and the row-capture functions.
pub(crate) const BASE: &str = r#"
CREATE SCHEMA IF NOT EXISTS sealtrail;
REVOKE ALL ON SCHEMA sealtrail FROM PUBLIC;

CREATE TABLE IF NOT EXISTS sealtrail.install (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version       integer NOT NULL,
    epoch         uuid NOT NULL DEFAULT gen_random_uuid(),
    installed_at  timestamptz NOT NULL DEFAULT now(),
    upgraded_at   timestamptz,
    ddl_capture   boolean NOT NULL,
    drained_xid   xid8,
    drained_id    bigint,
    drained_total bigint NOT NULL DEFAULT 0,
    drained_at    timestamptz
);

CREATE TABLE IF NOT EXISTS sealtrail.tables (
    relid       oid PRIMARY KEY,
    name        text NOT NULL,
    key_columns text[] NOT NULL,
    excluded    text[] NOT NULL
);

-- The key is the drain order: one index to maintain per captured change,
-- and a drained batch is deleted as one key range.
CREATE TABLE IF NOT EXISTS sealtrail.outbox (
    id          bigserial,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    PRIMARY KEY (xid, id)
);

-- Row changes. Arguments: TG_ARGV[0] is the key columns as a JSON array
-- (empty: no primary key), the rest are excluded columns. SECURITY DEFINER
-- so that writers need no right on the outbox, and so cannot forge rows in
-- it; the role recorded is therefore session_user. Kept to one INSERT: the
-- changed columns are found by the drain, and an UPDATE that changes
-- nothing never reaches here (the trigger's WHEN clause).
CREATE OR REPLACE FUNCTION sealtrail.capture_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    INSERT INTO sealtrail.outbox (kind, payload) VALUES (lower(TG_OP), jsonb_build_object(
        'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'key', TG_ARGV[0]::jsonb,
        'before', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - TG_ARGV[1:] END,
        'after', CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - TG_ARGV[1:] END,
        'actor', current_setting('sealtrail.actor', true),
        'reason', current_setting('sealtrail.reason', true),
        'request_id', current_setting('sealtrail.request_id', true),
        'role', session_user::text,
        'application_name', current_setting('application_name', true)));
    RETURN NULL;
END
$fn$;

-- Inserted and deleted rows, once per statement from its transition table
-- (one INSERT … SELECT for a bulk statement instead of one per row).
CREATE OR REPLACE FUNCTION sealtrail.capture_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    common jsonb := jsonb_build_object(
        'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'key', TG_ARGV[0]::jsonb,
        'actor', current_setting('sealtrail.actor', true),
        'reason', current_setting('sealtrail.reason', true),
        'request_id', current_setting('sealtrail.request_id', true),
        'role', session_user::text,
        'application_name', current_setting('application_name', true));
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sealtrail.outbox (kind, payload)
        SELECT 'insert', common || jsonb_build_object('after', to_jsonb(n) - TG_ARGV[1:]) FROM sealtrail_new n;
    ELSE
        INSERT INTO sealtrail.outbox (kind, payload)
        SELECT 'delete', common || jsonb_build_object('before', to_jsonb(o) - TG_ARGV[1:]) FROM sealtrail_old o;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION sealtrail.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    INSERT INTO sealtrail.outbox (kind, payload) VALUES ('truncate', jsonb_build_object(
        'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
        'actor', current_setting('sealtrail.actor', true),
        'reason', current_setting('sealtrail.reason', true),
        'request_id', current_setting('sealtrail.request_id', true),
        'role', session_user::text,
        'application_name', current_setting('application_name', true),
        'statement', current_query()));
    RETURN NULL;
END
$fn$;
"#;

/// The DDL capture function; its event triggers are created separately
/// (they need a superuser).
pub(crate) const DDL_FUNCTION: &str = r#"
-- DDL. Objects in the sealtrail schema are capture's own and not recorded;
-- a DROP is recorded once, from sql_drop (ddl_command_end lists no objects
-- for it).
CREATE OR REPLACE FUNCTION sealtrail.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    objects jsonb;
BEGIN
    IF TG_EVENT = 'ddl_command_end' THEN
        SELECT jsonb_agg(jsonb_build_object('command_tag', d.command_tag, 'object_type', d.object_type,
                   'schema', d.schema_name, 'identity', d.object_identity))
          INTO objects
          FROM pg_event_trigger_ddl_commands() d
         WHERE d.schema_name IS DISTINCT FROM 'sealtrail'
           AND NOT (d.object_type = 'schema' AND d.object_identity = 'sealtrail');
        IF objects IS NULL THEN
            RETURN;
        END IF;
    ELSIF TG_EVENT = 'sql_drop' THEN
        SELECT jsonb_agg(jsonb_build_object('object_type', d.object_type, 'schema', d.schema_name,
                   'identity', d.object_identity, 'original', d.original))
          INTO objects
          FROM pg_event_trigger_dropped_objects() d
         WHERE d.schema_name IS DISTINCT FROM 'sealtrail'
           AND NOT (d.object_type = 'schema' AND d.object_identity = 'sealtrail');
        IF objects IS NULL THEN
            RETURN;
        END IF;
    ELSE
        objects := jsonb_build_array(jsonb_build_object('object_type', 'table',
            'identity', pg_event_trigger_table_rewrite_oid()::regclass::text,
            'rewrite_reason', pg_event_trigger_table_rewrite_reason()));
    END IF;
    INSERT INTO sealtrail.outbox (kind, payload) VALUES ('ddl', jsonb_build_object(
        'event', TG_EVENT, 'command_tag', TG_TAG, 'objects', objects,
        'statement', current_query(),
        'actor', current_setting('sealtrail.actor', true),
        'reason', current_setting('sealtrail.reason', true),
        'request_id', current_setting('sealtrail.request_id', true),
        'role', session_user::text,
        'application_name', current_setting('application_name', true)));
END
$fn$;
"#;
