//! moto, AWS's stand-in server, as a peer process for the tests of AWS
//! integrations, and the SDK clients that talk to it.
//!
//! Each [`Moto`] is a fresh `python3 -m moto.server` on a free loopback port,
//! killed when it is dropped. When moto is not installed, [`Moto::start`] says
//! so loudly and returns None, so that the test can skip; with
//! `STAGEDOOR_REQUIRE_PEERS=1` a missing moto fails the test instead.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_cognitoidentityprovider as cognito_idp;
use cognito_idp::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

use crate::peers::free_port;
use crate::peers_required;

/// The region every test pool lives in.
pub const REGION: &str = "us-east-1";

/// The static credentials that moto accepts; the server under test gets them
/// through `StartOptions` rather than the process environment.
pub fn test_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("testing", "testing", None, None, "test"))
}

/// A running moto server.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

fn moto_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Moto {
    /// Starts moto and waits until it answers HTTP; None when moto is absent.
    pub async fn start() -> Option<Moto> {
        if !moto_installed() {
            assert!(
                !peers_required(),
                "moto is not installed (python3 -m pip install 'moto[server]')"
            );
            eprintln!(
                "\n*** SKIPPED: moto is not installed; the AWS integration tests did not run \
                 (python3 -m pip install 'moto[server]') ***\n"
            );
            return None;
        }
        // The port is free when picked; another process may take it before moto
        // binds, in which case moto exits and another port is tried.
        for _ in 0..3 {
            if let Some(moto) = Self::spawn_on(free_port()).await {
                return Some(moto);
            }
        }
        panic!("moto did not start on any of three ports");
    }

    async fn spawn_on(port: u16) -> Option<Moto> {
        let log = tempfile::NamedTempFile::new().expect("moto log file");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("moto log file"))
            .spawn()
            .expect("start moto");
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        let client = reqwest::Client::new();
        // Start-up takes a second or two; bounded polling, then a clear failure.
        for _ in 0..300 {
            if moto.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            let probe = client
                .get(format!("{}/moto-api/", moto.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok() {
                return Some(moto);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "moto did not answer on {} within 30 s:\n{}",
            moto.endpoint,
            std::fs::read_to_string(moto.log.path()).unwrap_or_default()
        );
    }

    /// A Cognito client for this moto.
    pub fn cognito(&self) -> cognito_idp::Client {
        let config = cognito_idp::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(test_credentials())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        cognito_idp::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
