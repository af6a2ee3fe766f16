//! The fixed vocabulary of the generated world: actions with their
//! weights, target types, services, workflows, names and words. Data only;
//! the drawing happens in `lib.rs`.

/// A target type and the prefix of its ids (`lead` → `LEAD-000123`).
pub(crate) struct TargetType {
    pub(crate) name: &'static str,
    pub(crate) prefix: &'static str,
}

pub(crate) const LEAD: usize = 0;
pub(crate) const INVOICE: usize = 1;
pub(crate) const USER: usize = 2;
pub(crate) const ORDER: usize = 3;
pub(crate) const DOCUMENT: usize = 4;
pub(crate) const ACCOUNT: usize = 5;

pub(crate) const TARGET_TYPES: [TargetType; 6] = [
    TargetType {
        name: "lead",
        prefix: "LEAD",
    },
    TargetType {
        name: "invoice",
        prefix: "INV",
    },
    TargetType {
        name: "user",
        prefix: "USR",
    },
    TargetType {
        name: "order",
        prefix: "ORD",
    },
    TargetType {
        name: "document",
        prefix: "DOC",
    },
    TargetType {
        name: "account",
        prefix: "ACC",
    },
];

/// Namespaces, each with its service, the errors its failures report and
/// the kind of `details` its events carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    Lead,
    Invoice,
    User,
    Order,
    Document,
    Report,
    ApiKey,
    Payment,
    Settings,
}

impl Ns {
    pub(crate) fn service(self) -> &'static str {
        match self {
            Ns::Lead => "crm-api",
            Ns::Invoice => "billing-api",
            Ns::User | Ns::ApiKey => "auth-service",
            Ns::Order => "orders-api",
            Ns::Document => "docs-service",
            Ns::Report => "reporting",
            Ns::Payment => "payments-gateway",
            Ns::Settings => "admin-console",
        }
    }

    pub(crate) fn category(self) -> &'static str {
        match self {
            Ns::Lead | Ns::Order => "sales",
            Ns::Invoice | Ns::Payment => "billing",
            Ns::User | Ns::ApiKey => "security",
            Ns::Document | Ns::Report => "data",
            Ns::Settings => "admin",
        }
    }

    /// `(error.type, error.message)` pairs for failures in this namespace.
    pub(crate) fn errors(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Ns::User | Ns::ApiKey => &[
                ("InvalidCredentials", "password did not match"),
                ("MfaRequired", "second factor missing or expired"),
                ("AccountLocked", "too many failed attempts"),
                ("PermissionDenied", "actor lacks the admin role"),
            ],
            Ns::Payment | Ns::Invoice => &[
                ("CardDeclined", "card declined by issuer"),
                ("ValidationError", "amount must be positive"),
                ("UpstreamTimeout", "payment provider timed out after 30 s"),
                ("Conflict", "invoice was modified concurrently"),
            ],
            _ => &[
                ("ValidationError", "required field missing: owner"),
                ("PermissionDenied", "actor may not modify this record"),
                ("NotFound", "record no longer exists"),
                ("Conflict", "version mismatch, reload and retry"),
                ("UpstreamTimeout", "database query exceeded 5 s"),
            ],
        }
    }
}

/// One dotted action and how events of it look.
pub(crate) struct Action {
    pub(crate) name: &'static str,
    pub(crate) ns: Ns,
    /// Relative frequency.
    pub(crate) weight: u32,
    pub(crate) crud: Option<&'static str>,
    /// Target types: the first is always present when the list is not
    /// empty, the second on some events.
    pub(crate) targets: &'static [usize],
    /// The workflow such events usually belong to, if any.
    pub(crate) workflow: Option<&'static str>,
    /// Message template: `{a}` actor, `{t}` first target id, `{s}` second
    /// target id, `{w}` a word from the long-tailed vocabulary, `{c}` a
    /// common domain word, `{n}` a small number.
    pub(crate) message: &'static str,
    /// Median duration in milliseconds.
    pub(crate) median_ms: f64,
    /// Always a failure (`user.login_failed`, `payment.failed`).
    pub(crate) failed: bool,
}

#[allow(clippy::too_many_arguments)] // one row of the table below
const fn a(
    name: &'static str,
    ns: Ns,
    weight: u32,
    crud: Option<&'static str>,
    targets: &'static [usize],
    workflow: Option<&'static str>,
    message: &'static str,
    median_ms: f64,
) -> Action {
    Action {
        name,
        ns,
        weight,
        crud,
        targets,
        workflow,
        message,
        median_ms,
        failed: false,
    }
}

const fn failed(mut action: Action) -> Action {
    action.failed = true;
    action
}

const C: Option<&str> = Some("c");
const R: Option<&str> = Some("r");
const U: Option<&str> = Some("u");
const D: Option<&str> = Some("d");

pub(crate) const ACTIONS: [Action; 46] = [
    a(
        "lead.created",
        Ns::Lead,
        60,
        C,
        &[LEAD, ACCOUNT],
        Some("lead-intake"),
        "Lead {t} created from {w} campaign",
        35.0,
    ),
    a(
        "lead.updated",
        Ns::Lead,
        80,
        U,
        &[LEAD],
        None,
        "Lead {t} updated by {a}: {c} changed",
        22.0,
    ),
    a(
        "lead.qualified",
        Ns::Lead,
        25,
        U,
        &[LEAD],
        Some("lead-intake"),
        "{a} qualified lead {t} after {n} calls",
        25.0,
    ),
    a(
        "lead.assigned",
        Ns::Lead,
        30,
        U,
        &[LEAD, USER],
        Some("lead-routing"),
        "Lead {t} assigned to {s} for {w} follow-up",
        18.0,
    ),
    a(
        "lead.converted",
        Ns::Lead,
        10,
        U,
        &[LEAD, ACCOUNT],
        None,
        "Lead {t} converted to account {s}",
        60.0,
    ),
    a(
        "lead.deleted",
        Ns::Lead,
        5,
        D,
        &[LEAD],
        None,
        "Lead {t} deleted as {c} duplicate",
        15.0,
    ),
    a(
        "lead.viewed",
        Ns::Lead,
        120,
        R,
        &[LEAD],
        None,
        "{a} viewed lead {t}",
        8.0,
    ),
    a(
        "invoice.created",
        Ns::Invoice,
        40,
        C,
        &[INVOICE, ACCOUNT],
        Some("billing-run"),
        "Invoice {t} drafted for account {s}",
        40.0,
    ),
    a(
        "invoice.sent",
        Ns::Invoice,
        35,
        U,
        &[INVOICE],
        Some("billing-run"),
        "Invoice {t} sent by email, {w} template",
        120.0,
    ),
    a(
        "invoice.paid",
        Ns::Invoice,
        30,
        U,
        &[INVOICE],
        Some("dunning"),
        "Invoice {t} marked paid after {n} days",
        30.0,
    ),
    a(
        "invoice.voided",
        Ns::Invoice,
        4,
        U,
        &[INVOICE],
        None,
        "Invoice {t} voided: {c} error",
        25.0,
    ),
    a(
        "invoice.deleted",
        Ns::Invoice,
        2,
        D,
        &[INVOICE],
        None,
        "Invoice {t} deleted by {a}",
        20.0,
    ),
    a(
        "invoice.exported",
        Ns::Invoice,
        8,
        R,
        &[INVOICE],
        Some("month-end-close"),
        "Invoice {t} exported for {c} review",
        300.0,
    ),
    a(
        "invoice.viewed",
        Ns::Invoice,
        60,
        R,
        &[INVOICE],
        None,
        "{a} opened invoice {t}",
        9.0,
    ),
    a(
        "user.login",
        Ns::User,
        250,
        None,
        &[],
        Some("sso-login"),
        "{a} signed in",
        45.0,
    ),
    a("user.logout", Ns::User, 120, None, &[], None, "{a} signed out", 5.0),
    failed(a(
        "user.login_failed",
        Ns::User,
        30,
        None,
        &[],
        Some("sso-login"),
        "Sign-in refused for {a}",
        40.0,
    )),
    a(
        "user.password_changed",
        Ns::User,
        8,
        U,
        &[USER],
        None,
        "Password changed for {t}",
        90.0,
    ),
    a(
        "user.mfa_enabled",
        Ns::User,
        4,
        U,
        &[USER],
        Some("onboarding"),
        "Second factor enrolled for {t}",
        70.0,
    ),
    a(
        "user.role_granted",
        Ns::User,
        6,
        U,
        &[USER],
        None,
        "{a} granted {c} role to {t}",
        20.0,
    ),
    a(
        "user.role_revoked",
        Ns::User,
        3,
        U,
        &[USER],
        None,
        "{a} revoked {c} role from {t}",
        20.0,
    ),
    a(
        "user.created",
        Ns::User,
        8,
        C,
        &[USER],
        Some("onboarding"),
        "User {t} created by {a}",
        55.0,
    ),
    a(
        "user.invited",
        Ns::User,
        6,
        C,
        &[USER],
        Some("onboarding"),
        "{a} invited {t} to the {w} team",
        30.0,
    ),
    a(
        "user.deleted",
        Ns::User,
        2,
        D,
        &[USER],
        Some("offboarding"),
        "User {t} removed",
        50.0,
    ),
    a(
        "order.created",
        Ns::Order,
        60,
        C,
        &[ORDER, ACCOUNT],
        Some("checkout"),
        "Order {t} placed with {n} items",
        80.0,
    ),
    a(
        "order.updated",
        Ns::Order,
        40,
        U,
        &[ORDER],
        None,
        "Order {t} updated: {c} changed",
        25.0,
    ),
    a(
        "order.shipped",
        Ns::Order,
        30,
        U,
        &[ORDER],
        Some("fulfilment"),
        "Order {t} shipped via {w} carrier",
        45.0,
    ),
    a(
        "order.cancelled",
        Ns::Order,
        8,
        U,
        &[ORDER],
        None,
        "Order {t} cancelled by {a}",
        30.0,
    ),
    a(
        "order.refunded",
        Ns::Order,
        5,
        U,
        &[ORDER, INVOICE],
        Some("returns"),
        "Order {t} refunded against {s}",
        150.0,
    ),
    a(
        "order.viewed",
        Ns::Order,
        70,
        R,
        &[ORDER],
        None,
        "{a} viewed order {t}",
        7.0,
    ),
    a(
        "document.viewed",
        Ns::Document,
        80,
        R,
        &[DOCUMENT],
        None,
        "{a} viewed document {t}",
        12.0,
    ),
    a(
        "document.downloaded",
        Ns::Document,
        30,
        R,
        &[DOCUMENT],
        None,
        "Document {t} downloaded, {c} copy",
        60.0,
    ),
    a(
        "document.shared",
        Ns::Document,
        10,
        U,
        &[DOCUMENT, USER],
        None,
        "Document {t} shared with {s}",
        25.0,
    ),
    a(
        "document.uploaded",
        Ns::Document,
        20,
        C,
        &[DOCUMENT],
        None,
        "Document {t} uploaded: {w} {c} scan",
        200.0,
    ),
    a(
        "document.deleted",
        Ns::Document,
        4,
        D,
        &[DOCUMENT],
        Some("retention"),
        "Document {t} deleted under {c} policy",
        40.0,
    ),
    a(
        "report.generated",
        Ns::Report,
        10,
        C,
        &[],
        Some("nightly-export"),
        "Report {w} generated with {n} sections",
        2500.0,
    ),
    a(
        "report.exported",
        Ns::Report,
        6,
        R,
        &[],
        Some("nightly-export"),
        "{c} report exported to {w} storage",
        1800.0,
    ),
    a(
        "report.scheduled",
        Ns::Report,
        2,
        C,
        &[],
        None,
        "{a} scheduled the {w} report",
        20.0,
    ),
    a(
        "api_key.created",
        Ns::ApiKey,
        2,
        C,
        &[USER],
        None,
        "API key issued to {t}",
        15.0,
    ),
    a(
        "api_key.revoked",
        Ns::ApiKey,
        1,
        D,
        &[USER],
        None,
        "API key of {t} revoked: {c}",
        12.0,
    ),
    a(
        "api_key.used",
        Ns::ApiKey,
        40,
        R,
        &[USER],
        None,
        "API key of {t} used",
        3.0,
    ),
    a(
        "payment.captured",
        Ns::Payment,
        40,
        C,
        &[INVOICE, ORDER],
        Some("checkout"),
        "Payment captured for {t}",
        350.0,
    ),
    failed(a(
        "payment.failed",
        Ns::Payment,
        6,
        C,
        &[INVOICE],
        Some("dunning"),
        "Payment for {t} failed, retry {n}",
        400.0,
    )),
    a(
        "payment.refunded",
        Ns::Payment,
        4,
        C,
        &[INVOICE, ORDER],
        Some("returns"),
        "Refund issued for {t}",
        380.0,
    ),
    a(
        "settings.updated",
        Ns::Settings,
        5,
        U,
        &[ACCOUNT],
        None,
        "{a} changed {c} settings of {t}",
        30.0,
    ),
    a(
        "settings.viewed",
        Ns::Settings,
        6,
        R,
        &[ACCOUNT],
        None,
        "{a} viewed settings of {t}",
        6.0,
    ),
];

pub(crate) const TENANTS: [&str; 20] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "vandelay",
    "oscorp",
    "gringotts",
    "monarch",
    "nakatomi",
    "duff",
    "pied-piper",
    "massive-dynamic",
];

pub(crate) const FIRST_NAMES: [&str; 32] = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Niklaus",
    "Sophie",
    "Bjarne",
    "Anita",
    "Guido",
    "Shafi",
    "Donald",
    "Leslie",
    "Zoë",
    "José",
    "Chloé",
    "Søren",
    "Ngozi",
    "Wei",
    "Priya",
    "Mateus",
    "Aiko",
];

pub(crate) const LAST_NAMES: [&str; 32] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Backus",
    "Johnson",
    "Wirth",
    "Wilson",
    "Stroustrup",
    "Borg",
    "van Rossum",
    "Goldwasser",
    "Knuth",
    "Lamport",
    "Müller",
    "García",
    "Okafor",
    "Zhang",
    "Sharma",
    "Silva",
    "Tanaka",
    "Nielsen",
    "O'Brien",
];

pub(crate) const ROLES: [&str; 8] = [
    "sales-rep",
    "sales-manager",
    "billing-admin",
    "support",
    "admin",
    "auditor",
    "viewer",
    "ops",
];

pub(crate) const SERVICE_ACTORS: [&str; 8] = [
    "billing-worker",
    "crm-sync",
    "import-job",
    "webhook-relay",
    "report-runner",
    "dunning-bot",
    "search-indexer",
    "ledger-exporter",
];

pub(crate) const SYSTEM_ACTORS: [&str; 4] = ["scheduler", "migrator", "retention", "backup"];

pub(crate) const ENVIRONMENTS: [&str; 3] = ["production", "staging", "eu-production"];

/// Common words of the domain, used in messages so that full-text search
/// has terms that match a large share of events.
pub(crate) const COMMON_WORDS: [&str; 24] = [
    "customer",
    "priority",
    "quarterly",
    "renewal",
    "urgent",
    "batch",
    "manual",
    "import",
    "contract",
    "budget",
    "support",
    "audit",
    "compliance",
    "pricing",
    "status",
    "owner",
    "address",
    "discount",
    "legal",
    "region",
    "billing",
    "security",
    "marketing",
    "partner",
];

/// Syllables of the long-tailed vocabulary: three of them make a word, so
/// there are 32³ = 32,768 words, drawn with a Zipf-like skew: a few are
/// everywhere, most are rare.
pub(crate) const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "re", "su", "ta", "ve", "no", "bri", "dan", "el", "fo", "gar", "hin", "jo", "ku", "lis", "mor",
    "nep", "or", "pal", "qui", "ros", "sel", "tor", "ul", "vin", "wex", "yal", "zen", "ar", "bo",
];

pub(crate) const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "sealtrail-client/1.4 (python 3.12)",
];

/// `(field, before, after)` for the `changes` of update events.
pub(crate) const CHANGES: [(&str, &str, &str); 6] = [
    ("status", "open", "closed"),
    ("status", "new", "qualified"),
    ("owner", "unassigned", "team-emea"),
    ("priority", "low", "high"),
    ("stage", "proposal", "negotiation"),
    ("email", "old@example.com", "new@example.com"),
];

pub(crate) const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
pub(crate) const LEAD_SOURCES: [&str; 5] = ["webinar", "referral", "ads", "trade-show", "website"];
pub(crate) const LOGIN_METHODS: [&str; 4] = ["password", "sso", "passkey", "magic-link"];
pub(crate) const FORMATS: [&str; 3] = ["csv", "xlsx", "pdf"];
pub(crate) const OFFSETS: [(&str, i64); 6] = [
    ("+01:00", 60),
    ("+02:00", 120),
    ("-05:00", -300),
    ("+05:30", 330),
    ("-08:00", -480),
    ("+09:00", 540),
];
