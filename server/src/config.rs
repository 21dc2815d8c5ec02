//! Typed configuration read from Backstage's `app-config.yaml`.
//!
//! Files are loaded once at start: `${VAR}` and `$env`/`$file` are substituted,
//! each file is checked on its own (so that an unknown key names its file),
//! then the files are merged, the later winning, and read into [`Config`].
//! Nothing else in the server reads files or the environment for settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: invalid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
}

/// Top-level sections of Backstage's configuration that this server does not
/// read. They are accepted, so existing files keep working, with a warning.
const IGNORED_SECTIONS: &[&str] = &[
    "organization",
    "techdocs",
    "proxy",
    "permission",
    "search",
    "home",
    "lighthouse",
    "costInsights",
    "sentry",
    "rollbar",
    "newRelic",
    "pagerDuty",
    "jenkins",
    "sonarqube",
    "kafka",
    "allure",
    "azureDevOps",
    "gitlab",
    "homepage",
    "events",
    "signals",
    "notifications",
    "enableExperimentalRedirectFlow",
];

/// Sections that later parts of the server will read; accepted as they are now.
const RESERVED_SECTIONS: &[&str] = &["integrations", "humanitec", "kubernetes"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    #[serde(default)]
    pub app: AppSection,
    #[serde(default)]
    pub backend: BackendSection,
    #[serde(default)]
    pub catalog: CatalogSection,
    #[serde(default)]
    pub auth: AuthSection,
    /// Stagedoor's own settings, beyond Backstage's keys.
    #[serde(default)]
    pub stagedoor: StagedoorSection,
    #[serde(default)]
    pub integrations: Option<Value>,
    #[serde(default)]
    pub scaffolder: ScaffolderSection,
    #[serde(default)]
    pub humanitec: Option<Value>,
    #[serde(default)]
    pub kubernetes: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppSection {
    pub base_url: Option<String>,
    pub title: Option<String>,
    // Front-end settings of Backstage's app; accepted and not used here.
    pub support: Option<Value>,
    pub listen: Option<Value>,
    pub package_name: Option<String>,
    pub google_analytics_tracking_id: Option<String>,
    pub analytics: Option<Value>,
    pub experimental: Option<Value>,
    pub routes: Option<Value>,
    pub extensions: Option<Value>,
    pub datadog_rum: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendSection {
    pub base_url: Option<String>,
    pub listen: Option<Listen>,
    pub database: Option<DatabaseSection>,
    pub reading: Option<ReadingSection>,
    pub auth: Option<BackendAuth>,
    /// Where task workspaces are kept (Backstage's key; default: the data directory).
    pub working_directory: Option<String>,
    // Accepted for compatibility; the server's own defaults apply.
    pub cors: Option<Value>,
    pub csp: Option<Value>,
    pub cache: Option<Value>,
    pub https: Option<Value>,
    pub rate_limit: Option<Value>,
    pub health: Option<Value>,
}

/// `backend.listen`: Backstage accepts `":7007"`, `"host:port"` or `{host, port}`.
#[derive(Debug, Clone)]
pub enum Listen {
    Address(String),
    Parts {
        host: Option<String>,
        port: Option<PortValue>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenParts {
    host: Option<String>,
    port: Option<PortValue>,
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Listen::Address(s)),
            v @ Value::Object(_) => {
                either_form(v, "a \"host:port\" string or {host, port}").map(|p: ListenParts| {
                    Listen::Parts {
                        host: p.host,
                        port: p.port,
                    }
                })
            }
            other => Err(wrong_form(&other, "a \"host:port\" string or {host, port}")),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Reads the object form of a setting that also has a string form, so that a
/// mistyped key inside it is named rather than lost in "no variant matched".
fn either_form<T: serde::de::DeserializeOwned>(v: Value, forms: &str) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("{e} (expected {forms})"))
}

fn wrong_form(v: &Value, forms: &str) -> String {
    let found = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    };
    format!("found {found}, expected {forms}")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    Number(u16),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSection {
    pub client: String,
    pub connection: Option<Connection>,
    pub ensure_exists: Option<bool>,
    pub plugin_division_mode: Option<String>,
    pub prefix: Option<String>,
    pub knex_config: Option<Value>,
    pub plugin: Option<Value>,
    /// Pool size; Backstage's `knexConfig.pool.max` plays the same part.
    pub pool_size: Option<u32>,
}

#[derive(Debug, Clone)]
pub enum Connection {
    Url(SecretString),
    Parts(ConnectionParts),
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FORMS: &str = "a URL or path string, or {host, port, user, password, database}";
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Connection::Url(SecretString::from(s))),
            v @ Value::Object(_) => either_form(v, FORMS).map(Connection::Parts),
            // Not echoed: a connection may carry a password.
            other => Err(wrong_form(&other, FORMS)),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionParts {
    pub host: Option<String>,
    pub port: Option<PortValue>,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub database: Option<String>,
    pub filename: Option<String>,
    pub directory: Option<String>,
    pub ssl: Option<Value>,
    pub connection_string: Option<SecretString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingSection {
    #[serde(default)]
    pub allow: Vec<ReadingAllow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingAllow {
    pub host: String,
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendAuth {
    pub keys: Option<Vec<Value>>,
    #[serde(default)]
    pub external_access: Vec<ExternalAccess>,
    #[serde(default)]
    pub dangerously_disable_default_auth_policy: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub options: ExternalAccessOptions,
    pub access_restrictions: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccessOptions {
    pub token: SecretString,
    pub subject: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogSection {
    pub locations: Option<Vec<LocationConfig>>,
    pub rules: Option<Vec<CatalogRule>>,
    pub processing_interval: Option<DurationValue>,
    pub orphan_strategy: Option<OrphanStrategy>,
    pub readonly: Option<bool>,
    pub providers: Option<ProvidersSection>,
    // Backstage settings with no effect here.
    pub stitching_strategy: Option<Value>,
    pub import: Option<Value>,
    pub processors: Option<Value>,
    pub use_url_readers_search: Option<bool>,
    pub orphan_provider_strategy: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    pub rules: Option<Vec<CatalogRule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRule {
    pub allow: Vec<String>,
    pub locations: Option<Vec<RuleLocation>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleLocation {
    #[serde(rename = "type")]
    pub kind: String,
    pub target: Option<String>,
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanStrategy {
    #[default]
    Keep,
    Delete,
}

/// Backstage's HumanDuration object (`{minutes: 5}`) or an ISO 8601 duration string.
#[derive(Debug, Clone)]
pub enum DurationValue {
    Object(HumanDuration),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FORMS: &str = "{minutes: 5}-style units or an ISO 8601 duration such as PT5M";
        match Value::deserialize(d)? {
            Value::String(s) => Ok(DurationValue::Text(s)),
            v @ Value::Object(_) => either_form(v, FORMS).map(DurationValue::Object),
            other => Err(wrong_form(&other, FORMS)),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanDuration {
    #[serde(default)]
    pub years: f64,
    #[serde(default)]
    pub months: f64,
    #[serde(default)]
    pub weeks: f64,
    #[serde(default)]
    pub days: f64,
    #[serde(default)]
    pub hours: f64,
    #[serde(default)]
    pub minutes: f64,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub milliseconds: f64,
}

/// `auth`: Backstage's sign-in settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthSection {
    pub environment: Option<String>,
    pub session: Option<AuthSessionSection>,
    pub providers: Option<AuthProviders>,
    pub backstage_token_expiration: Option<DurationValue>,
    // Backstage settings with no effect here.
    pub key_store: Option<Value>,
    pub experimental_extra_allowed_origins: Option<Value>,
    pub omit_identity_token_ownership_claim: Option<Value>,
    pub identity_token_algorithm: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSessionSection {
    pub secret: Option<SecretString>,
}

/// `auth.providers`: the guest and OIDC providers are served; others are named in a warning.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthProviders {
    pub guest: Option<GuestProviderSection>,
    pub oidc: Option<BTreeMap<String, OidcProviderSection>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuestProviderSection {
    pub user_entity_ref: Option<String>,
    pub ownership_entity_refs: Option<Vec<String>>,
    pub dangerously_allow_outside_development: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OidcProviderSection {
    pub metadata_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub callback_url: Option<String>,
    pub scope: Option<String>,
    pub prompt: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub token_signed_response_alg: Option<String>,
    pub additional_scopes: Option<Value>,
    pub session_duration: Option<DurationValue>,
    pub timeout: Option<Value>,
    pub sign_in: Option<SignInSection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInSection {
    #[serde(default)]
    pub resolvers: Vec<ResolverSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResolverSection {
    pub resolver: String,
    pub allowed_domains: Option<Vec<String>>,
    pub dangerously_allow_sign_in_without_user_in_catalog: Option<bool>,
}

/// `stagedoor`: settings that Backstage has no key for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StagedoorSection {
    pub admins: Option<AdminsSection>,
    pub session: Option<StagedoorSessionSection>,
}

/// `scaffolder`: Backstage's keys, plus `publishFile.allowedRoots` and
/// `templateFiles.allowedRoots`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScaffolderSection {
    pub concurrent_tasks_limit: Option<u32>,
    pub task_timeout: Option<DurationValue>,
    pub publish_file: Option<PublishFileSection>,
    pub template_files: Option<TemplateFilesSection>,
    // Backstage's other scaffolder keys: accepted; the server's behaviour covers them.
    pub default_author: Option<Value>,
    pub default_commit_message: Option<Value>,
    pub task_timeout_janitor_frequency: Option<Value>,
    #[serde(rename = "EXPERIMENTAL_recoverTasks")]
    pub experimental_recover_tasks: Option<Value>,
    #[serde(rename = "EXPERIMENTAL_recoverTasksTimeout")]
    pub experimental_recover_tasks_timeout: Option<DurationValue>,
    pub default_environment: Option<Value>,
    pub auditor: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishFileSection {
    #[serde(default)]
    pub allowed_roots: Vec<String>,
}

/// `scaffolder.templateFiles`: where admins may register template files from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateFilesSection {
    #[serde(default)]
    pub allowed_roots: Vec<String>,
}

/// The scaffolder's settings, resolved.
#[derive(Debug, Clone)]
pub struct ScaffolderConfig {
    /// Tasks this replica runs at once.
    pub concurrent_tasks: usize,
    /// A task still running after this long is failed.
    pub task_timeout: Duration,
    /// `publish:file` writes only below one of these directories.
    pub publish_roots: Vec<PathBuf>,
    /// Where task workspaces live.
    pub work_dir: PathBuf,
    /// `file` template locations may be registered from the admin page only
    /// below one of these directories; none means only URLs.
    pub template_roots: Vec<PathBuf>,
    /// A running task whose worker has not beaten for this long is resumed
    /// elsewhere (`EXPERIMENTAL_recoverTasksTimeout`).
    pub recover_after: Duration,
}

impl ScaffolderConfig {
    fn defaults(data_dir: &Path) -> ScaffolderConfig {
        ScaffolderConfig {
            concurrent_tasks: 10,
            task_timeout: Duration::from_secs(3600),
            publish_roots: vec![data_dir.join("published")],
            work_dir: data_dir.join("scaffolder"),
            template_roots: vec![],
            recover_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminsSection {
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StagedoorSessionSection {
    pub idle_timeout: Option<DurationValue>,
    pub absolute_timeout: Option<DurationValue>,
}

/// A sign-in resolver, as Backstage names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInResolver {
    EmailMatchingUserEntityProfileEmail {
        allow_without_user: bool,
    },
    EmailLocalPartMatchingUserEntityName {
        allowed_domains: Option<Vec<String>>,
        allow_without_user: bool,
    },
}

/// One OIDC provider environment, resolved.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub env: String,
    pub metadata_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub callback_url: String,
    pub scope: String,
    pub prompt: Option<String>,
    /// `client_secret_post` instead of HTTP Basic.
    pub secret_in_body: bool,
    pub resolvers: Vec<SignInResolver>,
}

/// The guest provider, resolved.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    pub user_entity_ref: String,
    pub ownership_entity_refs: Vec<String>,
}

/// Sign-in, sessions and roles, resolved.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub environment: String,
    pub session_secret: Option<SecretString>,
    pub guest: Option<GuestConfig>,
    pub oidc: BTreeMap<String, OidcConfig>,
    pub admin_groups: Vec<String>,
    pub session_idle: Duration,
    pub session_absolute: Duration,
    pub token_lifetime: Duration,
}

impl AuthConfig {
    pub fn production(&self) -> bool {
        self.environment == "production"
    }

    /// True when anyone may sign in without credentials, so signing in proves nothing.
    pub fn open_sign_in(&self) -> bool {
        self.guest.is_some()
    }
}

/// `catalog.providers`: the `cognito` providers are read; the settings of other
/// Backstage entity providers are accepted as they are and not used.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProvidersSection {
    #[serde(default)]
    pub cognito: BTreeMap<String, CognitoProviderSection>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// `catalog.providers.cognito.<id>`. Each key is optional in one file, so that a
/// later file may override a single key; the merged result must be complete.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CognitoProviderSection {
    pub region: Option<String>,
    pub user_pool_id: Option<String>,
    pub schedule: Option<ScheduleSection>,
    /// Overrides the Cognito endpoint (a stand-in server, a VPC endpoint).
    pub endpoint: Option<String>,
}

/// Backstage's task schedule: `{frequency, timeout, initialDelay?, scope?}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleSection {
    pub frequency: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub initial_delay: Option<DurationValue>,
    /// `global` or `local`. Accepted; a schedule here always runs once across replicas.
    pub scope: Option<String>,
}

/// A task schedule, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time from the start of one run to the start of the next.
    pub frequency: Duration,
    /// The longest a run may take.
    pub timeout: Duration,
    /// Time from start-up to the first run of a new task.
    pub initial_delay: Duration,
}

/// One Cognito user pool that syncs into the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoProviderConfig {
    /// The `<id>` of `catalog.providers.cognito.<id>`.
    pub id: String,
    pub region: String,
    pub user_pool_id: String,
    pub endpoint: Option<String>,
    pub schedule: Schedule,
}

/// The database the server uses, resolved from `backend.database`.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    Sqlite { path: Option<PathBuf> },
    Postgres { url: SecretString },
}

/// Where a location's relative paths start.
#[derive(Debug, Clone)]
pub struct ConfiguredLocation {
    pub kind: String,
    pub target: String,
    pub rules: Option<Vec<CatalogRule>>,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `app.title`: the portal's name in page titles and the header.
    pub app_title: String,
    pub base_url: String,
    pub app_base_url: String,
    pub host: String,
    pub port: u16,
    pub database: DatabaseConfig,
    pub pool_size: u32,
    pub reading_allow: Vec<ReadingAllow>,
    pub external_access: Vec<ExternalAccess>,
    pub disable_default_auth_policy: bool,
    pub locations: Vec<ConfiguredLocation>,
    pub rules: Option<Vec<CatalogRule>>,
    pub processing_interval: Duration,
    pub orphan_strategy: OrphanStrategy,
    pub readonly: bool,
    pub auth: AuthConfig,
    /// `catalog.providers.cognito`, in id order.
    pub cognito_providers: Vec<CognitoProviderConfig>,
    /// True when no configuration file was given: the demo catalog is served.
    pub demo: bool,
    pub scaffolder: ScaffolderConfig,
    /// Directory for the embedded database, the demo catalog and task workspaces.
    pub data_dir: PathBuf,
    /// Messages to log once the logger is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and merges the given files. With no files, the zero-config demo.
    pub fn load(files: &[PathBuf]) -> Result<Config, ConfigError> {
        if files.is_empty() {
            return Ok(Self::demo(PathBuf::from(".stagedoor")));
        }
        let mut merged = Value::Object(Default::default());
        let mut warnings = Vec::new();
        let mut parsed: Vec<(String, Value)> = Vec::with_capacity(files.len());
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                file: name.clone(),
                source,
            })?;
            let base = file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let value = parse_file(&text, &name, &base, &mut warnings)?;
            check_file(&value, &name, &mut warnings)?;
            merge(&mut merged, value.clone());
            parsed.push((name, value));
        }
        let files_label = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // A bad value is blamed on the last file that sets it: that one won the merge.
        let blame = |e: ConfigError| match e {
            ConfigError::Key { file, key, message } => ConfigError::Key {
                file: parsed
                    .iter()
                    .rev()
                    .find(|(_, v)| lookup(v, &key).is_some())
                    .map(|(name, _)| name.clone())
                    .unwrap_or(file),
                key,
                message,
            },
            other => other,
        };
        let raw: RawConfig = typed(&merged, &files_label).map_err(blame)?;
        let base = files
            .first()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Self::resolve(raw, &files_label, &base).map_err(blame)?;
        warnings.append(&mut config.warnings);
        config.warnings = warnings;
        Ok(config)
    }

    /// Parses configuration from YAML text, as if it were a file in `base_dir`.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let name = "<inline>";
        let value = parse_file(text, name, base_dir, &mut warnings)?;
        check_file(&value, name, &mut warnings)?;
        let raw: RawConfig = typed(&value, name)?;
        let mut config = Self::resolve(raw, name, base_dir)?;
        config.warnings.append(&mut warnings);
        Ok(config)
    }

    /// The zero-config demo: loopback, SQLite under `data_dir`, the shipped catalog.
    pub fn demo(data_dir: PathBuf) -> Config {
        Config {
            app_title: "Stagedoor".into(),
            base_url: "http://127.0.0.1:7007".into(),
            app_base_url: "http://127.0.0.1:7007".into(),
            host: "127.0.0.1".into(),
            port: 7007,
            database: DatabaseConfig::Sqlite {
                path: Some(data_dir.join("stagedoor.sqlite")),
            },
            pool_size: 4,
            reading_allow: vec![],
            external_access: vec![],
            disable_default_auth_policy: false,
            locations: vec![ConfiguredLocation {
                kind: "file".into(),
                target: data_dir
                    .join("demo-catalog")
                    .join("all.yaml")
                    .display()
                    .to_string(),
                rules: None,
            }],
            rules: Some(vec![CatalogRule {
                allow: crate::catalog::BUILTIN_KINDS
                    .iter()
                    .map(|k| k.to_string())
                    .collect(),
                locations: None,
            }]),
            processing_interval: Duration::from_secs(100),
            orphan_strategy: OrphanStrategy::Keep,
            readonly: false,
            auth: AuthConfig {
                environment: "development".into(),
                session_secret: None,
                guest: Some(GuestConfig {
                    user_entity_ref: "user:default/kenji.morita".into(),
                    ownership_entity_refs: vec![],
                }),
                oidc: BTreeMap::new(),
                admin_groups: vec!["group:default/platform-team".into()],
                session_idle: DEFAULT_SESSION_IDLE,
                session_absolute: DEFAULT_SESSION_ABSOLUTE,
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
            },
            cognito_providers: vec![],
            demo: true,
            scaffolder: ScaffolderConfig::defaults(&data_dir),
            data_dir,
            warnings: vec![],
        }
    }

    fn resolve(raw: RawConfig, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let key_err = |key: &str, message: String| ConfigError::Key {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let mut warnings = Vec::new();
        let (host, port) = match &raw.backend.listen {
            None => ("127.0.0.1".to_string(), 7007),
            Some(Listen::Address(addr)) => {
                let (h, p) = addr.rsplit_once(':').unwrap_or(("", addr.as_str()));
                let port = p.parse::<u16>().map_err(|_| {
                    key_err("backend.listen", format!("\"{addr}\" is not host:port"))
                })?;
                (if h.is_empty() { "0.0.0.0" } else { h }.to_string(), port)
            }
            Some(Listen::Parts { host, port }) => {
                let port = match port {
                    None => 7007,
                    Some(p) => port_number(p).ok_or_else(|| {
                        key_err("backend.listen.port", "not a port number".into())
                    })?,
                };
                (
                    host.clone().unwrap_or_else(|| "127.0.0.1".to_string()),
                    port,
                )
            }
        };
        let base_url = raw
            .backend
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{host}:{port}"));
        url::Url::parse(&base_url)
            .map_err(|e| key_err("backend.baseUrl", format!("not a URL: {e}")))?;
        let app_base_url = raw.app.base_url.clone().unwrap_or_else(|| base_url.clone());
        url::Url::parse(&app_base_url)
            .map_err(|e| key_err("app.baseUrl", format!("not a URL: {e}")))?;

        let data_dir = PathBuf::from(".stagedoor");
        let (database, pool_size) = match &raw.backend.database {
            None => (
                DatabaseConfig::Sqlite {
                    path: Some(data_dir.join("stagedoor.sqlite")),
                },
                4,
            ),
            Some(db) => {
                let pool = db.pool_size.unwrap_or(8).max(1);
                (
                    resolve_database(db, base).map_err(|m| key_err("backend.database", m))?,
                    pool,
                )
            }
        };

        let reading_allow = raw.backend.reading.clone().unwrap_or_default().allow;
        for (i, entry) in reading_allow.iter().enumerate() {
            if entry.host.trim().is_empty() || entry.host.contains('/') {
                return Err(key_err(
                    &format!("backend.reading.allow[{i}].host"),
                    format!("\"{}\" is not a host or host:port", entry.host),
                ));
            }
        }
        let auth = raw.backend.auth.clone().unwrap_or_default();
        for (i, access) in auth.external_access.iter().enumerate() {
            if access.kind != "static" {
                return Err(key_err(
                    &format!("backend.auth.externalAccess[{i}].type"),
                    format!("\"{}\" is not supported; use \"static\"", access.kind),
                ));
            }
            use secrecy::ExposeSecret;
            if access.options.token.expose_secret().len() < 8
                || access
                    .options
                    .token
                    .expose_secret()
                    .contains(char::is_whitespace)
            {
                return Err(key_err(
                    &format!("backend.auth.externalAccess[{i}].options.token"),
                    "must be at least 8 characters with no whitespace".into(),
                ));
            }
        }
        let locations = raw
            .catalog
            .locations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|l| ConfiguredLocation {
                target: if l.kind == "file" {
                    let p = Path::new(&l.target);
                    if p.is_absolute() {
                        l.target.clone()
                    } else {
                        base.join(p).display().to_string()
                    }
                } else {
                    l.target.clone()
                },
                kind: l.kind,
                rules: l.rules,
            })
            .collect::<Vec<_>>();
        for (i, l) in locations.iter().enumerate() {
            if l.kind != "file" && l.kind != "url" {
                return Err(key_err(
                    &format!("catalog.locations[{i}].type"),
                    format!("\"{}\" is not a location type; use file or url", l.kind),
                ));
            }
        }
        let processing_interval = match &raw.catalog.processing_interval {
            None => Duration::from_secs(100),
            Some(d) => duration(d)
                .map_err(|m| key_err("catalog.processingInterval", m))?
                .max(Duration::from_secs(1)),
        };
        let cognito_providers = match &raw.catalog.providers {
            None => vec![],
            Some(p) => resolve_cognito(&p.cognito).map_err(|(key, m)| key_err(&key, m))?,
        };
        if raw.catalog.rules.is_none() {
            warnings.push(
                "catalog.rules is not set: as in Backstage, only Component, API and Location \
                 entities are accepted from locations"
                    .to_string(),
            );
        }
        let auth_config =
            resolve_auth(&raw, &base_url, &mut warnings).map_err(|(k, m)| key_err(&k, m))?;
        let mut scaffolder = resolve_scaffolder(&raw.scaffolder, &data_dir, base)
            .map_err(|(k, m)| key_err(&k, m))?;
        if let Some(dir) = &raw.backend.working_directory {
            if dir.trim().is_empty() {
                return Err(key_err(
                    "backend.workingDirectory",
                    "must not be empty".into(),
                ));
            }
            scaffolder.work_dir = base.join(dir).join("scaffolder");
        }
        Ok(Config {
            app_title: raw.app.title.clone().unwrap_or_else(|| "Stagedoor".into()),
            auth: auth_config,
            base_url,
            app_base_url,
            host,
            port,
            database,
            pool_size,
            reading_allow,
            disable_default_auth_policy: auth.dangerously_disable_default_auth_policy,
            external_access: auth.external_access,
            locations,
            rules: raw.catalog.rules.clone(),
            processing_interval,
            orphan_strategy: raw.catalog.orphan_strategy.unwrap_or_default(),
            readonly: raw.catalog.readonly.unwrap_or(false),
            cognito_providers,
            demo: false,
            scaffolder,
            data_dir,
            warnings,
        })
    }

    /// True when callers must present a valid identity.
    pub fn auth_required(&self) -> bool {
        !self.disable_default_auth_policy
            && (!self.external_access.is_empty() || !self.auth.oidc.is_empty())
    }
}

const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_SESSION_ABSOLUTE: Duration = Duration::from_secs(7 * 86400);
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Resolves `auth.*` and `stagedoor.*`; an error names the key.
fn resolve_auth(
    raw: &RawConfig,
    base_url: &str,
    warnings: &mut Vec<String>,
) -> Result<AuthConfig, (String, String)> {
    let err = |k: &str, m: &str| (k.to_string(), m.to_string());
    let environment = raw
        .auth
        .environment
        .clone()
        .unwrap_or_else(|| "development".into());
    let production = environment == "production";
    let providers = raw.auth.providers.clone().unwrap_or_default();
    for name in providers.other.keys() {
        warnings.push(format!(
            "auth.providers.{name}: not supported by Stagedoor; use oidc or guest"
        ));
    }
    let guest = match &providers.guest {
        None => None,
        Some(_) if production => {
            return Err(err(
                "auth.providers.guest",
                "the guest provider signs anyone in without credentials and is refused when \
                 auth.environment is production",
            ))
        }
        Some(g) => {
            let user_entity_ref = g
                .user_entity_ref
                .clone()
                .unwrap_or_else(|| "user:development/guest".into());
            crate::catalog::model::EntityRef::parse(&user_entity_ref, Some("User"), "default")
                .map_err(|e| err("auth.providers.guest.userEntityRef", &e.to_string()))?;
            Some(GuestConfig {
                user_entity_ref,
                ownership_entity_refs: g.ownership_entity_refs.clone().unwrap_or_default(),
            })
        }
    };
    let mut oidc = BTreeMap::new();
    for (env, p) in providers.oidc.clone().unwrap_or_default() {
        let key = |k: &str| format!("auth.providers.oidc.{env}.{k}");
        let metadata = url::Url::parse(&p.metadata_url)
            .map_err(|e| (key("metadataUrl"), format!("not a URL: {e}")))?;
        if metadata.scheme() != "https" && !is_loopback(&metadata) {
            return Err((key("metadataUrl"), "must be an https URL".into()));
        }
        let callback_url = p.callback_url.clone().unwrap_or_else(|| {
            format!(
                "{}/api/auth/oidc/handler/frame",
                base_url.trim_end_matches('/')
            )
        });
        url::Url::parse(&callback_url)
            .map_err(|e| (key("callbackUrl"), format!("not a URL: {e}")))?;
        let secret_in_body = match p.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => false,
            Some("client_secret_post") => true,
            Some(other) => {
                return Err((
                    key("tokenEndpointAuthMethod"),
                    format!(
                    "\"{other}\" is not supported; use client_secret_basic or client_secret_post"
                ),
                ))
            }
        };
        let mut resolvers = Vec::new();
        for (i, r) in p
            .sign_in
            .clone()
            .unwrap_or_default()
            .resolvers
            .iter()
            .enumerate()
        {
            let allow_without_user = r
                .dangerously_allow_sign_in_without_user_in_catalog
                .unwrap_or(false);
            resolvers.push(match r.resolver.as_str() {
                "emailMatchingUserEntityProfileEmail" => {
                    SignInResolver::EmailMatchingUserEntityProfileEmail { allow_without_user }
                }
                "emailLocalPartMatchingUserEntityName" => {
                    SignInResolver::EmailLocalPartMatchingUserEntityName {
                        allowed_domains: r.allowed_domains.clone(),
                        allow_without_user,
                    }
                }
                other => {
                    return Err((
                        key(&format!("signIn.resolvers[{i}].resolver")),
                        format!(
                            "\"{other}\" is not a known resolver; use emailMatchingUserEntityProfileEmail \
                             or emailLocalPartMatchingUserEntityName"
                        ),
                    ))
                }
            });
        }
        if resolvers.is_empty() {
            resolvers.push(SignInResolver::EmailMatchingUserEntityProfileEmail {
                allow_without_user: false,
            });
        }
        oidc.insert(
            env.clone(),
            OidcConfig {
                env: env.clone(),
                metadata_url: p.metadata_url.clone(),
                client_id: p.client_id.clone(),
                client_secret: p.client_secret.clone(),
                callback_url,
                scope: p
                    .scope
                    .clone()
                    .unwrap_or_else(|| "openid profile email".into()),
                prompt: p.prompt.clone().filter(|p| p != "auto"),
                secret_in_body,
                resolvers,
            },
        );
    }
    let session_secret = raw.auth.session.as_ref().and_then(|s| s.secret.clone());
    if let Some(s) = &session_secret {
        use secrecy::ExposeSecret;
        if s.expose_secret().len() < 32 {
            return Err(err("auth.session.secret", "must be at least 32 characters"));
        }
    } else if !oidc.is_empty() {
        if production {
            return Err(err(
                "auth.session.secret",
                "is required with an OIDC provider in production: every replica must share it",
            ));
        }
        warnings.push(
            "auth.session.secret is not set: a random one is used, so sessions end when the server restarts".into(),
        );
    }
    let session = raw.stagedoor.session.clone().unwrap_or_default();
    let session_idle = match &session.idle_timeout {
        None => DEFAULT_SESSION_IDLE,
        Some(d) => duration(d).map_err(|m| err("stagedoor.session.idleTimeout", &m))?,
    };
    let session_absolute = match &session.absolute_timeout {
        None => DEFAULT_SESSION_ABSOLUTE,
        Some(d) => duration(d).map_err(|m| err("stagedoor.session.absoluteTimeout", &m))?,
    };
    let token_lifetime = match &raw.auth.backstage_token_expiration {
        None => DEFAULT_TOKEN_LIFETIME,
        Some(d) => duration(d)
            .map_err(|m| err("auth.backstageTokenExpiration", &m))?
            .clamp(Duration::from_secs(600), Duration::from_secs(86400)),
    };
    Ok(AuthConfig {
        environment,
        session_secret,
        guest,
        oidc,
        admin_groups: raw.stagedoor.admins.clone().unwrap_or_default().groups,
        session_idle,
        session_absolute,
        token_lifetime,
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn port_number(p: &PortValue) -> Option<u16> {
    match p {
        PortValue::Number(n) => Some(*n),
        PortValue::Text(t) => t.trim().parse().ok(),
    }
}

fn resolve_database(db: &DatabaseSection, base: &Path) -> Result<DatabaseConfig, String> {
    use secrecy::ExposeSecret;
    match db.client.as_str() {
        "better-sqlite3" | "sqlite3" => {
            let path = match &db.connection {
                None => Some(PathBuf::from(".stagedoor").join("stagedoor.sqlite")),
                Some(Connection::Url(s)) if s.expose_secret() == ":memory:" => None,
                Some(Connection::Url(s)) => Some(base.join(s.expose_secret())),
                Some(Connection::Parts(p)) => match (&p.filename, &p.directory) {
                    (Some(f), _) if f == ":memory:" => None,
                    (Some(f), _) => Some(base.join(f)),
                    (None, Some(d)) => Some(base.join(d).join("stagedoor.sqlite")),
                    (None, None) => {
                        return Err(
                            "SQLite connection needs a file path, {filename}, {directory} or \":memory:\""
                                .into(),
                        )
                    }
                },
            };
            Ok(DatabaseConfig::Sqlite { path })
        }
        "pg" => {
            let url = match &db.connection {
                None => return Err("client pg needs a connection".into()),
                Some(Connection::Url(s)) => {
                    let u = s.expose_secret();
                    if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                        return Err("connection is not a postgres:// URL".into());
                    }
                    u.to_string()
                }
                Some(Connection::Parts(p)) => {
                    if let Some(cs) = &p.connection_string {
                        cs.expose_secret().to_string()
                    } else {
                        let mut url =
                            url::Url::parse("postgres://localhost").map_err(|e| e.to_string())?;
                        url.set_host(Some(p.host.as_deref().unwrap_or("localhost")))
                            .map_err(|e| format!("connection.host: {e}"))?;
                        if let Some(port) = &p.port {
                            let n = port_number(port).ok_or("connection.port is not a port")?;
                            let _ = url.set_port(Some(n));
                        }
                        let _ = url.set_username(p.user.as_deref().unwrap_or("postgres"));
                        if let Some(pw) = &p.password {
                            let _ = url.set_password(Some(pw.expose_secret()));
                        }
                        url.set_path(p.database.as_deref().unwrap_or("stagedoor"));
                        url.to_string()
                    }
                }
            };
            Ok(DatabaseConfig::Postgres { url: url.into() })
        }
        other => Err(format!(
            "client \"{other}\" is not supported; use better-sqlite3, sqlite3 or pg"
        )),
    }
}

fn resolve_scaffolder(
    raw: &ScaffolderSection,
    data_dir: &Path,
    base: &Path,
) -> Result<ScaffolderConfig, (String, String)> {
    let mut c = ScaffolderConfig::defaults(data_dir);
    if let Some(n) = raw.concurrent_tasks_limit {
        if n == 0 {
            return Err((
                "scaffolder.concurrentTasksLimit".into(),
                "must be at least 1".into(),
            ));
        }
        c.concurrent_tasks = n as usize;
    }
    if let Some(d) = &raw.task_timeout {
        c.task_timeout = duration(d).map_err(|m| ("scaffolder.taskTimeout".into(), m))?;
    }
    if let Some(d) = &raw.experimental_recover_tasks_timeout {
        c.recover_after =
            duration(d).map_err(|m| ("scaffolder.EXPERIMENTAL_recoverTasksTimeout".into(), m))?;
    }
    if let Some(p) = &raw.publish_file {
        if !p.allowed_roots.is_empty() {
            c.publish_roots = p.allowed_roots.iter().map(|r| base.join(r)).collect();
        }
    }
    if let Some(t) = &raw.template_files {
        c.template_roots = t.allowed_roots.iter().map(|r| base.join(r)).collect();
    }
    Ok(c)
}

fn duration(d: &DurationValue) -> Result<Duration, String> {
    match duration_or_zero(d)? {
        Duration::ZERO => Err("must be a positive duration".into()),
        positive => Ok(positive),
    }
}

fn duration_or_zero(d: &DurationValue) -> Result<Duration, String> {
    let secs = match d {
        DurationValue::Object(h) => {
            h.years * 365.25 * 86400.0
                + h.months * 30.0 * 86400.0
                + h.weeks * 7.0 * 86400.0
                + h.days * 86400.0
                + h.hours * 3600.0
                + h.minutes * 60.0
                + h.seconds
                + h.milliseconds / 1000.0
        }
        DurationValue::Text(t) => iso_duration(t)
            .ok_or_else(|| format!("\"{t}\" is not an ISO 8601 duration such as PT5M"))?,
    };
    if secs < 0.0 {
        return Err("must not be negative".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "is not a usable duration".into())
}

/// The `<region>_<id>` form of a user pool id.
static USER_POOL_ID: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^([a-z0-9]+(?:-[a-z0-9]+)+)_[0-9A-Za-z]+$").expect("user pool id regex")
});

/// `catalog.providers.cognito`, checked; errors carry the key they concern.
fn resolve_cognito(
    providers: &BTreeMap<String, CognitoProviderSection>,
) -> Result<Vec<CognitoProviderConfig>, (String, String)> {
    let mut out = Vec::with_capacity(providers.len());
    for (id, p) in providers {
        let key = |field: &str| format!("catalog.providers.cognito.{id}.{field}");
        let missing = |field: &str| (key(field), "is required".to_string());
        let id_ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err((
                "catalog.providers.cognito".into(),
                format!("\"{id}\" is not a provider id: use letters, digits and - or _"),
            ));
        }
        let region = p.region.clone().ok_or_else(|| missing("region"))?;
        let user_pool_id = p
            .user_pool_id
            .clone()
            .ok_or_else(|| missing("userPoolId"))?;
        let pool_region = USER_POOL_ID
            .captures(&user_pool_id)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str())
            .ok_or_else(|| {
                (
                    key("userPoolId"),
                    format!("\"{user_pool_id}\" is not a user pool id such as us-east-1_AbC123xyz"),
                )
            })?;
        if pool_region != region {
            return Err((
                key("region"),
                format!("\"{region}\" is not the region of user pool {user_pool_id}"),
            ));
        }
        if let Some(endpoint) = &p.endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err((
                    key("endpoint"),
                    format!("\"{endpoint}\" is not an http(s) URL"),
                ));
            }
        }
        let schedule = p.schedule.as_ref().ok_or_else(|| missing("schedule"))?;
        let frequency = schedule
            .frequency
            .as_ref()
            .ok_or_else(|| missing("schedule.frequency"))
            .and_then(|d| duration(d).map_err(|m| (key("schedule.frequency"), m)))?;
        let timeout = schedule
            .timeout
            .as_ref()
            .ok_or_else(|| missing("schedule.timeout"))
            .and_then(|d| duration(d).map_err(|m| (key("schedule.timeout"), m)))?;
        let initial_delay = match &schedule.initial_delay {
            None => Duration::ZERO,
            Some(d) => duration_or_zero(d).map_err(|m| (key("schedule.initialDelay"), m))?,
        };
        if let Some(scope) = &schedule.scope {
            if scope != "global" && scope != "local" {
                return Err((
                    key("schedule.scope"),
                    format!("\"{scope}\" is not a scope; use global or local"),
                ));
            }
        }
        out.push(CognitoProviderConfig {
            id: id.clone(),
            region,
            user_pool_id,
            endpoint: p.endpoint.clone(),
            schedule: Schedule {
                frequency,
                timeout,
                initial_delay,
            },
        });
    }
    Ok(out)
}

fn iso_duration(text: &str) -> Option<f64> {
    let t = text.trim().strip_prefix('P')?;
    let (date, time) = t.split_once('T').unwrap_or((t, ""));
    let mut total = 0.0;
    for (part, units) in [
        (
            date,
            &[
                ('Y', 365.25 * 86400.0),
                ('M', 30.0 * 86400.0),
                ('W', 604800.0),
                ('D', 86400.0),
            ][..],
        ),
        (time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| *u == c)?.1;
                total += num.parse::<f64>().ok()? * factor;
                num.clear();
            }
        }
        if !num.is_empty() {
            return None;
        }
    }
    Some(total)
}

/// Parses one file and performs Backstage's substitutions.
fn parse_file(
    text: &str,
    file: &str,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<Value, ConfigError> {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    let json = serde_json::to_value(&yaml).map_err(|e| ConfigError::Yaml {
        file: file.to_string(),
        message: format!("unsupported value: {e}"),
    })?;
    let json = match json {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => json,
        _ => {
            return Err(ConfigError::Yaml {
                file: file.to_string(),
                message: "the top level must be a mapping".into(),
            })
        }
    };
    Ok(substitute(json, "", file, base, warnings)?.unwrap_or(Value::Object(Default::default())))
}

fn substitute(
    value: Value,
    path: &str,
    file: &str,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<Value>, ConfigError> {
    let err = |message: String| ConfigError::Key {
        file: file.to_string(),
        key: path.to_string(),
        message,
    };
    Ok(match value {
        Value::String(s) => match substitute_env(&s).map_err(err)? {
            Some(v) => Some(Value::String(v)),
            None => {
                warnings.push(format!(
                    "{file}: {path}: an environment variable it refers to is not set; the key is left out"
                ));
                None
            }
        },
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(var)) = map.get("$env") {
                    return Ok(match std::env::var(var) {
                        Ok(v) => Some(Value::String(v)),
                        Err(_) => {
                            warnings.push(format!(
                                "{file}: {path}: environment variable {var} is not set; the key is left out"
                            ));
                            None
                        }
                    });
                }
                if let Some(Value::String(rel)) = map.get("$file") {
                    let p = base.join(rel);
                    let content = std::fs::read_to_string(&p)
                        .map_err(|e| err(format!("$file {}: {e}", p.display())))?;
                    return Ok(Some(Value::String(content)));
                }
            }
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if k.starts_with('$') && matches!(k.as_str(), "$env" | "$file" | "$include") {
                    return Err(err(format!(
                        "\"{k}\" must be the only key of its mapping ($include is not supported)"
                    )));
                }
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(v) = substitute(v, &child, file, base, warnings)? {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.into_iter().enumerate() {
                if let Some(v) = substitute(v, &format!("{path}[{i}]"), file, base, warnings)? {
                    out.push(v);
                }
            }
            Some(Value::Array(out))
        }
        other => Some(other),
    })
}

/// `${VAR}` substitution; `$${` escapes a literal `${`. None when a variable is unset.
fn substitute_env(s: &str) -> Result<Option<String>, String> {
    if !s.contains("${") {
        return Ok(Some(s.to_string()));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in \"{s}\""))?;
        let name = after[..end].trim();
        if name.is_empty() {
            return Err(format!("empty ${{}} in \"{s}\""));
        }
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Ok(None),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Checks one file on its own so that an unknown key names its file.
fn check_file(value: &Value, file: &str, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let mut known = value.clone();
    if let Value::Object(map) = &mut known {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if IGNORED_SECTIONS.contains(&key.as_str()) {
                warnings.push(format!("{file}: {key}: not used by Stagedoor; ignored"));
                map.remove(&key);
            } else if RESERVED_SECTIONS.contains(&key.as_str()) {
                map.remove(&key);
            }
        }
    }
    let _: RawConfig = typed(&known, file)?;
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(value: &Value, file: &str) -> Result<T, ConfigError> {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.retain(|k, _| !IGNORED_SECTIONS.contains(&k.as_str()));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        ConfigError::Key {
            file: file.to_string(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: inner,
        }
    })
}

/// The value at a dotted key such as `backend.reading.allow[0].host`.
fn lookup<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let mut current = value;
    for segment in key.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// Backstage's merge: mappings merge key by key, everything else is replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("/etc/stagedoor"))
    }

    #[test]
    fn reads_backstage_keys() {
        let c = load(
            "backend:\n  baseUrl: http://portal.example\n  listen: {host: 0.0.0.0, port: 8080}\n  database:\n    client: pg\n    connection: {host: db, port: 5433, user: u, password: p, database: d}\ncatalog:\n  processingInterval: {minutes: 5}\n  orphanStrategy: delete\n  locations:\n    - {type: file, target: ./all.yaml}\n",
        )
        .expect("valid config");
        assert_eq!(c.port, 8080);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.processing_interval, Duration::from_secs(300));
        assert_eq!(c.orphan_strategy, OrphanStrategy::Delete);
        assert_eq!(c.locations[0].target, "/etc/stagedoor/./all.yaml");
        match &c.database {
            DatabaseConfig::Postgres { url } => {
                use secrecy::ExposeSecret;
                assert_eq!(url.expose_secret(), "postgres://u:p@db:5433/d");
            }
            other => panic!("expected postgres, got {other:?}"),
        }
    }

    const OIDC: &str = "auth:\n  session: {secret: 0123456789abcdef0123456789abcdef}\n  providers:\n    oidc:\n      production:\n        metadataUrl: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/openid-configuration\n        clientId: app\n        clientSecret: s3cret-client-secret\n";

    #[test]
    fn reads_auth_keys() {
        let c = load(&format!(
            "app: {{baseUrl: 'https://portal.example', title: Acme Portal}}\nbackend: {{baseUrl: 'https://portal.example'}}\n{OIDC}        signIn:\n          resolvers:\n            - resolver: emailLocalPartMatchingUserEntityName\n              allowedDomains: [acme.example]\nstagedoor:\n  admins: {{groups: [platform]}}\n  session: {{idleTimeout: {{hours: 1}}}}\n"
        ))
        .expect("valid config");
        let oidc = &c.auth.oidc["production"];
        assert_eq!(
            oidc.callback_url,
            "https://portal.example/api/auth/oidc/handler/frame"
        );
        assert_eq!(oidc.scope, "openid profile email");
        assert_eq!(
            oidc.resolvers,
            vec![SignInResolver::EmailLocalPartMatchingUserEntityName {
                allowed_domains: Some(vec!["acme.example".into()]),
                allow_without_user: false,
            }]
        );
        assert_eq!(c.auth.admin_groups, vec!["platform".to_string()]);
        assert_eq!(c.auth.session_idle, Duration::from_secs(3600));
        assert_eq!(c.app_title, "Acme Portal");
        assert!(
            c.auth_required(),
            "a sign-in provider makes the API require identities"
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret-client-secret"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }

    #[test]
    fn bad_auth_settings_are_named() {
        let cases = [
            (
                format!("{OIDC}        signIn: {{resolvers: [{{resolver: byMagic}}]}}\n"),
                "auth.providers.oidc.production.signIn.resolvers[0].resolver",
            ),
            (
                format!("{OIDC}        tokenEndpointAuthMethod: private_key_jwt\n"),
                "auth.providers.oidc.production.tokenEndpointAuthMethod",
            ),
            (
                "auth:\n  session: {secret: short}\n".to_string(),
                "auth.session.secret",
            ),
            (
                OIDC.replace(
                    "  session: {secret: 0123456789abcdef0123456789abcdef}\n",
                    "  environment: production\n",
                ),
                "auth.session.secret",
            ),
            (
                OIDC.replace("https://cognito-idp", "http://cognito-idp"),
                "auth.providers.oidc.production.metadataUrl",
            ),
            (
                "auth:\n  environment: production\n  providers:\n    guest: {}\n".to_string(),
                "auth.providers.guest",
            ),
        ];
        for (yaml, key) in cases {
            let err = load(&yaml).expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("backend:\n  lisen: {port: 1}\n").expect_err("typo must fail");
        let text = err.to_string();
        assert!(text.contains("backend"), "{text}");
        assert!(text.contains("lisen"), "{text}");
        assert!(text.contains("<inline>"), "{text}");
    }

    #[test]
    fn secrets_are_not_in_debug() {
        let c = load(
            "backend:\n  auth:\n    externalAccess:\n      - type: static\n        options: {token: supersecrettoken, subject: ci}\n  database: {client: pg, connection: 'postgres://u:hunter2@h/d'}\n",
        )
        .expect("valid config");
        let debug = format!("{c:?}");
        assert!(!debug.contains("supersecrettoken"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn env_substitution() {
        std::env::set_var("STAGEDOOR_TEST_PORT_X", "9191");
        let c = load("backend:\n  listen:\n    port: ${STAGEDOOR_TEST_PORT_X}\n")
            .expect("valid config");
        assert_eq!(c.port, 9191);
        assert_eq!(
            substitute_env("a$${B}c").expect("ok"),
            Some("a${B}c".into())
        );
        assert_eq!(
            substitute_env("${STAGEDOOR_SURELY_UNSET_VAR}").expect("ok"),
            None
        );
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration("PT1H30M"), Some(5400.0));
        assert_eq!(iso_duration("P1D"), Some(86400.0));
        assert_eq!(iso_duration("1h"), None);
    }

    const COGNITO: &str = "catalog:\n  providers:\n    github:\n      org: {organization: acme}\n    cognito:\n      people:\n        region: eu-west-1\n        userPoolId: eu-west-1_AbC123\n        endpoint: http://127.0.0.1:5000\n        schedule:\n          frequency: {minutes: 30}\n          timeout: PT3M\n          initialDelay: {seconds: 0}\n";

    #[test]
    fn cognito_providers_are_typed() {
        let c = load(COGNITO).expect("valid config");
        assert_eq!(
            c.cognito_providers,
            vec![CognitoProviderConfig {
                id: "people".into(),
                region: "eu-west-1".into(),
                user_pool_id: "eu-west-1_AbC123".into(),
                endpoint: Some("http://127.0.0.1:5000".into()),
                schedule: Schedule {
                    frequency: Duration::from_secs(1800),
                    timeout: Duration::from_secs(180),
                    initial_delay: Duration::ZERO,
                },
            }]
        );
    }

    #[test]
    fn cognito_mistakes_name_their_key() {
        for (from, to, key) in [
            (
                "region: eu-west-1",
                "regoin: eu-west-1",
                "catalog.providers.cognito.people.regoin",
            ),
            (
                "region: eu-west-1",
                "region: us-east-1",
                "catalog.providers.cognito.people.region",
            ),
            (
                "userPoolId: eu-west-1_AbC123",
                "userPoolId: people",
                "userPoolId",
            ),
            ("timeout: PT3M", "timeout: 3m", "schedule.timeout"),
            ("          timeout: PT3M\n", "", "schedule.timeout"),
            ("endpoint: http://", "endpoint: ftp://", "endpoint"),
        ] {
            let text = COGNITO.replace(from, to);
            let err = load(&text).expect_err(&text).to_string();
            assert!(err.contains(key), "{key}: {err}");
            assert!(err.contains("<inline>"), "{err}");
        }
    }

    #[test]
    fn cognito_keys_may_come_from_several_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("app-config.yaml");
        let prod = dir.path().join("app-config.production.yaml");
        std::fs::write(&base, COGNITO).expect("write");
        std::fs::write(
            &prod,
            "catalog:\n  providers:\n    cognito:\n      people:\n        userPoolId: eu-west-1_Prod42\n        schedul: {}\n",
        )
        .expect("write");
        let err = Config::load(&[base.clone(), prod.clone()])
            .expect_err("typo")
            .to_string();
        assert!(err.contains("app-config.production.yaml"), "{err}");
        assert!(err.contains("schedul"), "{err}");
        std::fs::write(
            &prod,
            "catalog:\n  providers:\n    cognito:\n      people:\n        userPoolId: eu-west-1_Prod42\n",
        )
        .expect("write");
        let c = Config::load(&[base, prod]).expect("valid config");
        assert_eq!(c.cognito_providers[0].user_pool_id, "eu-west-1_Prod42");
        assert_eq!(
            c.cognito_providers[0].schedule.timeout,
            Duration::from_secs(180)
        );
    }

    #[test]
    fn later_files_win() {
        let mut a = serde_json::json!({"backend": {"listen": {"port": 1, "host": "a"}}});
        merge(
            &mut a,
            serde_json::json!({"backend": {"listen": {"port": 2}}}),
        );
        assert_eq!(
            a,
            serde_json::json!({"backend": {"listen": {"port": 2, "host": "a"}}})
        );
    }
}
