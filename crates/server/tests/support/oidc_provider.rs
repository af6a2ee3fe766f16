//! A real OpenID Provider for tests: panva's oidc-provider run by Node.js
//! from tests/oidc-provider (its packages are installed by
//! scripts/oidc-provider), with a confidential client and static accounts.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use openidconnect::url::Url;

use sealtrail_server::oidc::{Oidc, OidcConfig};

pub const CLIENT_ID: &str = "sealtrail-test";
pub const CLIENT_SECRET: &str = "a-test-client-secret";

/// The provider's node process, stopped when dropped.
pub struct Provider {
    child: Child,
    pub issuer: String,
    redirect: String,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// Starts on `port` (0: a free one) for a client redirecting to
    /// `redirect`; a restart on the same port is the same issuer with a
    /// new signing key.
    pub fn start_for(port: u16, redirect: &str) -> Provider {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider");
        assert!(
            root.join("node_modules/oidc-provider").is_dir(),
            "{} has no node_modules: run scripts/oidc-provider first",
            root.display()
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let stderr_path = dir.path().join("provider.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("provider's standard error file");
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .arg(port.to_string())
            .current_dir(&root)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URI", redirect)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("node runs (Node.js 20 or later must be installed)");
        let stdout = child.stdout.take().expect("piped standard output");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Whatever else the provider prints is read and dropped, so
            // that its writes never fail.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let issuer = line.trim().to_string();
        if !issuer.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("the provider did not start (stdout {line:?}); its standard error:\n{err}");
        }
        Provider {
            child,
            issuer,
            redirect: redirect.to_string(),
            _dir: dir,
        }
    }

    pub fn config(&self) -> OidcConfig {
        let mut c = OidcConfig::new(&self.issuer, CLIENT_ID, &self.redirect);
        c.client_secret = Some(CLIENT_SECRET.into());
        c.scopes = vec!["openid".into(), "profile".into(), "email".into(), "sealtrail".into()];
        c.tenant_claim = Some("sealtrail_tenant".into());
        c
    }

    pub async fn relying_party(&self) -> Oidc {
        Oidc::discover(self.config())
            .await
            .expect("discovery against the provider")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client playing the browser: it keeps cookies and follows no
/// redirect, so that each step can be looked at.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("browser client")
}

/// Where a redirect `response` to a request for `url` points.
pub fn redirect_target(url: &Url, response: &reqwest::Response) -> Url {
    let location = response.headers()["location"].to_str().expect("ASCII Location");
    url.join(location).expect("Location is a URL")
}

/// Signs `account` in on the provider's sign-in `page` found at `url`,
/// and returns where the provider sends the browser next.
pub async fn submit_sign_in(browser: &reqwest::Client, url: &Url, page: &str, account: &str) -> Url {
    let action = page
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no form on {url}: {page}"));
    let response = browser
        .post(url.join(action).expect("form action"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("login={account}"))
        .send()
        .await
        .expect("form posted");
    assert!(
        response.status().is_redirection(),
        "posting the form: {}",
        response.status()
    );
    redirect_target(url, &response)
}
