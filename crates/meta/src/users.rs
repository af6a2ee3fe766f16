//! People who sign in: users with a role and, optionally, one tenant;
//! their passwords (argon2id), TOTP second factor and recovery codes; and
//! their browser sessions.
//!
//! A role says what a signed-in person may do; API keys keep their own
//! scopes. The mapping between the two lives in the server, which is where
//! requests are refused. This module decides nothing about HTTP: it
//! stores, checks and records. Every change to a user or a session is
//! written in one transaction with the system-log event recording it
//! (`user.created`, `user.signed_in`, `user.sign_in_failed`, `user.locked`,
//! `session.revoked`, …), as key changes are. A session's `last_seen`,
//! refreshed at most once a minute, is the one write without an event: it
//! changes nothing anyone is allowed to do.
//!
//! Not here: the TOTP arithmetic (the server checks codes and passes the
//! matched time step in), rate limits and cookies.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::db::{digest, hex, queue_event, Meta, MetaError};

mod federated;
pub(crate) use federated::SCHEMA as FEDERATED_SCHEMA;
pub use federated::{FederatedIdentity, FederatedRefused};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users, keys, alert rules and logs.
    Admin,
    /// Reads everything, the system log included; exports and runs
    /// verifications; changes nothing else.
    Auditor,
    /// Reads the events of their tenant (all tenants when unrestricted).
    Viewer,
    /// Owns ingest API keys; cannot sign in to read.
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Auditor, Role::Viewer, Role::Ingest];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A user as listed: never a password hash, TOTP secret or recovery code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    /// The sign-in name, unique.
    pub name: String,
    pub role: Role,
    /// Only events of this tenant may be read by the user.
    pub tenant: Option<String>,
    pub disabled: bool,
    pub created_at: String,
}

/// A user with what the administration pages and `users list` show
/// beside: second factor, lockout, last sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserStatus {
    #[serde(flatten)]
    pub user: User,
    /// A TOTP secret is confirmed.
    pub totp_enabled: bool,
    /// The user must enrol TOTP before using the pages.
    pub totp_required: bool,
    pub failed_attempts: u32,
    /// Sign-in is refused until then (RFC 3339), after too many failures.
    pub locked_until: Option<String>,
    pub last_sign_in: Option<String>,
}

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes: argon2 takes any length, but a
/// request must not make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest user name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Recovery codes issued when TOTP is confirmed.
pub const RECOVERY_CODES: usize = 10;

/// Why a password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "password: {} bytes; the limit is {MAX_PASSWORD_BYTES}",
            password.len()
        ));
    }
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!(
            "password: {chars} characters; at least {MIN_PASSWORD_CHARS} are needed"
        ));
    }
    if password.trim().is_empty() {
        return Some("password: only white space".into());
    }
    None
}

/// Why a user name is refused, if it is: 1 to 64 bytes of letters,
/// digits and `.`, `_`, `-`, `@`.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("name: must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!("name: {} bytes; the limit is {MAX_NAME_BYTES}", name.len()));
    }
    if let Some((at, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Some(format!(
            "name: {c:?} at byte {at} is not allowed (letters, digits, `.`, `_`, `-`, `@`)"
        ));
    }
    None
}

/// The OWASP parameters for argon2id: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("the OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` hashed with argon2id and a random salt.
/// Slow on purpose (tens of milliseconds): run it off async threads.
pub fn hash_password(password: &str) -> Result<String, MetaError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| MetaError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| MetaError::Random(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| MetaError::Random(format!("hashing the password: {e}")))
}

/// Whether `password` is the one `hash` (a PHC string) was made from; the
/// comparison of the outputs takes the same time wherever they differ.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spend the time of a password check on no account, so that a refusal
/// for an unknown name takes as long as one for a wrong password.
pub fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default());
    let _ = verify_password(hash, password);
}

/// Letters and digits without look-alikes (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn random_text(chars: usize) -> Result<String, MetaError> {
    let mut out = String::with_capacity(chars);
    while out.len() < chars {
        let mut b = [0u8; 64];
        getrandom::fill(&mut b).map_err(|e| MetaError::Random(e.to_string()))?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for x in b {
            if (x as usize) < limit && out.len() < chars {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A strong one-time password: 24 characters of 56, about 139 bits.
pub fn generate_password() -> Result<String, MetaError> {
    random_text(24)
}

/// Ten recovery codes of 16 characters (about 93 bits each), grouped
/// `xxxx-xxxx-xxxx-xxxx` for reading.
pub fn generate_recovery_codes() -> Result<Vec<String>, MetaError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let t = random_text(16)?;
            Ok(format!("{}-{}-{}-{}", &t[0..4], &t[4..8], &t[8..12], &t[12..16]))
        })
        .collect()
}

/// The stored form of a recovery code: SHA-256 of it without dashes or
/// spaces. The codes carry over 90 random bits, so a fast hash suffices.
pub fn recovery_digest(code: &str) -> [u8; 32] {
    let clean: String = code.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect();
    digest(&clean)
}

/// A new browser session's secret (the cookie value: 256 random bits,
/// hex) and its CSRF token (another 256 bits).
pub fn new_session_secrets() -> Result<(String, String), MetaError> {
    let mut b = [0u8; 64];
    getrandom::fill(&mut b).map_err(|e| MetaError::Random(e.to_string()))?;
    Ok((hex(&b[..32]), hex(&b[32..])))
}

/// How a session is identified in listings and revocations: the hex of
/// the SHA-256 of its secret (the secret itself is never stored).
pub fn session_handle(secret: &str) -> String {
    hex(&digest(secret))
}

/// What a user may be signed in with, read for a sign-in attempt.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    /// The confirmed TOTP secret, opened.
    pub totp_secret: Option<Vec<u8>>,
    pub totp_required: bool,
    /// The last TOTP time step accepted: a code of that step or an
    /// earlier one is refused (each code works once).
    pub totp_last_step: Option<u64>,
    /// Unix seconds until which sign-in is refused.
    pub locked_until: Option<i64>,
    pub failed_attempts: u32,
}

/// The lockout policy.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Failed attempts in a row that lock the account; 0 never locks.
    pub max_failures: u32,
    pub lock_secs: u64,
}

/// The session bounds.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle_secs: u64,
    /// A session ends this long after sign-in, used or not.
    pub absolute_secs: u64,
    /// The oldest of a user's sessions is ended to make room beyond this.
    pub per_user: usize,
    /// The oldest session of anyone is ended to make room beyond this.
    pub total: usize,
}

/// Where a sign-in came from, for the session and its event.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// How the second step of a sign-in was passed.
#[derive(Debug, Clone)]
pub enum SecondFactor {
    None,
    /// A TOTP code matched this time step.
    Totp(u64),
    /// A recovery code (its digest).
    Recovery([u8; 32]),
    /// Signed in at an OpenID Provider, which checked the user's factors.
    Provider,
}

/// Why a sign-in that passed its checks was still refused when recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRefused {
    /// The TOTP code's step was already used (a replayed code).
    CodeReused,
    /// The recovery code is unknown or used.
    BadRecoveryCode,
    /// The user was disabled, or removed, meanwhile.
    Gone,
}

/// A live session of a signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// [`session_handle`] of the secret.
    pub handle: String,
    pub user_id: String,
    pub user_name: String,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    #[serde(skip)]
    pub csrf: String,
    /// TOTP is required of the user and not set up yet.
    #[serde(skip)]
    pub must_enrol_totp: bool,
}

const USER_COLUMNS: &str = "id, name, role, tenant, disabled, created_at";

fn row_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        // The CHECK constraint admits only the four names.
        role: Role::from_name(&role).unwrap_or(Role::Viewer),
        tenant: r.get(3)?,
        disabled: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn select_user(conn: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
        params![name],
        row_user,
    )
    .optional()
}

fn select_user_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        params![id],
        row_user,
    )
    .optional()
}

fn rfc3339(unix: i64) -> String {
    Timestamp::from_second(unix).map(|t| t.to_string()).unwrap_or_default()
}

/// Characters of a refusal's reason kept in its record: the reason may
/// quote the provider's answer.
const MAX_REASON_CHARS: usize = 512;

/// The event recording a change to `user`.
pub fn user_event(actor: &Value, action: &str, user: &User, outcome: &str, details: Value) -> String {
    let mut event = json!({
        "action": action,
        "actor": actor,
        "targets": [{"type": "user", "id": user.id, "name": user.name}],
        "source": {"service": "sealtrail"},
        "outcome": outcome,
        "details": details,
    });
    if outcome == "failure" {
        event["severity"] = json!("warning");
    }
    event.to_string()
}

/// A changed user was not found by name.
fn no_user(name: &str) -> MetaError {
    MetaError::NoSuchUser(name.to_string())
}

/// Either a database error or a refusal worded for the person asking.
type Change<T> = Result<T, MetaError>;

impl Meta {
    fn in_tx<T>(&self, f: impl FnOnce(&Connection) -> Change<T>) -> Change<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(out)
    }

    /// Create a user with a password hash ([`hash_password`]); `actor` is
    /// who did it, for the `user.created` event.
    pub fn create_user(
        &self,
        name: &str,
        role: Role,
        tenant: Option<&str>,
        password_hash: &str,
        now: Timestamp,
        actor: &Value,
    ) -> Change<User> {
        let mut problems: Vec<String> = name_problem(name).into_iter().collect();
        if let Some(t) = tenant {
            problems.extend(sealtrail_alert::spec::tenant_problem("tenant", t));
        }
        if !problems.is_empty() {
            return Err(MetaError::InvalidUser(problems));
        }
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| MetaError::Random(e.to_string()))?;
        let user = User {
            id: hex(&id),
            name: name.to_string(),
            role,
            tenant: tenant.map(str::to_string),
            disabled: false,
            created_at: now.to_string(),
        };
        self.in_tx(|tx| {
            if select_user(tx, name).map_err(|e| self.sql(e))?.is_some() {
                return Err(MetaError::InvalidUser(vec![format!("name: user {name} exists")]));
            }
            tx.execute(
                "INSERT INTO users (id, name, role, tenant, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    user.id,
                    user.name,
                    role.as_str(),
                    tenant,
                    password_hash,
                    user.created_at
                ],
            )
            .map_err(|e| self.sql(e))?;
            let event = user_event(
                actor,
                "user.created",
                &user,
                "success",
                json!({"role": role.as_str(), "tenant": tenant}),
            );
            queue_event(tx, &event).map_err(|e| self.sql(e))?;
            Ok(user.clone())
        })
    }

    /// Every user, by name, with status.
    pub fn list_users(&self) -> Change<Vec<UserStatus>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {USER_COLUMNS}, totp_secret IS NOT NULL, totp_required, failed_attempts, locked_until, last_sign_in
                 FROM users ORDER BY name"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                let locked: Option<i64> = r.get(9)?;
                Ok(UserStatus {
                    user: row_user(r)?,
                    totp_enabled: r.get(6)?,
                    totp_required: r.get(7)?,
                    failed_attempts: r.get(8)?,
                    locked_until: locked.map(rfc3339),
                    last_sign_in: r.get(10)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.map(|r| r.map_err(|e| self.sql(e))).collect()
    }

    /// The user named `name`, with status.
    pub fn user_status(&self, name: &str) -> Change<Option<UserStatus>> {
        Ok(self.list_users()?.into_iter().find(|u| u.user.name == name))
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Change<Option<User>> {
        select_user(&self.read(), name).map_err(|e| self.sql(e))
    }

    /// Apply `change` (SQL with `?1` the user's id) to user `name` and
    /// record `action`, unless `unchanged` says it is already so.
    fn change_user(
        &self,
        name: &str,
        actor: &Value,
        action: &str,
        details: Value,
        apply: impl FnOnce(&Connection, &User) -> rusqlite::Result<()>,
    ) -> Change<User> {
        self.in_tx(|tx| {
            let user = select_user(tx, name)
                .map_err(|e| self.sql(e))?
                .ok_or_else(|| no_user(name))?;
            apply(tx, &user).map_err(|e| self.sql(e))?;
            let after = select_user_by_id(tx, &user.id)
                .map_err(|e| self.sql(e))?
                .ok_or_else(|| no_user(name))?;
            queue_event(tx, &user_event(actor, action, &after, "success", details)).map_err(|e| self.sql(e))?;
            Ok(after)
        })
    }

    /// Disable (ending every session of) or enable user `name`.
    pub fn set_user_disabled(&self, name: &str, disabled: bool, actor: &Value) -> Change<User> {
        let action = if disabled { "user.disabled" } else { "user.enabled" };
        self.change_user(name, actor, action, json!({}), |tx, u| {
            tx.execute(
                "UPDATE users SET disabled = ?2, failed_attempts = 0, locked_until = NULL WHERE id = ?1",
                params![u.id, disabled],
            )?;
            if disabled {
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![u.id])?;
            }
            Ok(())
        })
    }

    /// Give user `name` another role and tenant.
    pub fn set_user_role(&self, name: &str, role: Role, tenant: Option<&str>, actor: &Value) -> Change<User> {
        if let Some(p) = tenant.and_then(|t| sealtrail_alert::spec::tenant_problem("tenant", t)) {
            return Err(MetaError::InvalidUser(vec![p]));
        }
        let details = json!({"role": role.as_str(), "tenant": tenant});
        self.change_user(name, actor, "user.role_changed", details, |tx, u| {
            tx.execute(
                "UPDATE users SET role = ?2, tenant = ?3 WHERE id = ?1",
                params![u.id, role.as_str(), tenant],
            )?;
            Ok(())
        })
    }

    /// Replace the password of user `name` (hash from [`hash_password`]),
    /// lifting a lockout and ending every session but `keep` (a session
    /// handle: the one changing its own password).
    pub fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        keep: Option<&str>,
        action: &str,
        actor: &Value,
    ) -> Change<User> {
        self.change_user(name, actor, action, json!({}), |tx, u| {
            tx.execute(
                "UPDATE users SET password_hash = ?2, failed_attempts = 0, locked_until = NULL WHERE id = ?1",
                params![u.id, password_hash],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND handle IS NOT ?2",
                params![u.id, keep],
            )?;
            Ok(())
        })
    }

    /// Remove the TOTP secret and recovery codes of user `name` (the user
    /// enrols again at next sign-in if TOTP is required).
    pub fn reset_totp(&self, name: &str, actor: &Value) -> Change<User> {
        self.change_user(name, actor, "user.totp_reset", json!({}), |tx, u| {
            tx.execute(
                "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL WHERE id = ?1",
                params![u.id],
            )?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![u.id])?;
            Ok(())
        })
    }

    /// Whether user `name` must sign in with TOTP.
    pub fn require_totp(&self, name: &str, required: bool, actor: &Value) -> Change<User> {
        let details = json!({"required": required});
        self.change_user(name, actor, "user.totp_required", details, |tx, u| {
            tx.execute(
                "UPDATE users SET totp_required = ?2 WHERE id = ?1",
                params![u.id, required],
            )?;
            Ok(())
        })
    }

    fn totp_place(user_id: &str) -> String {
        format!("user {user_id} totp")
    }

    /// What user `name` may sign in with; `None` for no such user.
    pub fn credentials(&self, name: &str) -> Change<Option<Credentials>> {
        let conn = self.read();
        let row = conn
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS}, password_hash, totp_secret, totp_required, totp_last_step, locked_until, failed_attempts
                     FROM users WHERE name = ?1"
                ),
                params![name],
                |r| {
                    Ok((
                        row_user(r)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, bool>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                        r.get::<_, Option<i64>>(10)?,
                        r.get::<_, u32>(11)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        drop(conn);
        let Some((user, hash, sealed, totp_required, last_step, locked_until, failed_attempts)) = row else {
            return Ok(None);
        };
        let totp_secret = match sealed {
            Some(s) => Some(self.open_secret(&Self::totp_place(&user.id), &s)?),
            None => None,
        };
        Ok(Some(Credentials {
            user,
            password_hash: hash.unwrap_or_default(),
            totp_secret,
            totp_required,
            totp_last_step: last_step.map(|s| s as u64),
            locked_until,
            failed_attempts,
        }))
    }

    fn open_secret(&self, place: &str, sealed: &str) -> Change<Vec<u8>> {
        let key = self.secrets().map_err(|e| MetaError::Secrets(e.to_string()))?;
        let text = key
            .open_text(place, sealed)
            .map_err(|e| MetaError::Secrets(e.to_string()))?;
        unhex(&text).ok_or_else(|| MetaError::Secrets(format!("{place}: not hexadecimal")))
    }

    fn seal_secret(&self, place: &str, secret: &[u8]) -> Change<String> {
        let key = self.secrets().map_err(|e| MetaError::Secrets(e.to_string()))?;
        key.seal_text(place, &hex(secret))
            .map_err(|e| MetaError::Secrets(e.to_string()))
    }

    /// Record a failed sign-in of `name` (`user` when the name is a user)
    /// and lock the account when it reaches the policy's limit. Returns
    /// the unix second the account is locked until, if this failure
    /// locked it.
    pub fn sign_in_failed(
        &self,
        name: &str,
        reason: &str,
        client: &Client,
        policy: Lockout,
        now: Timestamp,
    ) -> Change<Option<i64>> {
        let actor = json!({"id": format!("sign-in:{name}"), "type": "user", "name": name});
        self.in_tx(|tx| {
            let Some(user) = select_user(tx, name).map_err(|e| self.sql(e))? else {
                let event = json!({
                    "action": "user.sign_in_failed",
                    "actor": actor,
                    "source": {"service": "sealtrail"},
                    "outcome": "failure",
                    "severity": "warning",
                    "context": context(client),
                    "details": {"method": "password", "reason": "no such user", "name": name},
                })
                .to_string();
                queue_event(tx, &event).map_err(|e| self.sql(e))?;
                return Ok(None);
            };
            let failed: u32 = tx
                .query_row(
                    "UPDATE users SET failed_attempts = failed_attempts + 1 WHERE id = ?1 RETURNING failed_attempts",
                    params![user.id],
                    |r| r.get(0),
                )
                .map_err(|e| self.sql(e))?;
            let event = with_context(
                user_event(
                    &actor,
                    "user.sign_in_failed",
                    &user,
                    "failure",
                    json!({"method": "password", "reason": reason, "failed_attempts": failed}),
                ),
                client,
            );
            queue_event(tx, &event).map_err(|e| self.sql(e))?;
            if policy.max_failures == 0 || failed < policy.max_failures {
                return Ok(None);
            }
            let until = now.as_second().saturating_add(policy.lock_secs as i64);
            tx.execute(
                "UPDATE users SET locked_until = ?2, failed_attempts = 0 WHERE id = ?1",
                params![user.id, until],
            )
            .map_err(|e| self.sql(e))?;
            let event = with_context(
                user_event(
                    &json!({"id": "sealtrail", "type": "system"}),
                    "user.locked",
                    &user,
                    "success",
                    json!({"failed_attempts": failed, "locked_until": rfc3339(until)}),
                ),
                client,
            );
            queue_event(tx, &event).map_err(|e| self.sql(e))?;
            Ok(Some(until))
        })
    }

    /// Record a sign-in through the OpenID Provider that was refused
    /// (`user.sign_in_failed`, method `oidc`). `name` is the user name the
    /// provider vouched for, when the refusal came after its answer was
    /// checked. Nothing counts towards the lockout: the provider, not
    /// this server, checked the password.
    pub fn provider_sign_in_failed(&self, name: Option<&str>, reason: &str, client: &Client) -> Change<()> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let actor = match name {
            Some(n) => json!({"id": format!("sign-in:{n}"), "type": "user", "name": n}),
            None => json!({"id": "sign-in:oidc", "type": "user"}),
        };
        self.in_tx(|tx| {
            let user = match name {
                Some(n) => select_user(tx, n).map_err(|e| self.sql(e))?,
                None => None,
            };
            let details = json!({"method": "oidc", "reason": reason});
            let event = match &user {
                Some(user) => with_context(
                    user_event(&actor, "user.sign_in_failed", user, "failure", details),
                    client,
                ),
                None => {
                    let mut details = details;
                    if let Some(n) = name {
                        details["name"] = json!(n);
                    }
                    json!({
                        "action": "user.sign_in_failed",
                        "actor": actor,
                        "source": {"service": "sealtrail"},
                        "outcome": "failure",
                        "severity": "warning",
                        "context": context(client),
                        "details": details,
                    })
                    .to_string()
                }
            };
            queue_event(tx, &event).map_err(|e| self.sql(e))
        })
    }

    /// Record a successful sign-in of `user_id` and open its session with
    /// the secret `secret` and CSRF token `csrf`: in one transaction, the
    /// second factor is spent (a TOTP step no older than the last accepted
    /// one, or a recovery code, is refused), failures are forgotten, the
    /// session is stored, the oldest sessions beyond the bounds are ended
    /// and `user.signed_in` is recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn signed_in(
        &self,
        user_id: &str,
        second: &SecondFactor,
        secret: &str,
        csrf: &str,
        client: &Client,
        limits: SessionLimits,
        now: Timestamp,
    ) -> Change<Result<Session, SignInRefused>> {
        let handle = session_handle(secret);
        self.in_tx(|tx| {
            let user = match select_user_by_id(tx, user_id).map_err(|e| self.sql(e))? {
                Some(u) if !u.disabled => u,
                _ => return Ok(Err(SignInRefused::Gone)),
            };
            let method = match second {
                SecondFactor::None => "password",
                SecondFactor::Totp(step) => {
                    let changed = tx
                        .execute(
                            "UPDATE users SET totp_last_step = ?2 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                            params![user.id, *step as i64],
                        )
                        .map_err(|e| self.sql(e))?;
                    if changed == 0 {
                        return Ok(Err(SignInRefused::CodeReused));
                    }
                    "totp"
                }
                SecondFactor::Recovery(d) => {
                    let changed = tx
                        .execute(
                            "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_sha256 = ?2 AND used_at IS NULL",
                            params![user.id, d.as_slice(), now.to_string()],
                        )
                        .map_err(|e| self.sql(e))?;
                    if changed == 0 {
                        return Ok(Err(SignInRefused::BadRecoveryCode));
                    }
                    "recovery_code"
                }
                SecondFactor::Provider => "oidc",
            };
            tx.execute(
                "UPDATE users SET failed_attempts = 0, locked_until = NULL, last_sign_in = ?2 WHERE id = ?1",
                params![user.id, now.to_string()],
            )
            .map_err(|e| self.sql(e))?;
            let t = now.as_second();
            let expires = t.saturating_add(limits.absolute_secs as i64);
            tx.execute(
                "INSERT INTO sessions (handle, user_id, created_at, last_seen, expires_at, user_agent, ip, csrf)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)",
                params![handle, user.id, t, expires, client.user_agent, client.ip, csrf],
            )
            .map_err(|e| self.sql(e))?;
            // Expired sessions go first, then the oldest beyond the bounds.
            tx.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen <= ?2",
                params![t, t.saturating_sub(limits.idle_secs as i64)],
            )
            .map_err(|e| self.sql(e))?;
            tx.execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND handle NOT IN
                 (SELECT handle FROM sessions WHERE user_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2)",
                params![user.id, limits.per_user as i64],
            )
            .map_err(|e| self.sql(e))?;
            tx.execute(
                "DELETE FROM sessions WHERE handle NOT IN
                 (SELECT handle FROM sessions ORDER BY created_at DESC, rowid DESC LIMIT ?1)",
                params![limits.total as i64],
            )
            .map_err(|e| self.sql(e))?;
            let event = with_context(
                user_event(
                    &user_actor(&user),
                    "user.signed_in",
                    &user,
                    "success",
                    json!({"method": method, "session": &handle[..16]}),
                ),
                client,
            );
            queue_event(tx, &event).map_err(|e| self.sql(e))?;
            Ok(Ok(Session {
                handle: handle.clone(),
                user_id: user.id.clone(),
                user_name: user.name.clone(),
                created_at: t,
                last_seen: t,
                expires_at: expires,
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
                csrf: csrf.to_string(),
                must_enrol_totp: false,
            }))
        })
    }

    /// The live session whose secret is `secret`, and its user (enabled):
    /// `None` when unknown, expired (absolute), idle too long, or the user
    /// is disabled. Marks it seen when it was last seen over a minute ago.
    pub fn session(&self, secret: &str, idle_secs: u64, now: Timestamp) -> Change<Option<(User, Session)>> {
        let handle = session_handle(secret);
        let t = now.as_second();
        let found = self
            .read()
            .query_row(
                "SELECT u.id, u.name, u.role, u.tenant, u.disabled, u.created_at,
                            s.created_at, s.last_seen, s.expires_at, s.user_agent, s.ip, s.csrf,
                            u.totp_required AND u.totp_secret IS NULL
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.handle = ?1",
                params![handle],
                |r| {
                    let user = row_user(r)?;
                    let session = Session {
                        handle: handle.clone(),
                        user_id: user.id.clone(),
                        user_name: user.name.clone(),
                        created_at: r.get(6)?,
                        last_seen: r.get(7)?,
                        expires_at: r.get(8)?,
                        user_agent: r.get(9)?,
                        ip: r.get(10)?,
                        csrf: r.get(11)?,
                        must_enrol_totp: r.get(12)?,
                    };
                    Ok((user, session))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((user, session)) = found else {
            return Ok(None);
        };
        if user.disabled || session.expires_at <= t || session.last_seen.saturating_add(idle_secs as i64) <= t {
            return Ok(None);
        }
        if t - session.last_seen >= 60 {
            self.lock()
                .execute(
                    "UPDATE sessions SET last_seen = ?2 WHERE handle = ?1",
                    params![handle, t],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(Some((user, session)))
    }

    /// Live sessions, newest first: of user `user_id`, or of everyone.
    pub fn sessions(&self, user_id: Option<&str>, idle_secs: u64, now: Timestamp) -> Change<Vec<Session>> {
        let t = now.as_second();
        let conn = self.read();
        let mut stmt = conn
            .prepare(
                "SELECT s.handle, s.user_id, u.name, s.created_at, s.last_seen, s.expires_at, s.user_agent, s.ip, s.csrf
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE (?1 IS NULL OR s.user_id = ?1) AND s.expires_at > ?2 AND s.last_seen > ?3 AND NOT u.disabled
                 ORDER BY s.created_at DESC, s.rowid DESC",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![user_id, t, t.saturating_sub(idle_secs as i64)], |r| {
                Ok(Session {
                    handle: r.get(0)?,
                    user_id: r.get(1)?,
                    user_name: r.get(2)?,
                    created_at: r.get(3)?,
                    last_seen: r.get(4)?,
                    expires_at: r.get(5)?,
                    user_agent: r.get(6)?,
                    ip: r.get(7)?,
                    csrf: r.get(8)?,
                    must_enrol_totp: false,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.map(|r| r.map_err(|e| self.sql(e))).collect()
    }

    /// End the session `handle` (of `owner` only, when given): `action` is
    /// `user.signed_out` or `session.revoked`. Returns whether there was
    /// such a session.
    pub fn end_session(&self, handle: &str, owner: Option<&str>, action: &str, actor: &Value) -> Change<bool> {
        self.in_tx(|tx| {
            let user_id: Option<String> = tx
                .query_row(
                    "DELETE FROM sessions WHERE handle = ?1 AND (?2 IS NULL OR user_id = ?2) RETURNING user_id",
                    params![handle, owner],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.sql(e))?;
            let Some(user_id) = user_id else {
                return Ok(false);
            };
            if let Some(user) = select_user_by_id(tx, &user_id).map_err(|e| self.sql(e))? {
                let short = &handle[..handle.len().min(16)];
                let event = user_event(actor, action, &user, "success", json!({"session": short}));
                queue_event(tx, &event).map_err(|e| self.sql(e))?;
            }
            Ok(true)
        })
    }

    /// Start TOTP enrolment of `user_id` with `secret` (kept sealed until
    /// confirmed; a second start replaces the first).
    pub fn begin_totp(&self, user_id: &str, secret: &[u8], actor: &Value) -> Change<()> {
        let sealed = self.seal_secret(&format!("user {user_id} totp pending"), secret)?;
        self.in_tx(|tx| {
            let user = select_user_by_id(tx, user_id)
                .map_err(|e| self.sql(e))?
                .ok_or_else(|| no_user(user_id))?;
            tx.execute(
                "UPDATE users SET totp_pending = ?2 WHERE id = ?1",
                params![user_id, sealed],
            )
            .map_err(|e| self.sql(e))?;
            let event = user_event(actor, "user.totp_enrolment_started", &user, "success", json!({}));
            queue_event(tx, &event).map_err(|e| self.sql(e))?;
            Ok(())
        })
    }

    /// The TOTP secret being enrolled by `user_id`, if any.
    pub fn pending_totp(&self, user_id: &str) -> Change<Option<Vec<u8>>> {
        let sealed: Option<String> = self
            .read()
            .query_row("SELECT totp_pending FROM users WHERE id = ?1", params![user_id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))?
            .flatten();
        sealed
            .map(|s| self.open_secret(&format!("user {user_id} totp pending"), &s))
            .transpose()
    }

    /// Confirm the pending TOTP secret of `user_id`, whose code matched
    /// time step `step`: it becomes the user's second factor, with
    /// `recovery` (digests of new recovery codes) replacing any before.
    pub fn confirm_totp(&self, user_id: &str, step: u64, recovery: &[[u8; 32]], actor: &Value) -> Change<bool> {
        let Some(secret) = self.pending_totp(user_id)? else {
            return Ok(false);
        };
        let sealed = self.seal_secret(&Self::totp_place(user_id), &secret)?;
        self.in_tx(|tx| {
            let user = select_user_by_id(tx, user_id)
                .map_err(|e| self.sql(e))?
                .ok_or_else(|| no_user(user_id))?;
            tx.execute(
                "UPDATE users SET totp_secret = ?2, totp_pending = NULL, totp_last_step = ?3 WHERE id = ?1",
                params![user_id, sealed, step as i64],
            )
            .map_err(|e| self.sql(e))?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![user_id])
                .map_err(|e| self.sql(e))?;
            for d in recovery {
                tx.execute(
                    "INSERT INTO recovery_codes (user_id, code_sha256) VALUES (?1, ?2)",
                    params![user_id, d.as_slice()],
                )
                .map_err(|e| self.sql(e))?;
            }
            let event = user_event(
                actor,
                "user.totp_enabled",
                &user,
                "success",
                json!({"recovery_codes": recovery.len()}),
            );
            queue_event(tx, &event).map_err(|e| self.sql(e))?;
            Ok(true)
        })
    }

    /// How many unused recovery codes user `user_id` has.
    pub fn recovery_codes_left(&self, user_id: &str) -> Change<usize> {
        self.read()
            .query_row(
                "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
                params![user_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.sql(e))
    }
}

/// The actor of what a user does themself.
pub fn user_actor(user: &User) -> Value {
    json!({
        "id": format!("user:{}", user.id),
        "type": "user",
        "name": user.name,
        "roles": [user.role.as_str()],
    })
}

fn context(client: &Client) -> Value {
    let mut c = serde_json::Map::new();
    if let Some(ip) = &client.ip {
        c.insert("ip".into(), json!(ip));
    }
    if let Some(ua) = &client.user_agent {
        c.insert("user_agent".into(), json!(ua.chars().take(512).collect::<String>()));
    }
    Value::Object(c)
}

fn with_context(event: String, client: &Client) -> String {
    match serde_json::from_str::<Value>(&event) {
        Ok(Value::Object(mut m)) => {
            m.insert("context".into(), context(client));
            Value::Object(m).to_string()
        }
        _ => event,
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_name("Admin"), None);
        assert_eq!(Role::from_name("root"), None);
    }

    #[test]
    fn passwords_are_checked_against_the_policy() {
        assert_eq!(
            password_problem("short").as_deref(),
            Some("password: 5 characters; at least 12 are needed")
        );
        assert!(password_problem("exactly12chr").is_none());
        assert!(password_problem(&"x".repeat(1024)).is_none());
        assert_eq!(
            password_problem(&"x".repeat(1025)).as_deref(),
            Some("password: 1025 bytes; the limit is 1024")
        );
        assert!(password_problem("            ").is_some());
        assert!(name_problem("alice@example.com").is_none());
        assert_eq!(
            name_problem("al ice").as_deref(),
            Some("name: ' ' at byte 2 is not allowed (letters, digits, `.`, `_`, `-`, `@`)")
        );
        assert!(name_problem(&"a".repeat(65)).is_some());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterx"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        let other = hash_password("correct horse battery").unwrap();
        assert_ne!(hash, other, "salted");
    }

    #[test]
    fn generated_secrets_are_random_and_well_formed() {
        let a = generate_password().unwrap();
        assert_eq!(a.len(), 24);
        assert!(password_problem(&a).is_none());
        assert_ne!(a, generate_password().unwrap());
        let codes = generate_recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert!(codes.iter().all(|c| c.len() == 19 && c.matches('-').count() == 3));
        assert_eq!(recovery_digest(&codes[0]), recovery_digest(&codes[0].replace('-', " ")));
    }
}
