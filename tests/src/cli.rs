//! The `stagedoor` command line and the configuration it reads.
//!
//! Commands run the real binary. It is built on first use with
//! `cargo build -p stagedoor --bin stagedoor` (a no-op when it is up to date),
//! so these tests never run a stale binary; `CARGO_BIN_EXE_stagedoor` names a
//! prebuilt one instead. Configuration details are checked on
//! `Config::load` directly, and end to end through a running server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor::config::{Config, ConfigError, DatabaseConfig};
use stagedoor_tests::spawn_with;

// ------------------------------------------------------------------ the binary

/// The `stagedoor` binary, built once per test run.
pub(crate) fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CARGO_BIN_EXE_stagedoor") {
            return PathBuf::from(p);
        }
        // The test executable lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable is in <target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "stagedoor", "--bin", "stagedoor"])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building the stagedoor binary failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join(format!("stagedoor{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Runs the binary to completion, failing the test if it hangs.
fn run(args: &[&str], dir: &Path) -> Output {
    use std::io::Read;
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("STAGEDOOR_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stagedoor");
    // Drain both pipes while waiting, so that a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "stagedoor {args:?} did not finish:\n{}\n{}",
                String::from_utf8_lossy(&out.join().unwrap_or_default()),
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, rel: &str, content: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::write(&p, content).expect("write");
    p
}

// ------------------------------------------------------------------- --help

#[test]
fn help_on_every_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut texts = serde_json::Map::new();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["migrate", "up", "--help"],
        &["migrate", "down", "--help"],
        &["migrate", "status", "--help"],
        &["catalog", "--help"],
        &["catalog", "validate", "--help"],
    ] {
        let out = run(args, dir.path());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        let command = args[..args.len() - 1].join(" ");
        let usage = if command.is_empty() {
            "Usage: stagedoor".to_string()
        } else {
            format!("Usage: stagedoor {command}")
        };
        assert!(text.contains(&usage), "{args:?}:\n{text}");
        texts.insert(args.join(" "), json!(text.lines().collect::<Vec<_>>()));
    }
    insta::assert_json_snapshot!("cli_help", texts);

    // Misuse is a usage error (exit 2) that says what is wrong.
    for (args, needle) in [
        (&["catalog"][..], "Usage: stagedoor catalog"),
        (&["catalog", "validate"], "FILE"),
        (&["frobnicate"], "frobnicate"),
        (&["serve", "--nope"], "--nope"),
    ] {
        let out = run(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let out = run(&["--version"], dir.path());
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("stagedoor "), "{}", stdout(&out));
}

// ---------------------------------------------------------- catalog validate

const VALID_COMPONENT: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: good-service
spec:
  type: service
  lifecycle: production
  owner: team-a
";

#[test]
fn catalog_validate_accepts_valid_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "one.yaml", VALID_COMPONENT);
    write(
        dir.path(),
        "two.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: team-a}\nspec: {type: team, children: []}\n---\napiVersion: backstage.io/v1alpha1\nkind: User\nmetadata: {name: ann}\nspec: {memberOf: [team-a]}\n",
    );
    let out = run(&["catalog", "validate", "one.yaml", "two.yaml"], dir.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn catalog_validate_reports_file_document_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.yaml", VALID_COMPONENT);
    write(
        dir.path(),
        "bad.yaml",
        &format!(
            "{VALID_COMPONENT}---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: 'not valid!'\nspec:\n  type: service\n  owner: team-a\n---\napiVersion: backstage.io/v1alpha1\nkind: Spaceship\nmetadata: {{name: enterprise}}\nspec: {{}}\n---\n{VALID_COMPONENT}"
        ),
    );
    write(dir.path(), "broken.yaml", "kind: [unclosed\n");
    let out = run(
        &[
            "catalog",
            "validate",
            "good.yaml",
            "bad.yaml",
            "broken.yaml",
            "missing.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        // file:document: message
        let mut parts = line.splitn(3, ':');
        let (file, doc, message) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        assert!(
            ["bad.yaml", "broken.yaml", "missing.yaml"].contains(&file),
            "{line}"
        );
        assert!(doc.parse::<usize>().is_ok(), "{line}");
        assert!(message.starts_with(' ') && message.len() > 1, "{line}");
    }
    // Each problem sits on its document: the name on 2, the kind on 3, the duplicate on 4.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:2: ") && l.contains("name")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:2: ") && l.contains("lifecycle")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:3: ") && l.contains("Spaceship")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:4: ") && l.contains("good-service")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("broken.yaml:1: ")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("missing.yaml:")),
        "{text}"
    );
    assert!(!text.contains("good.yaml:"), "{text}");
    assert!(
        stderr(&out).contains(&format!("{} problem(s) found", lines.len())),
        "{}",
        stderr(&out)
    );
    // The OS wording of a missing file varies; the rest is pinned.
    let pinned: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("missing.yaml:"))
        .collect();
    insta::assert_json_snapshot!("cli_validate_problems", pinned);
}

// ------------------------------------------------------- configuration errors

fn load(files: &[&Path]) -> Result<Config, ConfigError> {
    Config::load(&files.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>())
}

#[test]
fn unknown_or_mistyped_keys_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = write(
        dir.path(),
        "app-config.yaml",
        "backend:\n  listen: {host: 127.0.0.1, port: 7007}\n",
    );
    for (name, yaml, key) in [
        ("typo.yaml", "backend:\n  lisen: {port: 1}\n", "lisen"),
        ("nested.yaml", "backend:\n  listen: {hots: x}\n", "hots"),
        ("section.yaml", "catalgo:\n  locations: []\n", "catalgo"),
        ("deep.yaml", "catalog:\n  locations:\n    - {type: url, target: 'https://x.example/a.yaml', rulez: []}\n", "rulez"),
        ("type.yaml", "catalog:\n  readonly: sometimes\n", "catalog.readonly"),
        ("strategy.yaml", "catalog:\n  orphanStrategy: shred\n", "catalog.orphanStrategy"),
        ("interval.yaml", "catalog:\n  processingInterval: soon\n", "catalog.processingInterval"),
        ("client.yaml", "backend:\n  database: {client: mysql2, connection: x}\n", "backend.database"),
        ("auth.yaml", "backend:\n  auth:\n    externalAccess:\n      - {type: legacy, options: {token: abcdefghij, subject: x}}\n", "externalAccess"),
    ] {
        let extra = write(dir.path(), name, yaml);
        let err = load(&[&base, &extra]).expect_err(name).to_string();
        assert!(err.contains(key), "{name}: {err}");
        assert!(err.contains(name), "{name} is not named: {err}");
        assert!(!err.contains("app-config.yaml,"), "{name}: only the offending file: {err}");
    }
    // Broken YAML names its file too.
    let broken = write(dir.path(), "broken.yaml", "backend: [\n");
    let err = load(&[&base, &broken]).expect_err("broken").to_string();
    assert!(err.contains("broken.yaml"), "{err}");
    let err = load(&[&dir.path().join("absent.yaml")])
        .expect_err("absent")
        .to_string();
    assert!(err.contains("absent.yaml"), "{err}");
}

#[test]
fn serve_refuses_a_bad_configuration_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "app-config.yaml",
        "backend:\n  listen: {host: 127.0.0.1, port: 0}\n  database: {client: better-sqlite3, connection: ':memory:'}\n",
    );
    write(
        dir.path(),
        "app-config.local.yaml",
        "backend:\n  listen:\n    prot: 8080\n",
    );
    let out = run(
        &[
            "serve",
            "--config",
            "app-config.yaml",
            "--config",
            "app-config.local.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("app-config.local.yaml"), "{err}");
    assert!(err.contains("prot"), "{err}");
    // Nothing was created for the failed start.
    assert!(!dir.path().join(".stagedoor").exists());
}

// ----------------------------------------------------------- substitutions

#[test]
fn env_and_file_substitution() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::env::set_var("STAGEDOOR_CLI_TEST_PORT", "7345");
    std::env::set_var("STAGEDOOR_CLI_TEST_HOST", "portal.example");
    std::env::set_var("STAGEDOOR_CLI_TEST_INTERVAL", "PT2M");
    std::env::remove_var("STAGEDOOR_CLI_TEST_UNSET");
    write(
        dir.path(),
        "catalog-target.txt",
        "https://files.example/catalog.yaml",
    );
    let file = write(
        dir.path(),
        "app-config.yaml",
        "app:\n  baseUrl: https://${STAGEDOOR_CLI_TEST_HOST}/app\nbackend:\n  baseUrl: https://${STAGEDOOR_CLI_TEST_HOST}:${STAGEDOOR_CLI_TEST_PORT}\n  listen:\n    port: ${STAGEDOOR_CLI_TEST_PORT}\n    host: {$env: STAGEDOOR_CLI_TEST_UNSET}\ncatalog:\n  processingInterval: {$env: STAGEDOOR_CLI_TEST_INTERVAL}\n  locations:\n    - type: url\n      target: {$file: catalog-target.txt}\n    - type: url\n      target: 'https://files.example/$${literal}.yaml'\n",
    );
    let c = load(&[&file]).expect("valid");
    assert_eq!(c.port, 7345);
    assert_eq!(c.base_url, "https://portal.example:7345");
    assert_eq!(c.app_base_url, "https://portal.example/app");
    assert_eq!(c.processing_interval, Duration::from_secs(120));
    // An unset variable leaves its key out: the default applies, with a warning.
    assert_eq!(c.host, "127.0.0.1");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("backend.listen.host") && w.contains("STAGEDOOR_CLI_TEST_UNSET")),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.locations[0].target, "https://files.example/catalog.yaml");
    assert_eq!(
        c.locations[1].target,
        "https://files.example/${literal}.yaml"
    );

    let missing = write(
        dir.path(),
        "missing-file.yaml",
        "backend:\n  baseUrl: {$file: nowhere.txt}\n",
    );
    let err = load(&[&missing]).expect_err("missing $file").to_string();
    assert!(
        err.contains("missing-file.yaml") && err.contains("backend.baseUrl"),
        "{err}"
    );
}

#[tokio::test]
async fn substituted_secrets_reach_the_server() {
    let secrets = tempfile::tempdir().expect("temp dir");
    std::env::set_var("STAGEDOOR_CLI_TEST_TOKEN", "token-from-the-env");
    let token_file = write(secrets.path(), "token.txt", "token-from-a-file");
    let app = spawn_with(&format!(
        "backend:\n  auth:\n    externalAccess:\n      - type: static\n        options: {{token: {{$env: STAGEDOOR_CLI_TEST_TOKEN}}, subject: env}}\n      - type: static\n        options: {{token: {{$file: '{}'}}, subject: file}}\n",
        token_file.display()
    ))
    .await;
    for (token, status) in [
        (None, 401),
        (Some("token-from-the-env"), 200),
        (Some("token-from-a-file"), 200),
        (Some("STAGEDOOR_CLI_TEST_TOKEN"), 401),
    ] {
        let mut req = app.client.get(app.url("/api/catalog/entities"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("request");
        assert_eq!(res.status().as_u16(), status, "{token:?}");
    }
    app.stop().await;
}

// -------------------------------------------------------------------- merging

#[test]
fn later_config_files_win() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = write(
        dir.path(),
        "app-config.yaml",
        "backend:\n  listen: {host: 127.0.0.2, port: 7100}\n  reading:\n    allow: [{host: a.example}, {host: b.example}]\ncatalog:\n  readonly: true\n  orphanStrategy: delete\n  locations:\n    - {type: url, target: 'https://a.example/one.yaml'}\n",
    );
    let second = write(
        dir.path(),
        "app-config.production.yaml",
        "backend:\n  listen: {port: 7200}\n  reading:\n    allow: [{host: c.example}]\ncatalog:\n  readonly: false\n",
    );
    let c = load(&[&first, &second]).expect("valid");
    assert_eq!(c.port, 7200, "the later file wins");
    assert_eq!(
        c.host, "127.0.0.2",
        "keys the later file leaves out are kept"
    );
    assert!(!c.readonly);
    assert_eq!(c.orphan_strategy, stagedoor::config::OrphanStrategy::Delete);
    // Lists are replaced whole, not merged.
    let hosts: Vec<&str> = c.reading_allow.iter().map(|a| a.host.as_str()).collect();
    assert_eq!(hosts, ["c.example"]);
    assert_eq!(c.locations.len(), 1);
    // And the other way round.
    let c = load(&[&second, &first]).expect("valid");
    assert_eq!(c.port, 7100);
    assert!(c.readonly);
    assert_eq!(c.reading_allow.len(), 2);

    // File locations are relative to the file that names them.
    let sub = dir.path().join("conf");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let nested = write(
        &sub,
        "app-config.yaml",
        "catalog:\n  locations:\n    - {type: file, target: ./catalog/all.yaml}\n",
    );
    let c = load(&[&nested]).expect("valid");
    assert_eq!(
        Path::new(&c.locations[0].target),
        sub.join("./catalog/all.yaml")
    );
}

#[test]
fn no_configuration_is_the_demo() {
    let c = Config::load(&[]).expect("demo");
    assert!(c.demo);
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 7007));
    match &c.database {
        DatabaseConfig::Sqlite { path: Some(p) } => assert!(p.starts_with(".stagedoor"), "{p:?}"),
        other => panic!("the demo runs on SQLite under ./.stagedoor: {other:?}"),
    }
    assert_eq!(c.locations.len(), 1);
}

// -------------------------------------------------------------------- secrets

#[test]
fn secrets_stay_out_of_debug_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = write(
        dir.path(),
        "url.yaml",
        "backend:\n  database:\n    client: pg\n    connection: 'postgres://stagedoor:pw-in-the-url@db.example:5432/catalog'\n  auth:\n    externalAccess:\n      - {type: static, options: {token: token-value-42, subject: ci}}\n",
    );
    let parts = write(
        dir.path(),
        "parts.yaml",
        "backend:\n  database:\n    client: pg\n    connection: {host: db.example, port: 5433, user: stagedoor, password: pw-in-parts, database: catalog}\n",
    );
    for (file, secrets) in [
        (&url, &["pw-in-the-url", "token-value-42"][..]),
        (&parts, &["pw-in-parts"][..]),
    ] {
        let c = load(&[file]).expect("valid");
        let debug = format!("{c:?} {:?} {:?}", c.database, c.external_access);
        let pretty = format!("{c:#?}");
        for s in secrets {
            assert!(!debug.contains(s), "{s} leaked: {debug}");
            assert!(!pretty.contains(s), "{s} leaked: {pretty}");
        }
        // The non-secret parts are still there to debug with.
        assert!(pretty.contains("Postgres"), "{pretty}");
    }
    // An error about a secret-bearing key does not print the secret either.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "backend:\n  database:\n    client: pg\n    connection: 'mysql://u:pw-in-a-bad-url@h/d'\n",
    );
    let err = load(&[&bad]).expect_err("not postgres").to_string();
    assert!(!err.contains("pw-in-a-bad-url"), "{err}");
    assert!(err.contains("bad.yaml"), "{err}");
}

// -------------------------------------------------------------------- migrate

/// A database for the migrate commands: PostgreSQL when `TEST_DATABASE_URL` is set.
struct ScratchDb {
    yaml: String,
    pg: Option<(String, String)>,
}

impl ScratchDb {
    async fn new(dir: &Path) -> ScratchDb {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => {
                use sqlx::Connection;
                let name = format!("stagedoor_cli_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("TEST_DATABASE_URL reachable");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let mut url = url::Url::parse(&admin).expect("URL");
                url.set_path(&name);
                ScratchDb {
                    yaml: format!(
                        "backend:\n  database:\n    client: pg\n    connection: '{url}'\n"
                    ),
                    pg: Some((admin, name)),
                }
            }
            _ => ScratchDb {
                yaml: format!(
                    "backend:\n  database:\n    client: better-sqlite3\n    connection: '{}'\n",
                    dir.join("catalog.sqlite").display()
                ),
                pg: None,
            },
        }
    }

    async fn drop_db(self) {
        if let Some((admin, name)) = self.pg {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

fn status_lines(out: &Output) -> Vec<(String, String)> {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out)
        .lines()
        .map(|l| {
            let (state, name) = l.split_once(' ').expect("`state name` lines");
            assert!(state == "applied" || state == "pending", "{l}");
            assert!(!name.is_empty() && !name.contains(' '), "{l}");
            (state.to_string(), name.to_string())
        })
        .collect()
}

#[tokio::test]
async fn migrate_up_down_and_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = ScratchDb::new(dir.path()).await;
    write(dir.path(), "app-config.yaml", &db.yaml);
    let path = dir.path().to_path_buf();
    let cmd = move |args: &'static [&'static str]| {
        let path = path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut full = vec!["migrate"];
                full.extend_from_slice(args);
                full.extend_from_slice(&["--config", "app-config.yaml"]);
                run(&full, &path)
            })
            .await
            .expect("join")
        }
    };

    let before = status_lines(&cmd(&["status"]).await);
    assert!(!before.is_empty());
    assert!(before.iter().all(|(s, _)| s == "pending"), "{before:?}");

    let up = cmd(&["up"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let after = status_lines(&cmd(&["status"]).await);
    assert!(after.iter().all(|(s, _)| s == "applied"), "{after:?}");
    assert_eq!(
        after.iter().map(|(_, n)| n).collect::<Vec<_>>(),
        before.iter().map(|(_, n)| n).collect::<Vec<_>>()
    );
    // Up again is a no-op.
    assert!(cmd(&["up"]).await.status.success());

    let down = cmd(&["down"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    let rolled = status_lines(&cmd(&["status"]).await);
    assert_eq!(rolled.last().map(|(s, _)| s.as_str()), Some("pending"));
    assert!(rolled[..rolled.len() - 1]
        .iter()
        .all(|(s, _)| s == "applied"));

    // `migrate` alone applies, as `migrate up`.
    let default = cmd(&[]).await;
    assert!(default.status.success(), "{}", stderr(&default));
    assert!(status_lines(&cmd(&["status"]).await)
        .iter()
        .all(|(s, _)| s == "applied"));
    db.drop_db().await;
}
