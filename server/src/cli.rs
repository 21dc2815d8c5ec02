//! The command line: `serve`, `migrate` and `catalog validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::catalog::ingest::{self, LocationSpec, Rules};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "stagedoor",
    version,
    about = "Developer portal and software catalog, compatible with the Backstage backend"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default). With no --config, serves the demo catalog on SQLite under ./.stagedoor/.
    Serve {
        /// An app-config.yaml; give it several times to merge files, the later winning.
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Apply, roll back or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
        /// An app-config.yaml naming the database; may be repeated.
        #[arg(long = "config", short = 'c', value_name = "FILE", global = true)]
        config: Vec<PathBuf>,
    },
    /// Work with catalog files offline.
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration (the default).
    Up,
    /// Roll back the most recent migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Debug, Subcommand)]
enum CatalogAction {
    /// Check entity YAML files; prints file:document: message per problem and fails if any.
    Validate {
        /// The YAML files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: vec![] }) {
        Command::Catalog {
            action: CatalogAction::Validate { files },
        } => validate_files(&files),
        Command::Serve { config } => run(async move {
            let config = Config::load(&config)?;
            let server = crate::app::start(config).await?;
            server.run_until_signal().await
        }),
        Command::Migrate { action, config } => run(async move {
            let config = Config::load(&config)?;
            let db = crate::db::Db::connect(&config.database, 2).await?;
            match action.unwrap_or(MigrateAction::Up) {
                MigrateAction::Up => {
                    db.migrate_up().await?;
                    println!("migrations applied");
                }
                MigrateAction::Down => {
                    db.migrate_down().await?;
                    println!("rolled back the most recent migration");
                }
                MigrateAction::Status => {
                    for (name, applied) in db.migration_status().await? {
                        println!("{} {name}", if applied { "applied" } else { "pending" });
                    }
                }
            }
            Ok(())
        }),
    }
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    crate::telemetry::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Offline validation with the built-in kinds; nested locations are not followed.
fn validate_files(files: &[PathBuf]) -> ExitCode {
    let rules = Rules::allow_builtin();
    let mut problems = 0usize;
    for file in files {
        let name = file.display().to_string();
        let bytes = match std::fs::read(file) {
            Ok(b) if b.len() <= crate::catalog::reader::MAX_READ_BYTES => b,
            Ok(_) => {
                println!(
                    "{name}:0: file is larger than {} bytes",
                    crate::catalog::reader::MAX_READ_BYTES
                );
                problems += 1;
                continue;
            }
            Err(e) => {
                println!("{name}:0: cannot read: {e}");
                problems += 1;
                continue;
            }
        };
        let spec = LocationSpec {
            kind: "file".into(),
            target: name.clone(),
        };
        let mut seen = std::collections::HashMap::new();
        for (n, doc) in ingest::parse_documents(&bytes) {
            match doc {
                Ok(serde_json::Value::Null) => {}
                Ok(value) => match ingest::process_document(value, &spec, &spec, &rules) {
                    Ok(e) => {
                        if let Some(first) = seen.insert(e.entity_ref.key(), n) {
                            println!(
                                "{name}:{n}: {} is already defined in document {first}",
                                e.entity_ref
                            );
                            problems += 1;
                        }
                    }
                    Err((_, errors)) => {
                        for e in errors {
                            println!("{name}:{n}: {e}");
                            problems += 1;
                        }
                    }
                },
                Err(e) => {
                    println!("{name}:{n}: {e}");
                    problems += 1;
                    // A YAML syntax error ends the stream: nothing after it can be read.
                    break;
                }
            }
        }
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
