//! Install refuses a capture role that is a superuser: the row-capture
//! functions would run with its rights. The role is cluster-wide, so the
//! test runs its own throw-away cluster; on the shared server it would
//! refuse every other test's install meanwhile.

use sealtrail_pg::capture::{install, CaptureError, InstallOptions, Tables, CAPTURE_ROLE};
use sealtrail_testgen::cluster::Cluster;

#[test]
fn a_superuser_capture_role_is_refused_and_nothing_changes() {
    let pg = Cluster::new(&[]);
    let mut c = pg.client();
    c.batch_execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, v int);
         CREATE ROLE {CAPTURE_ROLE} SUPERUSER NOLOGIN;"
    ))
    .expect("schema and a superuser capture role");
    let opts = InstallOptions {
        tables: Tables::List(vec!["items".into()]),
        ..InstallOptions::default()
    };
    match install(&pg.dsn(), &opts) {
        Err(e @ CaptureError::CaptureRoleSuperuser { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("role {CAPTURE_ROLE} exists and is a superuser")),
                "{text}"
            );
            assert!(text.contains("NOSUPERUSER"), "{text}");
        }
        other => panic!("expected the capture role refused, got {other:?}"),
    }
    let schema: Option<String> = c
        .query_one("SELECT to_regnamespace('sealtrail')::text", &[])
        .expect("look up the schema")
        .get(0);
    assert_eq!(schema, None, "nothing installed");
    let triggers: i64 = c
        .query_one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass", &[])
        .expect("count triggers")
        .get(0);
    assert_eq!(triggers, 0);

    // Once the role is no superuser, install goes through and gives it the
    // functions.
    c.batch_execute(&format!("ALTER ROLE {CAPTURE_ROLE} NOSUPERUSER"))
        .expect("demote the role");
    install(&pg.dsn(), &opts).expect("install");
    let owner: String = c
        .query_one(
            "SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'sealtrail.capture_row()'::regprocedure",
            &[],
        )
        .expect("owner")
        .get(0);
    assert_eq!(owner, CAPTURE_ROLE);
}
