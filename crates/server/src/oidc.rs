//! OpenID Connect sign-in: the server as a relying party of an OpenID
//! Provider (Keycloak, Entra ID, Okta, Google, …), with the authorization
//! code flow, PKCE (S256), a nonce and a state.
//!
//! [`Oidc::discover`] reads the provider's discovery document and signing
//! keys once at start; [`Oidc::begin`] gives the address to send a browser
//! to and a [`PendingLogin`] for the caller to keep in that browser's
//! session; [`Oidc::finish`] checks the answer against it, exchanges the
//! code, verifies the ID token (signature, issuer, audience, nonce, expiry)
//! and maps its claims to an [`OidcIdentity`] with a Sealtrail role.
//!
//! It deliberately keeps no state of its own and knows nothing of users,
//! sessions or routes: the caller stores the pending login, creates or
//! updates the user, and opens the session. Its HTTP client follows no
//! redirects (so a provider's answer cannot send it elsewhere) and bounds
//! the time and size of every answer.
//!
//! A caller's two routes:
//! - start: `let (url, pending) = oidc.begin();` store `pending` in the
//!   browser's session (replacing any earlier one), answer 303 to `url`;
//! - callback: take `pending` out of the session (so it is used once; none
//!   there is a refusal), parse the query as a [`Callback`], call
//!   [`Oidc::finish_callback`]; on success find or create the user by
//!   ([`OidcIdentity::issuer`], [`OidcIdentity::subject`]) and open a new
//!   session (new id) for it; on failure show the error's message.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IdTokenFields,
    IdTokenVerifier, IssuerUrl, JsonWebKeySetUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};

/// The roles a Sealtrail user can hold; a role claim must name one.
pub const ROLES: [&str; 4] = ["admin", "auditor", "viewer", "ingest"];

/// The ID token claims OpenID Connect defines; they are read as such and
/// cannot hold a role or a tenant.
const STANDARD_CLAIMS: [&str; 31] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
];

/// Largest answer the relying party reads from the provider (discovery
/// document, keys, token response).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// `[oidc]` in the server's configuration (docs/server-config.md).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer, exactly as its discovery document states it
    /// (`{issuer_url}/.well-known/openid-configuration` is read at start).
    pub issuer_url: String,
    /// The client id Sealtrail is registered under at the provider.
    pub client_id: String,
    /// The client secret; absent for a public client (PKCE alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back: the server's
    /// `/auth/oidc/callback` as browsers reach it, registered at the
    /// provider.
    pub redirect_url: String,
    /// Scopes asked for besides `openid`, which is always asked for.
    #[serde(default = "OidcConfig::default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim holding the user's Sealtrail role.
    #[serde(default = "OidcConfig::default_role_claim")]
    pub role_claim: String,
    /// The ID token claim holding the user's tenant; absent: users signed
    /// in this way are bound to no tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_claim: Option<String>,
    /// The role of users whose ID token has no role claim; absent: such
    /// users are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
    /// Shown on the sign-in page: "Sign in with {display_name}".
    #[serde(default = "OidcConfig::default_display_name")]
    pub display_name: String,
    /// Longest time, in milliseconds, one request to the provider may take.
    #[serde(default = "OidcConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest time, in seconds, from the start of a sign-in to the
    /// provider's answer; a later answer is refused.
    #[serde(default = "OidcConfig::default_max_login_seconds")]
    pub max_login_seconds: u64,
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "(hidden)"))
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("role_claim", &self.role_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("default_role", &self.default_role)
            .field("display_name", &self.display_name)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_login_seconds", &self.max_login_seconds)
            .finish()
    }
}

impl OidcConfig {
    /// A configuration with every optional key at its default.
    pub fn new(issuer_url: &str, client_id: &str, redirect_url: &str) -> Self {
        Self {
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            client_secret: None,
            redirect_url: redirect_url.into(),
            scopes: Self::default_scopes(),
            role_claim: Self::default_role_claim(),
            tenant_claim: None,
            default_role: None,
            display_name: Self::default_display_name(),
            timeout_ms: Self::default_timeout_ms(),
            max_login_seconds: Self::default_max_login_seconds(),
        }
    }

    fn default_scopes() -> Vec<String> {
        vec!["openid".into(), "profile".into(), "email".into()]
    }
    fn default_role_claim() -> String {
        "sealtrail_role".into()
    }
    fn default_display_name() -> String {
        "OpenID Connect".into()
    }
    fn default_timeout_ms() -> u64 {
        10_000
    }
    fn default_max_login_seconds() -> u64 {
        600
    }

    /// The first mistake, as `key: what is wrong` (keys relative to
    /// `[oidc]`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in [("issuer_url", &self.issuer_url), ("redirect_url", &self.redirect_url)] {
            match openidconnect::url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {
                    if u.fragment().is_some() {
                        out.push(format!("{key}: {value:?} must not have a fragment (`#…`)"));
                    }
                }
                Ok(_) => out.push(format!("{key}: {value:?} must be an http or https URL with a host")),
                Err(e) => out.push(format!("{key}: {value:?} is not a URL: {e}")),
            }
        }
        if self.client_id.trim().is_empty() {
            out.push("client_id: must not be empty".into());
        }
        if self.client_secret.as_deref().is_some_and(|s| s.is_empty()) {
            out.push("client_secret: must not be empty; leave it out for a public client".into());
        }
        if let Some(s) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            out.push(format!("scopes: {s:?} is not a scope (one word, no spaces)"));
        }
        if self.role_claim.trim().is_empty() {
            out.push("role_claim: must name a claim".into());
        }
        if self.tenant_claim.as_deref().is_some_and(|c| c.trim().is_empty()) {
            out.push("tenant_claim: must name a claim; leave it out for no tenant".into());
        }
        for (key, claim) in [
            ("role_claim", Some(&self.role_claim)),
            ("tenant_claim", self.tenant_claim.as_ref()),
        ] {
            if let Some(c) = claim.filter(|c| STANDARD_CLAIMS.contains(&c.as_str())) {
                out.push(format!(
                    "{key}: {c:?} is a standard OpenID Connect claim; name a claim of the provider's own, such as \"sealtrail_role\""
                ));
            }
        }
        if let Some(r) = self.default_role.as_deref().filter(|r| !ROLES.contains(r)) {
            out.push(format!(
                "default_role: {r:?} is not a role; expected one of {}",
                ROLES.join(", ")
            ));
        }
        if self.display_name.trim().is_empty() || self.display_name.len() > 64 {
            out.push("display_name: must be 1 to 64 bytes".into());
        }
        if self.timeout_ms == 0 {
            out.push("timeout_ms: must be at least 1".into());
        }
        if self.max_login_seconds == 0 {
            out.push("max_login_seconds: must be at least 1".into());
        }
        out
    }
}

/// Why a sign-in through the provider failed; each message says what the
/// user or the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("oidc.{0}")]
    Config(String),
    #[error(
        "could not read the OpenID Provider's discovery document at {url}: {reason}; check oidc.issuer_url and that the provider is reachable from the server"
    )]
    Discovery { url: String, reason: String },
    #[error(
        "the sign-in answer does not belong to the sign-in started in this browser (its state differs); start signing in again"
    )]
    StateMismatch,
    #[error(
        "the sign-in was started {age_seconds} s ago, more than oidc.max_login_seconds ({max_seconds} s); start signing in again"
    )]
    Expired { age_seconds: u64, max_seconds: u64 },
    #[error("the OpenID Provider refused the sign-in: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ProviderRefused { error: String, description: Option<String> },
    #[error(
        "the sign-in answer comes from issuer {got:?}, not from the configured {expected:?}; start signing in again"
    )]
    WrongIssuer { expected: String, got: String },
    #[error("the sign-in answer has no `{0}` parameter")]
    MissingParameter(&'static str),
    #[error(
        "the OpenID Provider did not accept the sign-in code: {reason}; codes are good for one use only, so start signing in again"
    )]
    CodeExchange { reason: String },
    #[error("the OpenID Provider's token answer holds no ID token; is the `openid` scope allowed for this client?")]
    NoIdToken,
    #[error("the ID token was refused: {0}; start signing in again, and if it persists check the provider's and the server's clocks and oidc.client_id")]
    IdToken(String),
    #[error(
        "the ID token of {username:?} has no `{claim}` claim and oidc.default_role is not set; give the user a role at the OpenID Provider"
    )]
    MissingRole { username: String, claim: String },
    #[error("the ID token's `{claim}` claim is {value}; expected one of {} (or a list holding exactly one)", ROLES.join(", "))]
    UnknownRole { claim: String, value: String },
    #[error("the ID token's `{claim}` claim holds several roles ({roles}); give the user exactly one at the OpenID Provider")]
    SeveralRoles { claim: String, roles: String },
    #[error("the ID token's `{claim}` claim is {value}; expected a tenant name of 1 to 128 bytes without control characters")]
    BadTenant { claim: String, value: String },
    #[error("the OpenID Provider could not be reached: {0}")]
    Http(String),
}

impl OidcError {
    /// True when the fault is the provider's or the configuration's (the
    /// provider unreachable, a broken answer) rather than this sign-in's:
    /// a caller answers 502/503 and logs it in full, where other errors
    /// are the user's to see (400/403).
    pub fn is_provider_fault(&self) -> bool {
        matches!(
            self,
            OidcError::Config(_) | OidcError::Discovery { .. } | OidcError::NoIdToken | OidcError::Http(_)
        )
    }
}

/// A sign-in under way: kept by the caller in the browser's session
/// between [`Oidc::begin`] and [`Oidc::finish`], and used once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Seconds since the Unix epoch when the sign-in began.
    pub created: u64,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Who signed in, as the provider vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcIdentity {
    /// The provider's issuer URL; with `subject`, the stable key of the user.
    pub issuer: String,
    /// The provider's unique, never reassigned id of the user (`sub`).
    pub subject: String,
    /// `preferred_username`, else `email`, else `sub`.
    pub username: String,
    pub email: Option<String>,
    /// One of [`ROLES`].
    pub role: String,
    pub tenant: Option<String>,
}

/// The query parameters of the provider's redirect to `redirect_url`
/// (RFC 6749 §4.1.2 and RFC 9207), as a callback handler receives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

/// Every ID token claim beyond the standard ones; the role and tenant
/// claims are read from here by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExtraClaims(serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for ExtraClaims {}

type TokenFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcTokenResponse = StandardTokenResponse<TokenFields, CoreTokenType>;
type OidcClient = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    OidcTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Shortest time between two reads of the provider's keys prompted by ID
/// tokens signed with a key not yet known.
pub const MIN_KEY_REFRESH: Duration = Duration::from_secs(10);

/// The relying party, built once at start by [`Oidc::discover`].
pub struct Oidc {
    config: OidcConfig,
    client: OidcClient,
    http: ProviderHttp,
    /// The issuer as the discovery document states it.
    issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    algs: Vec<CoreJwsSigningAlgorithm>,
    /// The provider's keys: read at start, read again (at most once per
    /// [`MIN_KEY_REFRESH`]) when an ID token names a key not among them,
    /// as after the provider rotated its keys.
    keys: RwLock<CoreJsonWebKeySet>,
    /// When the keys were last read again, if ever.
    keys_reread: Mutex<Option<Instant>>,
}

impl fmt::Debug for Oidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Checks `config`, reads the provider's discovery document and keys
    /// (each request bounded by `timeout_ms`), and builds the client.
    pub async fn discover(config: OidcConfig) -> Result<Oidc, OidcError> {
        if let Some(p) = config.problems().into_iter().next() {
            return Err(OidcError::Config(p));
        }
        let http = ProviderHttp::new(Duration::from_millis(config.timeout_ms))?;
        let issuer =
            IssuerUrl::new(config.issuer_url.clone()).map_err(|e| OidcError::Config(format!("issuer_url: {e}")))?;
        let document = format!(
            "{}/.well-known/openid-configuration",
            config.issuer_url.trim_end_matches('/')
        );
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Discovery {
                url: document.clone(),
                reason: error_chain(&e),
            })?;
        let token_endpoint = metadata.token_endpoint().is_some();
        let issuer = metadata.issuer().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let keys = RwLock::new(metadata.jwks().clone());
        let algs = metadata.id_token_signing_alg_values_supported().clone();
        let redirect = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| OidcError::Config(format!("redirect_url: {e}")))?;
        let client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        if !token_endpoint {
            return Err(OidcError::Discovery {
                url: document,
                reason: "it names no token_endpoint, which the authorization code flow needs".into(),
            });
        }
        Ok(Oidc {
            config,
            client,
            http,
            issuer,
            jwks_uri,
            algs,
            keys,
            keys_reread: Mutex::new(None),
        })
    }

    /// The configuration this relying party was built from.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Starts a sign-in: the provider's authorization URL to redirect the
    /// browser to, and what to keep in its session until the callback.
    pub fn begin(&self) -> (String, PendingLogin) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            created: unix_seconds(SystemTime::now()),
        };
        (url.to_string(), pending)
    }

    /// Finishes a sign-in from the callback's query parameters: refuses a
    /// provider's error answer and an answer from another issuer (RFC
    /// 9207 `iss`), then as [`Oidc::finish`].
    pub async fn finish_callback(
        &self,
        pending: &PendingLogin,
        callback: &Callback,
    ) -> Result<OidcIdentity, OidcError> {
        if let Some(error) = &callback.error {
            // Text from the query string: shown cut short (and to be
            // escaped by whoever renders it).
            return Err(OidcError::ProviderRefused {
                error: cut(error, 64),
                description: callback.error_description.as_deref().map(|d| cut(d, 200)),
            });
        }
        if let Some(iss) = &callback.iss {
            let expected = self.issuer.as_str();
            if iss.trim_end_matches('/') != expected.trim_end_matches('/') {
                return Err(OidcError::WrongIssuer {
                    expected: expected.into(),
                    got: iss.clone(),
                });
            }
        }
        let code = callback.code.as_deref().ok_or(OidcError::MissingParameter("code"))?;
        let state = callback.state.as_deref().ok_or(OidcError::MissingParameter("state"))?;
        self.finish(pending, code, state).await
    }

    /// Finishes a sign-in: checks `state` against the pending login and
    /// its age, exchanges `code` (with the PKCE verifier) for tokens,
    /// verifies the ID token (signature, issuer, audience, nonce, expiry,
    /// access token hash) and maps its claims to an identity.
    pub async fn finish(&self, pending: &PendingLogin, code: &str, state: &str) -> Result<OidcIdentity, OidcError> {
        if !same_secret(pending.state.as_bytes(), state.as_bytes()) {
            return Err(OidcError::StateMismatch);
        }
        let age = unix_seconds(SystemTime::now()).saturating_sub(pending.created);
        if age > self.config.max_login_seconds {
            return Err(OidcError::Expired {
                age_seconds: age,
                max_seconds: self.config.max_login_seconds,
            });
        }
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.into()))
            .map_err(|e| OidcError::CodeExchange { reason: e.to_string() })?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(pending.nonce.clone());
        let mut verifier = self.verifier();
        let claims = match id_token.claims(&verifier, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                if self.reread_keys().await? =>
            {
                verifier = self.verifier();
                id_token.claims(&verifier, &nonce)
            }
            other => other,
        }
        .map_err(claims_error)?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|e| OidcError::IdToken(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| OidcError::IdToken(e.to_string()))?;
            let actual = openidconnect::AccessTokenHash::from_token(
                openidconnect::OAuth2TokenResponse::access_token(&response),
                alg,
                key,
            )
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
            if actual != *expected {
                return Err(OidcError::IdToken(
                    "its at_hash does not match the access token issued with it".into(),
                ));
            }
        }

        let subject = claims.subject().as_str().to_string();
        let email = claims.email().map(|e| e.as_str().to_string());
        let username = claims
            .preferred_username()
            .map(|u| u.as_str().to_string())
            .or_else(|| email.clone())
            .unwrap_or_else(|| subject.clone());
        let extra = &claims.additional_claims().0;
        let role_claim = &self.config.role_claim;
        let role = match extra.get(role_claim) {
            None | Some(serde_json::Value::Null) => match &self.config.default_role {
                Some(r) => r.clone(),
                None => {
                    return Err(OidcError::MissingRole {
                        username,
                        claim: role_claim.clone(),
                    })
                }
            },
            Some(serde_json::Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
            // A list (groups, app roles) names the role by holding exactly one.
            Some(serde_json::Value::Array(items)) => {
                let held: Vec<&str> = ROLES
                    .into_iter()
                    .filter(|r| items.iter().any(|i| i.as_str() == Some(r)))
                    .collect();
                match held[..] {
                    [one] => one.to_string(),
                    [] => {
                        return Err(OidcError::UnknownRole {
                            claim: role_claim.clone(),
                            value: shown(&serde_json::Value::Array(items.clone())),
                        })
                    }
                    _ => {
                        return Err(OidcError::SeveralRoles {
                            claim: role_claim.clone(),
                            roles: held.join(", "),
                        })
                    }
                }
            }
            Some(other) => {
                return Err(OidcError::UnknownRole {
                    claim: role_claim.clone(),
                    value: shown(other),
                })
            }
        };
        let tenant = match &self.config.tenant_claim {
            None => None,
            Some(claim) => match extra.get(claim) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(t))
                    if !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control) =>
                {
                    Some(t.clone())
                }
                Some(other) => {
                    return Err(OidcError::BadTenant {
                        claim: claim.clone(),
                        value: shown(other),
                    })
                }
            },
        };
        Ok(OidcIdentity {
            issuer: claims.issuer().as_str().to_string(),
            subject,
            username,
            email,
            role,
            tenant,
        })
    }
}

impl Oidc {
    /// An ID token verifier over the keys known now: audience
    /// `client_id`, this issuer, the signing algorithms the provider
    /// announced.
    fn verifier(&self) -> IdTokenVerifier<'static, CoreJsonWebKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let client_id = ClientId::new(self.config.client_id.clone());
        let verifier = match &self.config.client_secret {
            Some(secret) => IdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(secret.clone()),
                self.issuer.clone(),
                keys,
            ),
            None => IdTokenVerifier::new_public_client(client_id, self.issuer.clone(), keys),
        };
        verifier.set_allowed_algs(self.algs.clone())
    }

    /// Reads the provider's keys again unless they were read again less
    /// than [`MIN_KEY_REFRESH`] ago; true if they were.
    async fn reread_keys(&self) -> Result<bool, OidcError> {
        {
            let mut last = self.keys_reread.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < MIN_KEY_REFRESH) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let keys = CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http)
            .await
            .map_err(|e| {
                OidcError::Http(format!(
                    "reading its keys at {}: {}",
                    self.jwks_uri.as_str(),
                    error_chain(&e)
                ))
            })?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        tracing::info!(
            jwks_uri = self.jwks_uri.as_str(),
            "read the OpenID Provider's keys again"
        );
        Ok(true)
    }
}

/// A claim's value for an error message, cut short.
fn shown(value: &serde_json::Value) -> String {
    cut(&value.to_string(), 80)
}

/// `text` cut to at most `max` bytes (at a character boundary), marked
/// with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn token_error<E: std::error::Error + 'static>(
    e: RequestTokenError<E, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::CodeExchange {
            reason: match r.error_description() {
                Some(d) => format!("{} ({d})", r.error().as_ref()),
                None => r.error().as_ref().to_string(),
            },
        },
        RequestTokenError::Request(e) => OidcError::Http(error_chain(&e)),
        other => OidcError::CodeExchange {
            reason: error_chain(&other),
        },
    }
}

fn claims_error(e: ClaimsVerificationError) -> OidcError {
    let reason = match &e {
        ClaimsVerificationError::InvalidNonce(_) => {
            "its nonce differs from the one this sign-in sent (replayed or mixed-up answer)".into()
        }
        ClaimsVerificationError::Expired(d) => format!("it has expired ({d})"),
        ClaimsVerificationError::InvalidAudience(d) => format!("it is not meant for this client ({d})"),
        ClaimsVerificationError::InvalidIssuer(d) => format!("it comes from another issuer ({d})"),
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey) => {
            format!(
                "it is signed with a key the provider does not publish (its keys are read again at most every {} s)",
                MIN_KEY_REFRESH.as_secs()
            )
        }
        ClaimsVerificationError::SignatureVerification(s) => format!("its signature does not verify ({s})"),
        other => other.to_string(),
    };
    OidcError::IdToken(reason)
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An error and its sources, joined with `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Why a request to the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderHttpError {
    #[error("{0}")]
    Request(String),
    #[error("the answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the request timed out after {0} ms (oidc.timeout_ms)")]
    TimedOut(u128),
}

/// The relying party's HTTP client: reqwest with redirects off, each
/// request bounded by a time limit and each answer by
/// [`MAX_RESPONSE_BYTES`].
struct ProviderHttp {
    client: reqwest::Client,
    timeout: Duration,
}

impl ProviderHttp {
    fn new(timeout: Duration) -> Result<Self, OidcError> {
        let client = reqwest::Client::builder()
            // Following redirects would let an answer point the server at
            // any address (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            // A sign-in makes one or two requests; a kept connection would
            // mostly be found closed by the provider or a proxy next time.
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| OidcError::Http(error_chain(&e)))?;
        Ok(Self { client, timeout })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ProviderHttpError> {
        let request = reqwest::Request::try_from(request).map_err(|e| ProviderHttpError::Request(error_chain(&e)))?;
        let timed_out = |e: &reqwest::Error| e.is_timeout();
        let mut response = self.client.execute(request).await.map_err(|e| {
            if timed_out(&e) {
                ProviderHttpError::TimedOut(self.timeout.as_millis())
            } else {
                ProviderHttpError::Request(error_chain(&e))
            }
        })?;
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(ProviderHttpError::TooLarge);
        }
        let mut builder = openidconnect::http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                if timed_out(&e) {
                    ProviderHttpError::TimedOut(self.timeout.as_millis())
                } else {
                    ProviderHttpError::Request(error_chain(&e))
                }
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ProviderHttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| ProviderHttpError::Request(e.to_string()))
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = ProviderHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, ProviderHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn configuration_mistakes_name_the_key() {
        let good = OidcConfig::new(
            "https://id.example.com",
            "sealtrail",
            "https://audit.example.com/auth/oidc/callback",
        );
        assert!(good.problems().is_empty(), "{:?}", good.problems());
        let check = |change: &dyn Fn(&mut OidcConfig), start: &str| {
            let mut c = good.clone();
            change(&mut c);
            let problems = c.problems();
            assert!(
                problems.first().is_some_and(|p| p.starts_with(start)),
                "{problems:?} should start with {start}"
            );
        };
        check(
            &|c| c.issuer_url = "id.example.com".into(),
            "issuer_url: \"id.example.com\" is not a URL",
        );
        check(
            &|c| c.issuer_url = "ftp://id.example.com".into(),
            "issuer_url: \"ftp://id.example.com\" must be an http",
        );
        check(
            &|c| c.redirect_url = "https://a.example/cb#x".into(),
            "redirect_url: \"https://a.example/cb#x\" must not have a fragment",
        );
        check(&|c| c.client_id = " ".into(), "client_id: must not be empty");
        check(
            &|c| c.client_secret = Some(String::new()),
            "client_secret: must not be empty",
        );
        check(&|c| c.scopes = vec!["openid".into(), "a b".into()], "scopes: \"a b\"");
        check(&|c| c.role_claim = String::new(), "role_claim:");
        check(&|c| c.tenant_claim = Some(String::new()), "tenant_claim:");
        check(
            &|c| c.role_claim = "email".into(),
            "role_claim: \"email\" is a standard OpenID Connect claim",
        );
        check(
            &|c| c.tenant_claim = Some("sub".into()),
            "tenant_claim: \"sub\" is a standard",
        );
        check(
            &|c| c.default_role = Some("root".into()),
            "default_role: \"root\" is not a role; expected one of admin, auditor, viewer, ingest",
        );
        check(&|c| c.display_name = String::new(), "display_name:");
        check(&|c| c.timeout_ms = 0, "timeout_ms: must be at least 1");
        check(&|c| c.max_login_seconds = 0, "max_login_seconds: must be at least 1");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut c = OidcConfig::new("https://id.example.com", "sealtrail", "https://a.example/cb");
        c.client_secret = Some("s3cr3t-value".into());
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        let p = PendingLogin {
            state: "state-value".into(),
            nonce: "nonce-value".into(),
            pkce_verifier: "verifier-value".into(),
            created: 1,
        };
        let shown = format!("{p:?}");
        assert!(!shown.contains("value"), "{shown}");
    }

    #[test]
    fn long_claim_values_are_cut_in_messages() {
        let long = serde_json::Value::String("é".repeat(100));
        let text = shown(&long);
        assert!(text.ends_with('…') && text.len() <= 84, "{text}");
        assert_eq!(shown(&serde_json::json!(["a"])), "[\"a\"]");
    }
}
