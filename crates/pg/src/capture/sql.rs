//! The SQL that capture installs into a tracked database. Every statement
//! is idempotent (`IF NOT EXISTS`, `CREATE OR REPLACE`), so the same text
//! installs version 1 from nothing and brings a version-1 install up to date.

/// The schema that holds everything capture creates.
pub(crate) const SCHEMA: &str = "sealtrail";

/// The install version this code writes. A database holding a newer one is
/// left alone (an older binary must not downgrade it). Version 2 added
/// logical-decoding mode (the `mode`, `slot`, `drained_lsn` and gap
/// columns, `set_actor`); version 3 moved row changes from one built
/// `payload` into plain outbox columns, which the writer fills for about
/// half the cost; version 4 dropped the row-capture functions' per-call
/// `SET search_path` for bodies that name everything by its schema;
/// version 5 gives the row-capture functions to [`CAPTURE_ROLE`];
/// version 6 tests an update for a change inside the function instead of
/// in the trigger's `WHEN` clause, and captures inserted and deleted rows
/// with a function per action (`capture_inserted`, `capture_deleted`)
/// instead of one that asked which, leaving `capture_rows_excluding` for
/// tables with excluded columns, and drops the outbox's primary key.
pub const VERSION: i32 = 6;

/// The role that owns the row-capture functions when a superuser
/// installs, so that they run with no right but adding to the outbox.
/// They are SECURITY DEFINER, and converting a row to JSON runs code that
/// the owner of a column's type may have written (a cast to `json`):
/// owned by the installer, that code would run as a superuser. One role
/// for the whole cluster (roles are cluster-wide); uninstall leaves it.
pub const CAPTURE_ROLE: &str = "sealtrail_capture";

/// Makes [`CAPTURE_ROLE`] (installs of several databases may race to it)
/// and gives it the row-capture functions and what they need.
pub(crate) const CAPTURE_ROLE_SQL: &str = r#"
DO $do$
BEGIN
    CREATE ROLE sealtrail_capture NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$do$;
GRANT USAGE ON SCHEMA sealtrail TO sealtrail_capture;
GRANT INSERT ON sealtrail.outbox TO sealtrail_capture;
GRANT USAGE ON SEQUENCE sealtrail.outbox_id_seq TO sealtrail_capture;
ALTER FUNCTION sealtrail.capture_row() OWNER TO sealtrail_capture;
ALTER FUNCTION sealtrail.capture_row_excluding() OWNER TO sealtrail_capture;
ALTER FUNCTION sealtrail.capture_inserted() OWNER TO sealtrail_capture;
ALTER FUNCTION sealtrail.capture_deleted() OWNER TO sealtrail_capture;
ALTER FUNCTION sealtrail.capture_rows_excluding() OWNER TO sealtrail_capture;
ALTER FUNCTION sealtrail.capture_truncate() OWNER TO sealtrail_capture;
"#;

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

-- Version 2: logical-decoding mode. `slot` names its replication slot,
-- `drained_lsn` is the slot position of the last drain, and a gap (changes
-- never captured because a slot was lost) waits in gap_from/gap_to until a
-- drain has recorded it as an event.
ALTER TABLE sealtrail.install ADD COLUMN IF NOT EXISTS mode text NOT NULL DEFAULT 'triggers'
    CHECK (mode IN ('triggers', 'logical'));
ALTER TABLE sealtrail.install ADD COLUMN IF NOT EXISTS slot text;
ALTER TABLE sealtrail.install ADD COLUMN IF NOT EXISTS drained_lsn pg_lsn;
ALTER TABLE sealtrail.install ADD COLUMN IF NOT EXISTS gap_from pg_lsn;
ALTER TABLE sealtrail.install ADD COLUMN IF NOT EXISTS gap_to pg_lsn;

CREATE TABLE IF NOT EXISTS sealtrail.tables (
    relid       oid PRIMARY KEY,
    name        text NOT NULL,
    key_columns text[] NOT NULL,
    excluded    text[] NOT NULL
);

-- (xid, id) is the drain order. The outbox has no index (version 6: the
-- primary key on (xid, id) that installs before it kept cost each
-- captured statement about 11k instructions, 22k of a pgbench
-- simple-update transaction); a drain reads the keys of the waiting rows
-- in one scan and sort per pass, then the rows by their row versions, and
-- deletes them the same way. Drained continuously it stays small.
CREATE TABLE IF NOT EXISTS sealtrail.outbox (
    id          bigserial,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL,
    payload     jsonb NOT NULL
);
ALTER TABLE sealtrail.outbox DROP CONSTRAINT IF EXISTS outbox_pkey;
-- Without a key the drain's deletes need a replica identity of their own
-- wherever a publication covers every table (`FOR ALL TABLES`); whole rows
-- are written to the WAL for them only when wal_level is logical, and
-- writers, who only insert, pay nothing for it.
ALTER TABLE sealtrail.outbox REPLICA IDENTITY FULL;

-- Version 3: a row change is stored in plain columns rather than one
-- payload built by the writing transaction (building it, in jsonb, cost
-- the writer as much again as the rest of the trigger). The drain builds
-- the same payload when it reads the row; DDL and truncate keep `payload`.
-- The images are `json`, the row's own text, so numbers keep their digits.
ALTER TABLE sealtrail.outbox ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS relid oid;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS table_schema text;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS table_name text;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS before json;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS after json;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS actor text;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS reason text;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS request_id text;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS role text;
ALTER TABLE sealtrail.outbox ADD COLUMN IF NOT EXISTS application_name text;

-- Updated rows, one INSERT per row, kept as cheap as the writer can have
-- it: the key columns and the table's name in the payload come from
-- `sealtrail.tables` when the drain reads the row, and the changed columns
-- are found by the drain. An UPDATE that changes nothing is not captured;
-- the test is made here rather than in the trigger's WHEN clause, which
-- PostgreSQL reads back from the catalog for every statement (version 6:
-- about 15k instructions less per captured update, where an update that
-- changes nothing now costs a function call). `*<>` compares the rows'
-- stored bytes: it needs no equality operator, which types such as json
-- and point lack. SECURITY DEFINER so that writers need no right on the
-- outbox, and so cannot forge rows in it; the role recorded is therefore
-- session_user. For a table without excluded columns the images are the
-- rows' own JSON text; `capture_row_excluding` takes the excluded columns
-- as its arguments after the first (the key).
--
-- Version 4: the row-capture functions run under the writer's search_path
-- (a per-call `SET search_path` cost each change about 3 µs), so nothing
-- in them is found through it: every function, operator and type is
-- qualified with pg_catalog and every relation with its schema. A writer
-- whose search_path puts its own schema first therefore cannot substitute
-- a `row_to_json`, `current_setting`, `-` or `json` of its own, which
-- would run as the functions' owner. What is left unqualified is not
-- looked up by name in a schema: `session_user` is a keyword, the
-- transition tables are the trigger's own, the outbox's column defaults
-- were resolved when it was created, and casts and assignments between
-- built-in types go by type. `CREATE OR REPLACE` drops an earlier
-- version's SET clause with the rest of the old definition.
CREATE OR REPLACE FUNCTION sealtrail.capture_row() RETURNS pg_catalog.trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
    IF OLD OPERATOR(pg_catalog.*<>) NEW THEN
        INSERT INTO sealtrail.outbox (kind, relid, table_schema, table_name, before, after,
                                      actor, reason, request_id, role, application_name)
        VALUES ('update', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                pg_catalog.row_to_json(OLD), pg_catalog.row_to_json(NEW),
                pg_catalog.current_setting('sealtrail.actor', true),
                pg_catalog.current_setting('sealtrail.reason', true),
                pg_catalog.current_setting('sealtrail.request_id', true), session_user,
                pg_catalog.current_setting('application_name', true));
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION sealtrail.capture_row_excluding() RETURNS pg_catalog.trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
    IF OLD OPERATOR(pg_catalog.*<>) NEW THEN
        INSERT INTO sealtrail.outbox (kind, relid, table_schema, table_name, before, after,
                                      actor, reason, request_id, role, application_name)
        VALUES ('update', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                (pg_catalog.to_jsonb(OLD) OPERATOR(pg_catalog.-) TG_ARGV[1:])::pg_catalog.json,
                (pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.-) TG_ARGV[1:])::pg_catalog.json,
                pg_catalog.current_setting('sealtrail.actor', true),
                pg_catalog.current_setting('sealtrail.reason', true),
                pg_catalog.current_setting('sealtrail.request_id', true), session_user,
                pg_catalog.current_setting('application_name', true));
    END IF;
    RETURN NULL;
END
$fn$;

-- Inserted and deleted rows, once per statement from its transition table
-- (one INSERT … SELECT for a bulk statement instead of one per row). The
-- context values are read once, into variables, not once per row. One
-- function per action, and the exclusion in a function of its own: every
-- function named in a statement is checked and prepared in each
-- transaction whether it runs or not, and the question of which cost a
-- single-row INSERT about 13k instructions (version 6). Arguments as for
-- `capture_row_excluding`; qualified as it is. The whole row is `n.*`: a
-- bare `n` would be the table's own column of that name; and a captured
-- table may have columns named as the variables, which
-- `#variable_conflict use_variable` resolves to the variables.
CREATE OR REPLACE FUNCTION sealtrail.capture_inserted() RETURNS pg_catalog.trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
#variable_conflict use_variable
DECLARE
    actor      pg_catalog.text := pg_catalog.current_setting('sealtrail.actor', true);
    reason     pg_catalog.text := pg_catalog.current_setting('sealtrail.reason', true);
    request_id pg_catalog.text := pg_catalog.current_setting('sealtrail.request_id', true);
    app        pg_catalog.text := pg_catalog.current_setting('application_name', true);
BEGIN
    INSERT INTO sealtrail.outbox (kind, relid, table_schema, table_name, after,
                                  actor, reason, request_id, role, application_name)
    SELECT 'insert', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, pg_catalog.row_to_json(n.*),
           actor, reason, request_id, session_user, app
      FROM sealtrail_new n;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION sealtrail.capture_deleted() RETURNS pg_catalog.trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
#variable_conflict use_variable
DECLARE
    actor      pg_catalog.text := pg_catalog.current_setting('sealtrail.actor', true);
    reason     pg_catalog.text := pg_catalog.current_setting('sealtrail.reason', true);
    request_id pg_catalog.text := pg_catalog.current_setting('sealtrail.request_id', true);
    app        pg_catalog.text := pg_catalog.current_setting('application_name', true);
BEGIN
    INSERT INTO sealtrail.outbox (kind, relid, table_schema, table_name, before,
                                  actor, reason, request_id, role, application_name)
    SELECT 'delete', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, pg_catalog.row_to_json(o.*),
           actor, reason, request_id, session_user, app
      FROM sealtrail_old o;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION sealtrail.capture_rows_excluding() RETURNS pg_catalog.trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
#variable_conflict use_variable
DECLARE
    actor      pg_catalog.text := pg_catalog.current_setting('sealtrail.actor', true);
    reason     pg_catalog.text := pg_catalog.current_setting('sealtrail.reason', true);
    request_id pg_catalog.text := pg_catalog.current_setting('sealtrail.request_id', true);
    app        pg_catalog.text := pg_catalog.current_setting('application_name', true);
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        INSERT INTO sealtrail.outbox (kind, relid, table_schema, table_name, after,
                                      actor, reason, request_id, role, application_name)
        SELECT 'insert', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
               (pg_catalog.to_jsonb(n.*) OPERATOR(pg_catalog.-) TG_ARGV[1:])::pg_catalog.json,
               actor, reason, request_id, session_user, app
          FROM sealtrail_new n;
    ELSE
        INSERT INTO sealtrail.outbox (kind, relid, table_schema, table_name, before,
                                      actor, reason, request_id, role, application_name)
        SELECT 'delete', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
               (pg_catalog.to_jsonb(o.*) OPERATOR(pg_catalog.-) TG_ARGV[1:])::pg_catalog.json,
               actor, reason, request_id, session_user, app
          FROM sealtrail_old o;
    END IF;
    RETURN NULL;
END
$fn$;

-- The application's actor for the rest of the transaction, in either
-- mode: the settings the triggers read, and in logical mode a
-- transactional message that the drain attaches to the transaction's
-- later changes (the stream carries no settings and no role).
CREATE OR REPLACE FUNCTION sealtrail.set_actor(actor text, reason text DEFAULT NULL, request_id text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM set_config('sealtrail.actor', coalesce(actor, ''), true);
    PERFORM set_config('sealtrail.reason', coalesce(reason, ''), true);
    PERFORM set_config('sealtrail.request_id', coalesce(request_id, ''), true);
    IF (SELECT i.mode FROM sealtrail.install i) = 'logical' THEN
        PERFORM pg_logical_emit_message(true, 'sealtrail', jsonb_build_object(
            'actor', actor, 'reason', reason, 'request_id', request_id,
            'role', session_user::text,
            'application_name', current_setting('application_name', true))::text);
    END IF;
END
$fn$;
GRANT USAGE ON SCHEMA sealtrail TO PUBLIC;
GRANT EXECUTE ON FUNCTION sealtrail.set_actor(text, text, text) TO PUBLIC;

-- Qualified as the row-capture functions are.
CREATE OR REPLACE FUNCTION sealtrail.capture_truncate() RETURNS pg_catalog.trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
    INSERT INTO sealtrail.outbox (kind, payload) VALUES ('truncate', pg_catalog.jsonb_build_object(
        'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
        'actor', pg_catalog.current_setting('sealtrail.actor', true),
        'reason', pg_catalog.current_setting('sealtrail.reason', true),
        'request_id', pg_catalog.current_setting('sealtrail.request_id', true),
        'role', session_user::pg_catalog.text,
        'application_name', pg_catalog.current_setting('application_name', true),
        'statement', pg_catalog.current_query()));
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
    payload jsonb;
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
    payload := jsonb_build_object(
        'event', TG_EVENT, 'command_tag', TG_TAG, 'objects', objects,
        'statement', current_query(),
        'actor', current_setting('sealtrail.actor', true),
        'reason', current_setting('sealtrail.reason', true),
        'request_id', current_setting('sealtrail.request_id', true),
        'role', session_user::text,
        'application_name', current_setting('application_name', true));
    -- In logical mode DDL travels in the WAL stream with the row changes,
    -- in commit order.
    IF (SELECT i.mode FROM sealtrail.install i) = 'logical' THEN
        PERFORM pg_logical_emit_message(true, 'sealtrail.ddl', payload::text);
    ELSE
        INSERT INTO sealtrail.outbox (kind, payload) VALUES ('ddl', payload);
    END IF;
END
$fn$;
"#;
