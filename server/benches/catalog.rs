//! End-to-end catalog benchmark: the evidence for Stagedoor's performance bar.
//!
//! It generates N Backstage entities (a deterministic port of the generator used for the stock
//! Backstage measurements), starts `stagedoor serve` against a fresh database with a `file`
//! location pointing at them, and measures spawn → ready, spawn → all N entities queryable,
//! peak and idle RSS, and four read endpoints under concurrent load. It prints one markdown
//! table with PASS/FAIL against the bar and the Backstage reference numbers.
//!
//! ```text
//! cargo bench --bench catalog
//! cargo bench --bench catalog -- --entities 100000 --database postgres --duration 20
//! ```
//!
//! Flags: `--entities N` (10000), `--database sqlite|postgres` (sqlite), `--duration SECS` per
//! read (10), `--connections C` (32), `--driver auto|wrk|builtin` (auto: wrk when it is on PATH),
//! `--warmup SECS` per read (1), `--seed S` (42), `--keep` (keep the scratch directory).
//! Postgres: the admin URL comes from `BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a database `stagedoor_bench_<random>` is
//! created with `psql` and dropped at the end. Hidden: `--generate-only DIR` writes
//! `entities-NNN.yaml` (10,000 entities per file) and `entities.meta.json` into DIR and exits.
//!
//! A bar that is missed is reported as FAIL with exit status 0 (this is a report); errors
//! (server died, wrong entity counts, a read returning a bad answer) exit non-zero. Without
//! `--bench` (i.e. when the bench target is run in test mode) it does nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use clap::{Parser, ValueEnum};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const INGEST_TIMEOUT: Duration = Duration::from_secs(600);
const FULLTEXT_WORD: &str = "payments";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Database {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// wrk when it is on PATH, the built-in load generator otherwise.
    Auto,
    Wrk,
    Builtin,
}

#[derive(Parser, Debug)]
#[command(name = "catalog", about = "Stagedoor catalog benchmark")]
struct Args {
    /// Number of entities to generate and ingest.
    #[arg(long, default_value_t = 10_000)]
    entities: usize,
    /// Database backend for the server.
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    database: Database,
    /// Seconds of load per read endpoint.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive connections per read endpoint.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Load generator.
    #[arg(long, value_enum, default_value_t = Driver::Auto)]
    driver: Driver,
    /// Untimed warm-up seconds before each read endpoint (0 disables).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the scratch directory (entities, config, server log) after a successful run.
    #[arg(long)]
    keep: bool,
    /// Write entities-NNN.yaml and entities.meta.json into DIR and exit.
    #[arg(long, hide = true, value_name = "DIR")]
    generate_only: Option<PathBuf>,
    /// Passed by `cargo bench`; without it (test mode) nothing is run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Name filters passed through by cargo; ignored.
    #[arg(hide = true)]
    filters: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.generate_only {
        let meta = write_workload(dir, args.entities, args.seed)?;
        println!("{}", serde_json::to_string_pretty(&meta.to_json())?);
        return Ok(());
    }
    if !args.bench {
        println!("catalog bench: not run in test mode (use `cargo bench --bench catalog`)");
        return Ok(());
    }
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(args.duration > 0, "--duration must be at least 1");

    let mut guard = Guard::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args, &mut guard) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    drop(runtime);
    if outcome.is_ok() && !args.keep {
        guard.keep_dir = false;
    }
    drop(guard);
    outcome
}

// ------------------------------------------------------------------------------------------
// Cleanup: the server is always stopped, the scratch database always dropped.

#[derive(Default)]
struct Guard {
    server: Option<Child>,
    database: Option<PgDatabase>,
    dir: Option<PathBuf>,
    keep_dir: bool,
}

struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Guard {
    fn stop_server(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("catalog bench: server ignored SIGTERM for 10 s, killing it");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn drop_database(&mut self) {
        let Some(db) = self.database.take() else {
            return;
        };
        let forced = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name);
        if psql(&db.admin_url, &forced).is_err() {
            let plain = format!("DROP DATABASE IF EXISTS {}", db.name);
            if let Err(e) = psql(&db.admin_url, &plain) {
                eprintln!("catalog bench: could not drop database {}: {e:#}", db.name);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_server();
        self.drop_database();
        if let Some(dir) = self.dir.take() {
            if self.keep_dir {
                eprintln!("catalog bench: scratch files kept in {}", dir.display());
            } else if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("catalog bench: could not remove {}: {e}", dir.display());
            }
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    ensure!(
        out.status.success(),
        "psql -c {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The run.

async fn run(args: &Args, guard: &mut Guard) -> Result<()> {
    let n = args.entities;
    let dir = std::env::temp_dir().join(format!(
        "stagedoor-bench-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    guard.dir = Some(dir.clone());
    guard.keep_dir = true;

    let meta = write_workload(&dir, n, args.seed)?;
    eprintln!(
        "catalog bench: generated {n} entities (sample component {}, {} names contain {FULLTEXT_WORD:?})",
        meta.sample_component, meta.fulltext_hits
    );

    let (client_name, connection) = match args.database {
        Database::Sqlite => (
            "better-sqlite3",
            dir.join("catalog.sqlite").display().to_string(),
        ),
        Database::Postgres => {
            let admin = std::env::var("BENCH_DATABASE_URL")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned());
            let name = format!("stagedoor_bench_{:08x}", rand::random::<u32>());
            let mut url = url::Url::parse(&admin).context("parsing BENCH_DATABASE_URL")?;
            psql(&admin, &format!("CREATE DATABASE {name}"))?;
            guard.database = Some(PgDatabase {
                admin_url: admin,
                name: name.clone(),
            });
            url.set_path(&format!("/{name}"));
            ("pg", url.to_string())
        }
    };

    let port = free_port()?;
    let mut config = format!(
        "backend:\n  listen: {{ host: 127.0.0.1, port: {port} }}\n  database:\n    client: {client_name}\n    connection: {}\ncatalog:\n  processingInterval: {{ hours: 6 }}\n  rules:\n    - allow: [Component, API, Resource, System, Domain, Group, User, Location, Template]\n  locations:\n",
        json_str(&connection)
    );
    for shard in shard_names(args.entities) {
        writeln!(config, "    - type: file\n      target: ./{shard}")?;
    }
    let config_path = dir.join("app-config.yaml");
    std::fs::write(&config_path, config).context("writing app-config.yaml")?;

    let base = format!("http://127.0.0.1:{port}");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;

    // Spawn.
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).context("creating server.log")?;
    let log_err = log.try_clone().context("cloning the server log handle")?;
    let spawned = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_stagedoor"))
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .context("spawning stagedoor serve")?;
    let pid = child.id();
    guard.server = Some(child);

    // Spawn → ready.
    let readiness = format!("{base}/.backstage/health/v1/readiness");
    let ready_after = loop {
        server_alive(guard, &log_path)?;
        if let Ok(r) = http
            .get(&readiness)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            if r.status() == reqwest::StatusCode::OK {
                break spawned.elapsed();
            }
        }
        if spawned.elapsed() > INGEST_TIMEOUT {
            bail!(
                "server not ready after {} s\n{}",
                INGEST_TIMEOUT.as_secs(),
                log_tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "catalog bench: ready after {:.3} s, waiting for ingestion",
        ready_after.as_secs_f64()
    );

    // Spawn → all N entities queryable.
    let count_url = format!("{base}/api/catalog/entities/by-query?limit=1");
    let kind_url = format!("{base}/api/catalog/entity-facets?facet=kind");
    let mut last_seen: String;
    let (ingest_after, total_items, kinds) = loop {
        server_alive(guard, &log_path)?;
        match get_json(&http, &count_url).await {
            Ok(v) => {
                let total = v.get("totalItems").and_then(Value::as_u64).unwrap_or(0);
                last_seen = format!("totalItems {total}");
                if total >= n as u64 {
                    let at = spawned.elapsed();
                    let kinds = kind_counts(&http, &kind_url).await?;
                    let entities: u64 = kinds
                        .iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("location"))
                        .map(|(_, c)| *c)
                        .sum();
                    last_seen = format!("totalItems {total}, non-Location kinds {entities}");
                    ensure!(
                        entities <= n as u64,
                        "more entities than generated: {entities} > {n} (kinds {kinds:?})"
                    );
                    if entities == n as u64 {
                        break (at, total, kinds);
                    }
                }
            }
            Err(e) => last_seen = format!("{e:#}"),
        }
        if spawned.elapsed() > INGEST_TIMEOUT {
            bail!(
                "ingestion did not finish within {} s (last: {last_seen})\n{}",
                INGEST_TIMEOUT.as_secs(),
                log_tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let peak_kib = proc_status_kib(pid, "VmHWM")?;
    check_kinds(&kinds, &meta.counts)?;
    eprintln!(
        "catalog bench: {n} entities queryable after {:.3} s (totalItems {total_items})",
        ingest_after.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    server_alive(guard, &log_path)?;
    let idle_kib = proc_status_kib(pid, "VmRSS")?;

    // Reads.
    let driver = match args.driver {
        Driver::Auto if wrk_available() => Driver::Wrk,
        Driver::Auto => Driver::Builtin,
        d => d,
    };
    if driver == Driver::Wrk {
        ensure!(wrk_available(), "--driver wrk, but wrk is not on PATH");
        std::fs::write(dir.join("report.lua"), WRK_SCRIPT).context("writing report.lua")?;
    }
    let reads = read_endpoints(&meta);
    let mut results = Vec::new();
    for read in &reads {
        let url = format!("{base}{}", read.path);
        let summary = validate(&http, &url, &read.check, &meta)
            .await
            .with_context(|| format!("{} ({})", read.label, read.path))?;
        eprintln!("catalog bench: {}: {summary}; loading", read.label);
        if args.warmup > 0 {
            load(
                driver,
                &dir,
                addr,
                &url,
                &read.path,
                args.connections,
                args.warmup,
            )
            .await?;
        }
        let r = load(
            driver,
            &dir,
            addr,
            &url,
            &read.path,
            args.connections,
            args.duration,
        )
        .await
        .with_context(|| format!("load on {}", read.path))?;
        server_alive(guard, &log_path)?;
        ensure!(
            r.non2xx == 0 && r.socket_errors == 0,
            "{}: {} non-2xx responses and {} socket errors in {} requests\n{}",
            read.label,
            r.non2xx,
            r.socket_errors,
            r.requests,
            log_tail(&log_path)
        );
        eprintln!(
            "catalog bench: {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            read.label, r.rps, r.p50_ms, r.p99_ms
        );
        results.push(r);
    }
    // Pages: one request at a time, so that latency is the server's render time.
    let mut page_results = Vec::new();
    for page in page_reads(&meta) {
        let t = time_page(&http, &format!("{base}{}", page.path), page.contains)
            .await
            .with_context(|| format!("{} ({})", page.label, page.path))?;
        eprintln!(
            "catalog bench: {}: p50 {:.2} ms, p99 {:.2} ms",
            page.label, t.0, t.1
        );
        page_results.push((page.label, t));
    }
    let after_reads_kib = proc_status_kib(pid, "VmRSS")?;
    guard.stop_server();
    guard.drop_database();

    // Report.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let driver_text = match driver {
        Driver::Wrk => format!(
            "wrk -t1 -c{} -d{}s --latency",
            args.connections, args.duration
        ),
        _ => format!(
            "built-in tokio HTTP/1.1 keep-alive load generator, {} connections × {} s, same machine",
            args.connections, args.duration
        ),
    };
    let mut out = String::new();
    let db_text = match args.database {
        Database::Sqlite => "sqlite",
        Database::Postgres => "postgres",
    };
    writeln!(
        out,
        "\nStagedoor catalog benchmark: N = {} entities, database {db_text}, driver: {driver_text}, {} warm-up s per read, {cores} cores\n",
        thousands(n as u64),
        args.warmup
    )?;
    writeln!(
        out,
        "| metric | Stagedoor | bar | Backstage (N = 10,000, Postgres, 2 vCPU) | result |"
    )?;
    writeln!(out, "|---|---:|---:|---:|:---:|")?;
    let mut row = |metric: &str, value: String, bar: &str, reference: &str, pass: bool| {
        let verdict = if pass { "PASS" } else { "**FAIL**" };
        writeln!(
            out,
            "| {metric} | {value} | {bar} | {reference} | {verdict} |"
        )
    };
    let ingest_s = ingest_after.as_secs_f64();
    row(
        "ingest: spawn → all N entities queryable",
        format!(
            "{ingest_s:.2} s ({:.2} s after ready)",
            ingest_s - ready_after.as_secs_f64()
        ),
        "≤ 4 s",
        "86.6–95.1 s",
        ingest_s <= 4.0,
    )?;
    let peak_mib = peak_kib as f64 / 1024.0;
    row(
        "peak RSS during ingest (VmHWM)",
        format!("{peak_mib:.1} MiB"),
        "≤ 90 MiB",
        "~900 MiB",
        peak_mib <= 90.0,
    )?;
    let idle_mib = idle_kib as f64 / 1024.0;
    row(
        "idle RSS (2 s after ingest)",
        format!("{idle_mib:.1} MiB"),
        "≤ 50 MiB",
        "312–707 MiB",
        idle_mib <= 50.0,
    )?;
    let ready_s = ready_after.as_secs_f64();
    row(
        "spawn → ready",
        format!("{ready_s:.3} s"),
        "≤ 0.3 s",
        "2.3–2.9 s",
        ready_s <= 0.3,
    )?;
    let p99_bar = n >= 100_000;
    for (read, r) in reads.iter().zip(&results) {
        let mut bar = format!("≥ {} req/s", thousands(read.min_rps));
        if p99_bar {
            bar.push_str(", p99 ≤ 20 ms");
        }
        let pass = r.rps >= read.min_rps as f64 && (!p99_bar || r.p99_ms <= 20.0);
        row(
            read.label,
            format!(
                "{} req/s (p50 {:.2} ms, p99 {:.2} ms)",
                thousands(r.rps.round() as u64),
                r.p50_ms,
                r.p99_ms
            ),
            &bar,
            read.reference,
            pass,
        )?;
    }
    for (label, (p50, p99)) in &page_results {
        row(
            label,
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
            "p99 ≤ 50 ms, one at a time",
            "—",
            *p99 <= 50.0,
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Entities by kind: {}; by-query totalItems {total_items}; RSS after reads {:.1} MiB.",
        kinds
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", "),
        after_reads_kib as f64 / 1024.0
    )?;
    writeln!(out, "Reads (requests, non-2xx, socket errors):")?;
    for (read, r) in reads.iter().zip(&results) {
        writeln!(
            out,
            "- {}: `{}`: {} requests, {} non-2xx, {} socket errors",
            read.label, read.path, r.requests, r.non2xx, r.socket_errors
        )?;
    }
    println!("{out}");
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn server_alive(guard: &mut Guard, log: &Path) -> Result<()> {
    let child = guard
        .server
        .as_mut()
        .ok_or_else(|| anyhow!("server is not running"))?;
    if let Some(status) = child.try_wait().context("checking the server process")? {
        bail!("server exited early ({status})\n{}", log_tail(log));
    }
    Ok(())
}

fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 8 * 1024;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    match read {
        Ok(()) if text.trim().is_empty() => "server log: (empty)".to_owned(),
        Ok(()) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(40);
            format!("server log (tail):\n{}", lines[start..].join("\n"))
        }
        Err(e) => format!("server log unreadable: {e}"),
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| anyhow!("{key} missing from /proc/{pid}/status"))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    let r = http.get(url).send().await?;
    let status = r.status();
    let body = r.text().await?;
    ensure!(
        status == reqwest::StatusCode::OK,
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    serde_json::from_str(&body).with_context(|| {
        format!(
            "response is not JSON: {}",
            body.chars().take(300).collect::<String>()
        )
    })
}

async fn kind_counts(http: &reqwest::Client, url: &str) -> Result<BTreeMap<String, u64>> {
    let v = get_json(http, url)
        .await
        .context("GET entity-facets?facet=kind")?;
    let facets = v
        .pointer("/facets/kind")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("entity-facets answer has no facets.kind array: {v}"))?;
    let mut out = BTreeMap::new();
    for f in facets {
        let value = f
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("facet without value: {f}"))?;
        let count = f
            .get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("facet without count: {f}"))?;
        *out.entry(value.to_owned()).or_insert(0) += count;
    }
    Ok(out)
}

fn check_kinds(seen: &BTreeMap<String, u64>, expected: &[(&'static str, usize)]) -> Result<()> {
    for (kind, want) in expected {
        let got: u64 = seen
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(kind))
            .map(|(_, c)| *c)
            .sum();
        ensure!(
            got == *want as u64,
            "kind {kind}: {got} entities in the catalog, {want} generated (facets {seen:?})"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Read endpoints and their one-off correctness checks.

enum Check {
    ByName,
    List,
    Facets,
    FullText,
}

struct Read {
    label: &'static str,
    path: String,
    check: Check,
    min_rps: u64,
    reference: &'static str,
}

fn read_endpoints(meta: &Meta) -> Vec<Read> {
    vec![
        Read {
            label: "by-name",
            path: format!(
                "/api/catalog/entities/by-name/component/default/{}",
                meta.sample_component
            ),
            check: Check::ByName,
            min_rps: 36_000,
            reference: "1,254–1,802 req/s",
        },
        Read {
            label: "list filter (kind, lifecycle; limit 100)",
            path: "/api/catalog/entities?filter=kind=component,spec.lifecycle=production&limit=100"
                .to_owned(),
            check: Check::List,
            min_rps: 3_100,
            reference: "119–155 req/s",
        },
        Read {
            label: "facets (spec.type, metadata.tags)",
            path: "/api/catalog/entity-facets?facet=spec.type&facet=metadata.tags".to_owned(),
            check: Check::Facets,
            min_rps: 8_200,
            reference: "348–409 req/s",
        },
        Read {
            label: "full text by-query (limit 20)",
            path: format!(
                "/api/catalog/entities/by-query?fullTextFilterTerm={FULLTEXT_WORD}&fullTextFilterFields=metadata.name&limit=20"
            ),
            check: Check::FullText,
            min_rps: 6_000,
            reference: "257–298 req/s",
        },
    ]
}

struct PageRead {
    label: &'static str,
    path: String,
    /// Text the page must contain, so that a wrong page cannot pass.
    contains: &'static str,
}

fn page_reads(meta: &Meta) -> Vec<PageRead> {
    vec![
        PageRead {
            label: "page: catalog list (components, production)",
            path: "/catalog?kind=component&lifecycle=production".to_owned(),
            contains: "catalog-results",
        },
        PageRead {
            label: "page: catalog search",
            path: format!("/catalog?kind=component&q={FULLTEXT_WORD}"),
            contains: FULLTEXT_WORD,
        },
        PageRead {
            label: "page: entity with relations graph",
            path: format!("/catalog/default/component/{}", meta.sample_component),
            contains: "relations-graph",
        },
        PageRead {
            label: "page: home",
            path: "/".to_owned(),
            contains: "home-search",
        },
    ]
}

/// p50 and p99 of 300 sequential requests, after 30 untimed ones.
async fn time_page(http: &reqwest::Client, url: &str, contains: &str) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(300);
    for i in 0..330 {
        let started = Instant::now();
        let r = http.get(url).send().await?;
        let status = r.status();
        let body = r.text().await?;
        let elapsed = started.elapsed();
        ensure!(status == reqwest::StatusCode::OK, "HTTP {status}");
        ensure!(body.contains(contains), "the page lacks {contains:?}");
        if i >= 30 {
            times.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    Ok((pct(50), pct(99)))
}

async fn validate(http: &reqwest::Client, url: &str, check: &Check, meta: &Meta) -> Result<String> {
    let v = get_json(http, url).await?;
    let size = v.to_string().len();
    match check {
        Check::ByName => {
            let name = v.pointer("/metadata/name").and_then(Value::as_str);
            ensure!(
                name == Some(meta.sample_component.as_str()),
                "by-name answered metadata.name {name:?}, wanted {:?}",
                meta.sample_component
            );
            let kind = v.get("kind").and_then(Value::as_str);
            ensure!(kind == Some("Component"), "by-name answered kind {kind:?}");
            Ok(format!("entity {}, {size} bytes", meta.sample_component))
        }
        Check::List => {
            let items = v
                .as_array()
                .ok_or_else(|| anyhow!("list answer is not a JSON array"))?;
            ensure!(!items.is_empty(), "list answer is empty");
            ensure!(
                items.len() <= 100,
                "list answer has {} items, limit was 100",
                items.len()
            );
            let want = meta.production_components.min(100);
            ensure!(
                items.len() == want,
                "list answer has {} items, wanted {want}",
                items.len()
            );
            for e in items {
                let kind = e.get("kind").and_then(Value::as_str);
                let lifecycle = e.pointer("/spec/lifecycle").and_then(Value::as_str);
                ensure!(
                    kind == Some("Component") && lifecycle == Some("production"),
                    "list answer has a {kind:?} with lifecycle {lifecycle:?}"
                );
            }
            Ok(format!("{} items, {size} bytes", items.len()))
        }
        Check::Facets => {
            let mut parts = Vec::new();
            for facet in ["spec.type", "metadata.tags"] {
                let values = v
                    .get("facets")
                    .and_then(|f| f.get(facet))
                    .and_then(Value::as_array)
                    .ok_or_else(|| anyhow!("facets answer has no {facet} array: {v}"))?;
                ensure!(!values.is_empty(), "facet {facet} is empty");
                parts.push(format!("{facet}: {} values", values.len()));
            }
            Ok(format!("{}, {size} bytes", parts.join(", ")))
        }
        Check::FullText => {
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("by-query answer has no items array"))?;
            ensure!(!items.is_empty(), "full-text answer has no items");
            ensure!(
                items.len() <= 20,
                "full-text answer has {} items, limit was 20",
                items.len()
            );
            for e in items {
                let name = e.pointer("/metadata/name").and_then(Value::as_str);
                ensure!(
                    name.is_some_and(|s| s.to_lowercase().contains(FULLTEXT_WORD)),
                    "full-text answer contains {name:?}"
                );
            }
            let total = v.get("totalItems").and_then(Value::as_u64);
            ensure!(
                total == Some(meta.fulltext_hits as u64),
                "full-text totalItems {total:?}, but {} entity names contain {FULLTEXT_WORD:?}",
                meta.fulltext_hits
            );
            Ok(format!(
                "{} items of {} matches, {size} bytes",
                items.len(),
                meta.fulltext_hits
            ))
        }
    }
}

// ------------------------------------------------------------------------------------------
// Load generation.

struct LoadResult {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non2xx: u64,
    socket_errors: u64,
}

async fn load(
    driver: Driver,
    dir: &Path,
    addr: SocketAddr,
    url: &str,
    path: &str,
    connections: usize,
    secs: u64,
) -> Result<LoadResult> {
    match driver {
        Driver::Wrk => wrk_load(dir, url, connections, secs).await,
        _ => builtin_load(addr, path, connections, Duration::from_secs(secs)).await,
    }
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

const WRK_SCRIPT: &str = r#"wrk.headers["Accept"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_s\":%.6f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"non2xx\":%d,\"sock_errors\":%d}\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"#;

async fn wrk_load(dir: &Path, url: &str, connections: usize, secs: u64) -> Result<LoadResult> {
    let out = tokio::process::Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(dir.join("report.lua"))
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRKJSON "))
        .ok_or_else(|| anyhow!("no WRKJSON line in wrk output: {stdout}"))?;
    let v: Value = serde_json::from_str(line).context("parsing the wrk report line")?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow!("wrk report lacks {k}: {line}"))
    };
    let requests = num("requests")?;
    let duration = num("duration_s")?;
    ensure!(duration > 0.0, "wrk reported a zero duration");
    Ok(LoadResult {
        requests: requests as u64,
        rps: requests / duration,
        p50_ms: num("p50_ms")?,
        p99_ms: num("p99_ms")?,
        non2xx: num("non2xx")? as u64,
        socket_errors: num("sock_errors")? as u64,
    })
}

#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    non2xx: u64,
    socket_errors: u64,
}

async fn builtin_load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nUser-Agent: stagedoor-bench\r\n\r\n"
    );
    let request: std::sync::Arc<[u8]> = request.into_bytes().into();
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + duration);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = ConnStats::default();
            let mut conn: Option<HttpConn> = None;
            while tokio::time::Instant::now() < deadline {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match HttpConn::connect(addr).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            stats.socket_errors += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    },
                };
                let t0 = Instant::now();
                match c.request(&request).await {
                    Ok((status, close)) => {
                        let us = t0.elapsed().as_micros();
                        stats
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                        if !(200..300).contains(&status) {
                            stats.non2xx += 1;
                        }
                        if close {
                            conn = None;
                        }
                    }
                    Err(_) => {
                        stats.socket_errors += 1;
                        conn = None;
                    }
                }
            }
            stats
        }));
    }
    let mut all = Vec::new();
    let (mut non2xx, mut socket_errors) = (0, 0);
    for t in tasks {
        let s = t.await.context("load task panicked")?;
        all.extend_from_slice(&s.latencies_us);
        non2xx += s.non2xx;
        socket_errors += s.socket_errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(!all.is_empty(), "no request completed");
    all.sort_unstable();
    let pct = |p: usize| f64::from(all[(all.len() * p / 100).min(all.len() - 1)]) / 1000.0;
    Ok(LoadResult {
        requests: all.len() as u64,
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(50),
        p99_ms: pct(99),
        non2xx,
        socket_errors,
    })
}

/// A minimal HTTP/1.1 keep-alive client connection (Content-Length and chunked bodies).
struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl HttpConn {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        })
    }

    /// Reads more bytes into the buffer; fails on EOF.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// Returns the line (without CRLF) starting at the read position and consumes it.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf[self.start..self.end], b"\r\n") {
                let line =
                    String::from_utf8_lossy(&self.buf[self.start..self.start + i]).into_owned();
                self.start += i + 2;
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn skip(&mut self, mut n: usize) -> io::Result<()> {
        loop {
            let avail = self.end - self.start;
            if avail >= n {
                self.start += n;
                return Ok(());
            }
            n -= avail;
            self.start = 0;
            self.end = 0;
            self.fill().await?;
        }
    }

    /// Sends one request and reads the whole response; returns (status, connection closes).
    async fn request(&mut self, request: &[u8]) -> io::Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let status_line = self.line().await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad("bad header line"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad("bad content-length"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if chunked {
            loop {
                let size_line = self.line().await?;
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.skip(size + 2).await?;
            }
        } else if let Some(len) = length {
            self.skip(len).await?;
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            // No framing: the body runs until the server closes the connection.
            loop {
                self.start = self.end;
                if self.fill().await.is_err() {
                    break;
                }
            }
            close = true;
        }
        Ok((status, close))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ------------------------------------------------------------------------------------------
// Workload generator: a deterministic port of the generator used for the Backstage numbers.
// Same kinds, proportions and cross references; its own PRNG, so not byte-identical.

const WORDS_TEXT: &str =
    "payments ledger billing invoice checkout cart catalog search index ranking \
    recommend profile account identity auth session token gateway edge proxy \
    router mesh metrics logging tracing alerting pager audit compliance risk \
    fraud scoring pricing quote order fulfilment shipping warehouse inventory \
    stock supplier vendor partner marketing campaign email notify push sms \
    chat support ticket feedback survey review rating media image video \
    upload storage archive backup restore export import sync stream events \
    queue scheduler cron batch etl warehouse lake report dashboard insight \
    forecast ml feature model training serving experiment flag config secret \
    vault registry deploy build release artifact docs portal admin console \
    mobile web desktop map geo location routing fleet driver rider booking \
    calendar travel hotel loyalty rewards wallet transfer ledger kyc onboarding";
const SUFFIX_COMPONENT: &[&str] = &[
    "service", "api", "worker", "web", "app", "lib", "sdk", "cli", "ui", "job", "adapter", "bff",
];
const TAGS_TEXT: &str = "java kotlin go rust python typescript javascript scala ruby csharp \
    grpc rest graphql kafka postgres mysql redis elasticsearch s3 dynamodb \
    kubernetes lambda terraform pci gdpr tier-1 tier-2 tier-3 critical internal \
    external beta legacy monolith microservice frontend backend data ml";
const COMPONENT_TYPES: &[(&str, u32)] = &[
    ("service", 50),
    ("website", 15),
    ("library", 20),
    ("documentation", 5),
    ("tool", 10),
];
const API_TYPES: &[(&str, u32)] = &[
    ("openapi", 60),
    ("grpc", 20),
    ("asyncapi", 12),
    ("graphql", 8),
];
const LIFECYCLES: &[(&str, u32)] = &[("production", 60), ("experimental", 25), ("deprecated", 15)];
const FIRST_TEXT: &str =
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy \
    rupert sybil trent victor walter xena yusuf zoe amir bea chen dana eli fatima \
    gus hana igor jin kofi lena milo nora omar priya quinn rosa sam tara uma vik";
const LAST_TEXT: &str =
    "smith jones brown taylor wilson davies evans thomas johnson roberts walker wright \
    robinson thompson white hughes edwards green hall wood harris lewis martin jackson \
    clarke clark turner hill scott cooper morris ward moore king watson baker patel \
    nguyen garcia kim mueller rossi silva novak";
const DEPARTMENTS: &[&str] = &[
    "engineering",
    "product",
    "data",
    "platform",
    "security",
    "finance",
    "growth",
    "operations",
];
const PAGERDUTY_CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";

/// splitmix64: small, fast and stable across library versions.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); n > 0.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in [a, b].
    fn randint(&mut self, a: usize, b: usize) -> usize {
        a + self.below(b - a + 1)
    }

    fn choice<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// k distinct indices of 0..n in selection order.
    fn sample_indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        if k * 4 <= n {
            let mut picked: Vec<usize> = Vec::with_capacity(k);
            while picked.len() < k {
                let i = self.below(n);
                if !picked.contains(&i) {
                    picked.push(i);
                }
            }
            picked
        } else {
            let mut pool: Vec<usize> = (0..n).collect();
            for j in 0..k {
                let r = j + self.below(n - j);
                pool.swap(j, r);
            }
            pool.truncate(k);
            pool
        }
    }

    fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        self.sample_indices(items.len(), k)
            .into_iter()
            .map(|i| items[i].clone())
            .collect()
    }

    fn weighted(&mut self, pairs: &[(&'static str, u32)]) -> &'static str {
        let total: u32 = pairs.iter().map(|(_, w)| w).sum();
        let mut r = self.random() * f64::from(total);
        for (v, w) in pairs {
            r -= f64::from(*w);
            if r < 0.0 {
                return v;
            }
        }
        pairs[pairs.len() - 1].0
    }
}

/// A YAML node with ordered keys.
enum Y {
    S(String),
    L(Vec<Y>),
    M(Vec<(&'static str, Y)>),
}

fn s(v: impl Into<String>) -> Y {
    Y::S(v.into())
}

fn strs<I: IntoIterator<Item = String>>(items: I) -> Y {
    Y::L(items.into_iter().map(Y::S).collect())
}

fn json_str(v: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(v.to_owned()).to_string()
}

fn emit(v: &Y, indent: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(indent);
    match v {
        Y::M(entries) => {
            for (k, x) in entries {
                match x {
                    Y::M(m) if !m.is_empty() => {
                        out.push(format!("{pad}{k}:"));
                        emit(x, indent + 1, out);
                    }
                    Y::L(l) if !l.is_empty() => {
                        out.push(format!("{pad}{k}:"));
                        emit(x, indent + 1, out);
                    }
                    Y::M(_) => out.push(format!("{pad}{k}: {{}}")),
                    Y::L(_) => out.push(format!("{pad}{k}: []")),
                    Y::S(text) if text.contains('\n') => {
                        out.push(format!("{pad}{k}: |"));
                        for line in text.trim_end_matches('\n').split('\n') {
                            if line.is_empty() {
                                out.push(String::new());
                            } else {
                                out.push(format!("{pad}  {line}"));
                            }
                        }
                    }
                    Y::S(text) => out.push(format!("{pad}{k}: {}", json_str(text))),
                }
            }
        }
        Y::L(items) => {
            for x in items {
                match x {
                    Y::M(_) => {
                        let mut sub = Vec::new();
                        emit(x, indent + 1, &mut sub);
                        let mut lines = sub.into_iter();
                        if let Some(first) = lines.next() {
                            out.push(format!("{pad}- {}", first.trim_start()));
                        }
                        out.extend(lines);
                    }
                    Y::S(text) => out.push(format!("{pad}- {}", json_str(text))),
                    Y::L(_) => {
                        // Not produced by the generator; emit as a flow sequence.
                        out.push(format!("{pad}- []"));
                    }
                }
            }
        }
        Y::S(text) => out.push(format!("{pad}{}", json_str(text))),
    }
}

fn to_yaml(doc: &Y) -> String {
    let mut lines = Vec::new();
    emit(doc, 0, &mut lines);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Python's str.title(): upper-case the first letter of every alphabetic run.
fn title(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut prev_alpha = false;
    for c in v.chars() {
        if prev_alpha {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_alpha = c.is_alphabetic();
    }
    out
}

fn capitalize(v: &str) -> String {
    let mut chars = v.chars();
    match chars.next() {
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

struct Meta {
    n: usize,
    seed: u64,
    counts: Vec<(&'static str, usize)>,
    sample_component: String,
    fulltext_hits: usize,
    production_components: usize,
}

impl Meta {
    fn to_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = self
            .counts
            .iter()
            .map(|(k, c)| ((*k).to_owned(), Value::from(*c)))
            .collect();
        serde_json::json!({
            "n": self.n,
            "seed": self.seed,
            "counts": counts,
            "sample_component": self.sample_component,
            "fulltext_word": FULLTEXT_WORD,
            "fulltext_word_name_hits": self.fulltext_hits,
            "production_components": self.production_components,
        })
    }
}

fn plan_counts(n: usize) -> Result<Vec<(&'static str, usize)>> {
    ensure!(n >= 6, "--entities must be at least 6");
    let domains = (n / 200).max(1);
    let systems = (n * 3 / 100).max(1);
    let groups = (n * 3 / 100).max(1);
    let users = (n * 18 / 100).max(1);
    let apis = (n * 15 / 100).max(1);
    let components = n - domains - systems - groups - users - apis;
    Ok(vec![
        ("Domain", domains),
        ("System", systems),
        ("Group", groups),
        ("User", users),
        ("API", apis),
        ("Component", components),
    ])
}

fn count_of(counts: &[(&'static str, usize)], kind: &str) -> usize {
    counts
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, c)| *c)
}

fn unique_names(
    rng: &mut Rng,
    words: &[&str],
    count: usize,
    parts: usize,
    suffixes: Option<&[&str]>,
    used: &mut HashSet<String>,
) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    let mut i = 0usize;
    while names.len() < count {
        let mut picked: Vec<&str> = rng.sample(words, parts);
        if let Some(suffixes) = suffixes {
            picked.push(*rng.choice(suffixes));
        }
        let base = picked.join("-");
        let name = if used.contains(&base) {
            format!("{base}-{i}")
        } else {
            base
        };
        i += 1;
        if used.contains(&name) {
            continue;
        }
        used.insert(name.clone());
        names.push(name);
    }
    names
}

fn description(rng: &mut Rng, words: &[&str], what: &str) -> String {
    let w = rng.sample(words, 3);
    format!(
        "{} responsible for {} and {} {} flows.",
        capitalize(what),
        w[0],
        w[1],
        w[2]
    )
}

/// Generates the N documents; returns them with the run metadata.
fn generate(n: usize, seed: u64) -> Result<(Vec<Y>, Meta)> {
    let mut rng = Rng(seed ^ 0x5354_4147_4544_4f4f);
    let words: Vec<&str> = WORDS_TEXT
        .split_whitespace()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tags: Vec<&str> = TAGS_TEXT.split_whitespace().collect();
    let first: Vec<&str> = FIRST_TEXT.split_whitespace().collect();
    let last: Vec<&str> = LAST_TEXT.split_whitespace().collect();
    let counts = plan_counts(n)?;
    let mut used: HashSet<String> = HashSet::new();

    // Groups: departments at the top, teams below them.
    let n_groups = count_of(&counts, "Group");
    let n_depts = DEPARTMENTS.len().min((n_groups / 10).max(1));
    let dept_names: Vec<String> = DEPARTMENTS[..n_depts]
        .iter()
        .map(|d| (*d).to_owned())
        .collect();
    used.extend(dept_names.iter().cloned());
    let team_names: Vec<String> =
        unique_names(&mut rng, &words, n_groups - n_depts, 2, None, &mut used)
            .into_iter()
            .map(|x| format!("team-{x}"))
            .collect();
    let team_parent: Vec<String> = team_names
        .iter()
        .map(|_| rng.choice(&dept_names).clone())
        .collect();
    let owner_pool: Vec<String> = if team_names.is_empty() {
        dept_names.clone()
    } else {
        team_names.clone()
    };

    let mut user_names: Vec<String> = Vec::new();
    let mut user_used: HashSet<String> = HashSet::new();
    while user_names.len() < count_of(&counts, "User") {
        let base = format!("{}.{}", rng.choice(&first), rng.choice(&last));
        let name = if user_used.contains(&base) {
            format!("{base}{}", user_names.len())
        } else {
            base
        };
        if user_used.contains(&name) {
            continue;
        }
        user_used.insert(name.clone());
        user_names.push(name);
    }

    let domain_names: Vec<String> = unique_names(
        &mut rng,
        &words,
        count_of(&counts, "Domain"),
        1,
        None,
        &mut HashSet::new(),
    )
    .into_iter()
    .map(|w| format!("{w}-domain"))
    .collect();
    let system_names = unique_names(
        &mut rng,
        &words,
        count_of(&counts, "System"),
        2,
        Some(&["platform", "system", "suite", "hub"]),
        &mut used,
    );
    let api_names = unique_names(
        &mut rng,
        &words,
        count_of(&counts, "API"),
        2,
        Some(&["api", "events", "rpc", "graph"]),
        &mut used,
    );
    let mut comp_names = unique_names(
        &mut rng,
        &words,
        count_of(&counts, "Component"),
        2,
        Some(SUFFIX_COMPONENT),
        &mut used,
    );
    // Full-text search needs at least one component named after the search word.
    if !comp_names.iter().any(|c| c.contains(FULLTEXT_WORD)) {
        let mut name = format!("{FULLTEXT_WORD}-core-service");
        let mut i = 0;
        while used.contains(&name) {
            i += 1;
            name = format!("{FULLTEXT_WORD}-core-service-{i}");
        }
        used.insert(name.clone());
        comp_names[0] = name;
    }

    let system_domain: Vec<String> = system_names
        .iter()
        .map(|_| rng.choice(&domain_names).clone())
        .collect();
    let system_owner: Vec<String> = system_names
        .iter()
        .map(|_| rng.choice(&owner_pool).clone())
        .collect();

    let mut docs: Vec<Y> = Vec::with_capacity(n);
    let entity =
        |kind: &'static str, metadata: Vec<(&'static str, Y)>, spec: Vec<(&'static str, Y)>| {
            Y::M(vec![
                ("apiVersion", s("backstage.io/v1alpha1")),
                ("kind", s(kind)),
                ("metadata", Y::M(metadata)),
                ("spec", Y::M(spec)),
            ])
        };
    let meta = |rng: &mut Rng, name: &str, kind: &str| -> Vec<(&'static str, Y)> {
        let mut m = vec![
            ("name", s(name)),
            ("description", s(description(rng, &words, kind))),
        ];
        let k = rng.randint(0, 4);
        if k > 0 {
            let mut picked = rng.sample(&tags, k);
            picked.sort_unstable();
            m.push(("tags", strs(picked.into_iter().map(str::to_owned))));
        }
        m
    };
    let annotations = |rng: &mut Rng, name: &str| -> Y {
        let slug = format!("acme/{name}");
        let mut a = vec![
            (
                "backstage.io/source-location",
                s(format!("url:https://github.com/{slug}/tree/main/")),
            ),
            ("github.com/project-slug", s(slug)),
            ("backstage.io/techdocs-ref", s("dir:.")),
        ];
        if rng.random() < 0.4 {
            let id: String = (0..6)
                .map(|_| char::from(*rng.choice(PAGERDUTY_CHARS)))
                .collect();
            a.push(("pagerduty.com/service-id", s(format!("P{id}"))));
        }
        if rng.random() < 0.3 {
            a.push(("backstage.io/kubernetes-id", s(name)));
        }
        Y::M(a)
    };

    for d in &domain_names {
        let m = meta(&mut rng, d, "domain");
        let owner = rng.choice(&dept_names).clone();
        docs.push(entity(
            "Domain",
            m,
            vec![("owner", s(format!("group:default/{owner}")))],
        ));
    }

    for (i, sys) in system_names.iter().enumerate() {
        let mut m = meta(&mut rng, sys, "system");
        m.push((
            "annotations",
            Y::M(vec![("backstage.io/techdocs-ref", s("dir:."))]),
        ));
        docs.push(entity(
            "System",
            m,
            vec![
                ("owner", s(format!("group:default/{}", system_owner[i]))),
                ("domain", s(format!("domain:default/{}", system_domain[i]))),
            ],
        ));
    }

    let mut children: HashMap<&str, Vec<String>> = HashMap::new();
    for (t, p) in team_names.iter().zip(&team_parent) {
        children.entry(p.as_str()).or_default().push(t.clone());
    }
    let group_names: Vec<(&String, Option<&String>)> = dept_names
        .iter()
        .map(|d| (d, None))
        .chain(
            team_names
                .iter()
                .zip(&team_parent)
                .map(|(t, p)| (t, Some(p))),
        )
        .collect();
    for (g, parent) in group_names {
        let is_dept = parent.is_none();
        let what = if is_dept { "department" } else { "team" };
        let m = vec![
            ("name", s(g.as_str())),
            ("description", s(description(&mut rng, &words, what))),
        ];
        let profile = Y::M(vec![
            ("displayName", s(title(&g.replace('-', " ")))),
            ("email", s(format!("{g}@example.com"))),
        ]);
        let spec = match parent {
            None => vec![
                ("type", s("department")),
                ("profile", profile),
                (
                    "children",
                    strs(children.get(g.as_str()).cloned().unwrap_or_default()),
                ),
            ],
            Some(p) => vec![
                ("type", s("team")),
                ("profile", profile),
                ("parent", s(p.as_str())),
                ("children", Y::L(Vec::new())),
            ],
        };
        docs.push(entity("Group", m, spec));
    }

    for u in &user_names {
        let (f, l) = u.split_once('.').unwrap_or((u.as_str(), ""));
        let l = l.trim_end_matches(|c: char| c.is_ascii_digit());
        let k = owner_pool.len().min(1 + usize::from(rng.random() < 0.2));
        let groups: BTreeSet<String> = rng.sample(&owner_pool, k).into_iter().collect();
        docs.push(entity(
            "User",
            vec![("name", s(u.as_str()))],
            vec![
                (
                    "profile",
                    Y::M(vec![
                        ("displayName", s(format!("{} {}", title(f), title(l)))),
                        ("email", s(format!("{u}@example.com"))),
                    ]),
                ),
                ("memberOf", strs(groups)),
            ],
        ));
    }

    let owner_for = |rng: &mut Rng, sys_index: usize| -> String {
        if rng.random() < 0.8 {
            system_owner[sys_index].clone()
        } else {
            rng.choice(&owner_pool).clone()
        }
    };

    for a in &api_names {
        let sys_index = rng.below(system_names.len());
        let atype = rng.weighted(API_TYPES);
        let mut m = meta(&mut rng, a, "API");
        m.push(("annotations", annotations(&mut rng, a)));
        let head = a.split('-').next().unwrap_or(a.as_str());
        let definition = match atype {
            "openapi" => format!(
                "openapi: 3.0.0\ninfo:\n  title: {a}\n  version: 1.0.{}\npaths:\n  /{head}:\n    get:\n      summary: List {head}\n      responses:\n        '200':\n          description: OK\n",
                rng.randint(0, 40)
            ),
            "grpc" => format!(
                "syntax = \"proto3\";\npackage acme.{};\nservice {}Service {{\n  rpc Get(GetRequest) returns (GetResponse);\n}}\n",
                a.replace('-', "_"),
                title(head)
            ),
            "asyncapi" => format!(
                "asyncapi: 2.6.0\ninfo:\n  title: {a}\n  version: 1.0.0\nchannels:\n  {head}.events:\n    subscribe:\n      message:\n        name: {head}Event\n"
            ),
            _ => format!("type Query {{\n  {head}(id: ID!): {}\n}}\n", title(head)),
        };
        let lifecycle = rng.weighted(LIFECYCLES);
        let owner = owner_for(&mut rng, sys_index);
        docs.push(entity(
            "API",
            m,
            vec![
                ("type", s(atype)),
                ("lifecycle", s(lifecycle)),
                ("owner", s(format!("group:default/{owner}"))),
                (
                    "system",
                    s(format!("system:default/{}", system_names[sys_index])),
                ),
                ("definition", s(definition)),
            ],
        ));
    }

    let mut production: Vec<&String> = Vec::new();
    for (i, c) in comp_names.iter().enumerate() {
        let sys_index = rng.below(system_names.len());
        let ctype = rng.weighted(COMPONENT_TYPES);
        let mut m = meta(&mut rng, c, "component");
        m.push(("annotations", annotations(&mut rng, c)));
        if rng.random() < 0.5 {
            m.push((
                "links",
                Y::L(vec![Y::M(vec![
                    ("url", s(format!("https://dashboards.example.com/{c}"))),
                    ("title", s("Dashboard")),
                    ("icon", s("dashboard")),
                ])]),
            ));
        }
        let mut lifecycle = rng.weighted(LIFECYCLES);
        if i == 0 {
            // Guarantees production components for the list-filter read at any N.
            lifecycle = "production";
        }
        if lifecycle == "production" {
            production.push(c);
        }
        let owner = owner_for(&mut rng, sys_index);
        let mut spec = vec![
            ("type", s(ctype)),
            ("lifecycle", s(lifecycle)),
            ("owner", s(format!("group:default/{owner}"))),
            (
                "system",
                s(format!("system:default/{}", system_names[sys_index])),
            ),
        ];
        if ctype == "service" || ctype == "website" {
            let k = rng.randint(0, 2);
            let mut provides = rng.sample(&api_names, k);
            if !provides.is_empty() {
                provides.sort_unstable();
                spec.push((
                    "providesApis",
                    strs(provides.iter().map(|a| format!("api:default/{a}"))),
                ));
            }
            let k = rng.randint(0, 3);
            let mut consumes = rng.sample(&api_names, k);
            if !consumes.is_empty() {
                consumes.sort_unstable();
                spec.push((
                    "consumesApis",
                    strs(consumes.iter().map(|a| format!("api:default/{a}"))),
                ));
            }
        }
        if i > 0 && rng.random() < 0.7 {
            let k = rng.randint(1, 3);
            let mut deps: Vec<&String> = rng
                .sample_indices(i, k)
                .into_iter()
                .map(|j| &comp_names[j])
                .collect();
            deps.sort_unstable();
            spec.push((
                "dependsOn",
                strs(deps.iter().map(|d| format!("component:default/{d}"))),
            ));
        }
        if i > 0 && ctype == "library" && rng.random() < 0.1 {
            let parent = &comp_names[rng.below(i)];
            spec.push(("subcomponentOf", s(format!("component:default/{parent}"))));
        }
        docs.push(entity("Component", m, spec));
    }

    ensure!(
        docs.len() == n,
        "generated {} documents, wanted {n}",
        docs.len()
    );
    let fulltext_hits = [
        &domain_names,
        &system_names,
        &team_names,
        &dept_names,
        &user_names,
        &api_names,
        &comp_names,
    ]
    .iter()
    .flat_map(|names| names.iter())
    .filter(|name| name.contains(FULLTEXT_WORD))
    .count();
    let sample_component = production
        .get(production.len() / 2)
        .map_or_else(|| comp_names[0].clone(), |c| (*c).clone());
    let meta = Meta {
        n,
        seed,
        counts,
        sample_component,
        fulltext_hits,
        production_components: production.len(),
    };
    Ok((docs, meta))
}

fn write_workload(dir: &Path, n: usize, seed: u64) -> Result<Meta> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (docs, meta) = generate(n, seed)?;
    for (shard, chunk) in shard_names(n).iter().zip(docs.chunks(SHARD)) {
        let mut text = String::with_capacity(chunk.len() * 700);
        writeln!(
            text,
            "# Generated by the stagedoor catalog bench n={n} seed={seed}"
        )?;
        for doc in chunk {
            text.push_str("---\n");
            text.push_str(&to_yaml(doc));
        }
        std::fs::write(dir.join(shard), text).with_context(|| format!("writing {shard}"))?;
    }
    let meta_json = serde_json::to_string_pretty(&meta.to_json())?;
    std::fs::write(dir.join("entities.meta.json"), meta_json + "\n")
        .context("writing entities.meta.json")?;
    Ok(meta)
}

/// Entities per file: a location file stays well under the reader's size limit.
const SHARD: usize = 10_000;

/// The files the workload is written to, one location each.
fn shard_names(n: usize) -> Vec<String> {
    (0..n.div_ceil(SHARD).max(1))
        .map(|i| format!("entities-{i:03}.yaml"))
        .collect()
}

fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or("?"))
        .collect();
    groups.join(",")
}
