//! Real peer processes the tests start: the OIDC provider (npm
//! `oidc-provider`, under `tests/peers/oidc`). A missing tool skips the test
//! loudly, or fails it when `STAGEDOOR_REQUIRE_PEERS=1`.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncBufReadExt;

use crate::peers_required;

/// Skips (returns None) or fails, as CI demands.
fn missing(what: &str) -> Option<std::convert::Infallible> {
    assert!(!peers_required(), "required peer missing: {what}");
    eprintln!("SKIPPED: {what}");
    None
}

/// The OIDC provider, killed when dropped (its stdin closes too).
pub struct OidcPeer {
    pub issuer: String,
    pub client: reqwest::Client,
    _child: tokio::process::Child,
}

impl OidcPeer {
    /// Starts the provider with one confidential client. `extra` is merged into its configuration.
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        post_logout_uri: &str,
        extra: serde_json::Value,
    ) -> Option<OidcPeer> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/oidc");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            missing(&format!(
                "oidc-provider is not installed; run `npm ci --prefix {}`",
                dir.display()
            ))?;
        }
        let mut config = serde_json::json!({
            "clients": [{
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [post_logout_uri],
            }]
        });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let child = tokio::process::Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                missing(&format!("node cannot be started: {e}"))?;
                unreachable!()
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await
            .expect("read the provider's first line")
            .expect("the OIDC provider exited before it was ready");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        let issuer = ready["issuer"].as_str().expect("issuer").to_string();
        Some(OidcPeer {
            issuer,
            client: reqwest::Client::new(),
            _child: child,
        })
    }

    pub async fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let res = self
            .client
            .post(format!("{}/__control/{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .expect("control request");
        assert!(
            res.status().is_success(),
            "control {path}: {}",
            res.status()
        );
        res.json().await.unwrap_or(serde_json::Value::Null)
    }

    pub async fn stats(&self) -> serde_json::Value {
        self.client
            .get(format!("{}/__control/stats", self.issuer))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON")
    }
}

/// A free port on 127.0.0.1, for a server whose URL must be known before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromedriver driving headless Chromium, killed when dropped.
pub struct Chromedriver {
    pub url: String,
    _child: tokio::process::Child,
}

impl Chromedriver {
    pub async fn start() -> Option<Chromedriver> {
        let (Some(driver), Some(_browser)) = (which("chromedriver"), chromium()) else {
            missing(
                "chromium and chromedriver are not installed (Debian: chromium chromium-driver)",
            )?;
            unreachable!()
        };
        let port = free_port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        crate::poll_until(
            "chromedriver ready",
            std::time::Duration::from_secs(20),
            || {
                let req = client.get(format!("{url}/status")).send();
                async move {
                    let body: serde_json::Value = req.await.ok()?.json().await.ok()?;
                    body["value"]["ready"].as_bool().filter(|r| *r)
                }
            },
        )
        .await;
        Some(Chromedriver { url, _child: child })
    }

    /// Capabilities for headless Chromium at the given window size.
    pub fn capabilities(width: u32, height: u32) -> serde_json::Map<String, serde_json::Value> {
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
        ];
        args.push("--lang=en-US".into());
        let mut options = serde_json::json!({ "args": args });
        if let Some(binary) = chromium() {
            options["binary"] = serde_json::json!(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| which(b))
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}
