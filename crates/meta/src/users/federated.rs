//! Users who sign in through an OpenID Provider.
//!
//! The provider's issuer and subject (`sub`, never reassigned) are the key
//! of such a user, not the name: a provider that lets people pick their
//! `preferred_username` must not let one of them take over an account of
//! the same name. So the first sign-in of an identity creates a user of
//! its own, refused when the name belongs to an account not linked to
//! that identity; later sign-ins find it by the key even if the name
//! changed at the provider. Role and tenant follow the provider's claims
//! on every sign-in, each change recorded like one made by an admin.

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::{name_problem, select_user, select_user_by_id, user_event, Change, Role, User};
use crate::{hex, queue_event, Meta, MetaError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS federated_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);";

/// Who an OpenID Provider says signed in, with the role and tenant its
/// claims give.
#[derive(Debug, Clone)]
pub struct FederatedIdentity<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    /// The name a new user gets.
    pub username: &'a str,
    pub role: Role,
    pub tenant: Option<&'a str>,
}

/// Why a provider's identity cannot sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederatedRefused {
    /// The name is held by a user not linked to this identity.
    NameTaken(String),
    /// The name cannot be a user name.
    BadName(String),
    /// The linked user was disabled by an admin.
    Disabled(String),
}

impl std::fmt::Display for FederatedRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FederatedRefused::NameTaken(name) => write!(
                f,
                "the user name {name:?} belongs to another account of this server; an admin must rename one of them"
            ),
            FederatedRefused::BadName(problem) => write!(f, "the provider's user name cannot be used: {problem}"),
            FederatedRefused::Disabled(name) => write!(f, "the account {name:?} is disabled"),
        }
    }
}

impl Meta {
    /// The user an OpenID Provider vouched for, created on its first
    /// sign-in and brought up to date with the provider's role and tenant.
    /// Sign the user in afterwards with [`Meta::signed_in`] and
    /// [`super::SecondFactor::Provider`].
    pub fn federated_user(
        &self,
        who: &FederatedIdentity<'_>,
        now: Timestamp,
    ) -> Change<Result<User, FederatedRefused>> {
        if let Some(problem) = name_problem(who.username) {
            return Ok(Err(FederatedRefused::BadName(problem)));
        }
        let actor = json!({"id": "oidc", "type": "system", "name": who.issuer});
        self.in_tx(|tx| {
            let linked = linked_user(tx, who.issuer, who.subject).map_err(|e| self.sql(e))?;
            let user = match linked {
                Some(user) => user,
                None => {
                    if select_user(tx, who.username).map_err(|e| self.sql(e))?.is_some() {
                        return Ok(Err(FederatedRefused::NameTaken(who.username.to_string())));
                    }
                    let mut id = [0u8; 8];
                    getrandom::fill(&mut id).map_err(|e| MetaError::Random(e.to_string()))?;
                    let user = User {
                        id: hex(&id),
                        name: who.username.to_string(),
                        role: who.role,
                        tenant: who.tenant.map(str::to_string),
                        disabled: false,
                        created_at: now.to_string(),
                    };
                    // No password: such a user signs in only at the provider.
                    tx.execute(
                        "INSERT INTO users (id, name, role, tenant, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                        params![user.id, user.name, user.role.as_str(), user.tenant, user.created_at],
                    )
                    .map_err(|e| self.sql(e))?;
                    tx.execute(
                        "INSERT INTO federated_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![who.issuer, who.subject, user.id, user.created_at],
                    )
                    .map_err(|e| self.sql(e))?;
                    let details = json!({
                        "role": user.role.as_str(),
                        "tenant": user.tenant,
                        "issuer": who.issuer,
                        "subject": who.subject,
                    });
                    queue_event(tx, &user_event(&actor, "user.created", &user, "success", details))
                        .map_err(|e| self.sql(e))?;
                    user
                }
            };
            if user.disabled {
                return Ok(Err(FederatedRefused::Disabled(user.name)));
            }
            let tenant = who.tenant.map(str::to_string);
            if user.role == who.role && user.tenant == tenant {
                return Ok(Ok(user));
            }
            tx.execute(
                "UPDATE users SET role = ?2, tenant = ?3 WHERE id = ?1",
                params![user.id, who.role.as_str(), tenant],
            )
            .map_err(|e| self.sql(e))?;
            let details = json!({
                "role": who.role.as_str(),
                "tenant": tenant,
                "previous_role": user.role.as_str(),
                "previous_tenant": user.tenant,
                "issuer": who.issuer,
            });
            let changed = User {
                role: who.role,
                tenant,
                ..user
            };
            queue_event(tx, &user_event(&actor, "user.role_changed", &changed, "success", details))
                .map_err(|e| self.sql(e))?;
            Ok(Ok(changed))
        })
    }
}

fn linked_user(conn: &Connection, issuer: &str, subject: &str) -> rusqlite::Result<Option<User>> {
    let id: Option<String> = conn
        .query_row(
            "SELECT user_id FROM federated_identities WHERE issuer = ?1 AND subject = ?2",
            params![issuer, subject],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => select_user_by_id(conn, &id),
        None => Ok(None),
    }
}

impl Meta {
    /// The provider identities linked to the user `user_id`, as
    /// `{"issuer", "subject"}` objects.
    pub fn federated_identities(&self, user_id: &str) -> Change<Vec<Value>> {
        identities_of(&self.read(), user_id).map_err(|e| self.sql(e))
    }
}

fn identities_of(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare("SELECT issuer, subject FROM federated_identities WHERE user_id = ?1")?;
    let rows = stmt.query_map(params![user_id], |r| {
        Ok(json!({"issuer": r.get::<_, String>(0)?, "subject": r.get::<_, String>(1)?}))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let meta = Meta::open(dir.path()).expect("meta opens");
        (dir, meta)
    }

    fn alice(role: Role, tenant: Option<&'static str>) -> FederatedIdentity<'static> {
        FederatedIdentity {
            issuer: "http://127.0.0.1:9/",
            subject: "sub-1",
            username: "alice",
            role,
            tenant,
        }
    }

    fn events(meta: &Meta) -> Vec<Value> {
        meta.outbox(100)
            .expect("outbox")
            .into_iter()
            .map(|(_, e)| serde_json::from_str(&e).expect("event JSON"))
            .collect()
    }

    #[test]
    fn the_first_sign_in_creates_the_user_and_later_ones_follow_the_claims() {
        let (_dir, meta) = meta();
        let now = Timestamp::now();
        let first = meta
            .federated_user(&alice(Role::Viewer, Some("acme")), now)
            .expect("stored")
            .expect("allowed");
        assert_eq!(
            (first.name.as_str(), first.role, first.tenant.as_deref()),
            ("alice", Role::Viewer, Some("acme"))
        );
        let again = meta
            .federated_user(&alice(Role::Viewer, Some("acme")), now)
            .expect("stored")
            .expect("allowed");
        assert_eq!(again, first, "the same identity is the same user");
        let promoted = meta
            .federated_user(&alice(Role::Auditor, None), now)
            .expect("stored")
            .expect("allowed");
        assert_eq!(
            (promoted.id.as_str(), promoted.role, promoted.tenant.as_deref()),
            (first.id.as_str(), Role::Auditor, None)
        );
        let actions: Vec<String> = events(&meta)
            .iter()
            .map(|e| e["action"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(actions, ["user.created", "user.role_changed"]);
        let linked = identities_of(&meta.read(), &first.id).expect("identities");
        assert_eq!(
            linked,
            vec![json!({"issuer": "http://127.0.0.1:9/", "subject": "sub-1"})]
        );
    }

    #[test]
    fn a_name_held_by_another_account_is_not_taken_over() {
        let (_dir, meta) = meta();
        let now = Timestamp::now();
        let local = meta
            .create_user(
                "alice",
                Role::Admin,
                None,
                "$argon2id$not-a-real-hash",
                now,
                &json!({"id": "cli", "type": "user"}),
            )
            .expect("local user");
        let refused = meta.federated_user(&alice(Role::Viewer, None), now).expect("stored");
        assert_eq!(refused, Err(FederatedRefused::NameTaken("alice".into())));
        let other = FederatedIdentity {
            subject: "sub-2",
            ..alice(Role::Viewer, None)
        };
        assert_eq!(
            meta.federated_user(&other, now).expect("stored"),
            Err(FederatedRefused::NameTaken("alice".into()))
        );
        let still = meta.user("alice").expect("read").expect("exists");
        assert_eq!((still.id, still.role), (local.id, Role::Admin));
    }

    #[test]
    fn disabled_users_and_bad_names_are_refused() {
        let (_dir, meta) = meta();
        let now = Timestamp::now();
        meta.federated_user(&alice(Role::Viewer, None), now)
            .expect("stored")
            .expect("allowed");
        meta.set_user_disabled("alice", true, &json!({"id": "cli", "type": "user"}))
            .expect("disabled");
        assert_eq!(
            meta.federated_user(&alice(Role::Viewer, None), now).expect("stored"),
            Err(FederatedRefused::Disabled("alice".into()))
        );
        let bad = FederatedIdentity {
            username: "<script>",
            subject: "sub-3",
            ..alice(Role::Viewer, None)
        };
        match meta.federated_user(&bad, now).expect("stored") {
            Err(FederatedRefused::BadName(p)) => assert!(p.contains("at byte 0"), "{p}"),
            other => panic!("{other:?}"),
        }
    }
}
