//! An AWS Cognito user pool as the catalog's directory of people.
//!
//! [`UserDirectory`] is what the catalog asks of a pool (users, groups, members
//! of a group); [`CognitoDirectory`] answers through the AWS SDK. The pool's
//! enabled users become User entities and its groups Group entities, with
//! `memberOf` and `members` both ways, through [`CognitoProvider`], an entity
//! provider: the catalog writes what it returns as the full set it owns, so a
//! user disabled or deleted in the pool leaves the catalog at the next sync.
//! Nothing here touches the database or the index.
//!
//! Entity names come from the username (from the email's local part when the
//! username is an opaque UUID, as in pools that sign in with email), normalised
//! to a valid entity name. Two users whose names normalise alike are told apart
//! by creation time: the older one keeps the name, the newer gets a suffix from
//! a hash of its `sub`, so names do not move when someone joins. Every User
//! carries its pool and `sub` in annotations, the stable key that sign-in uses.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_cognitoidentityprovider as cognito_idp;
use cognito_idp::config::{BehaviorVersion, Region, SharedCredentialsProvider, SharedHttpClient};
use cognito_idp::error::ProvideErrorMetadata;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::catalog::provider::{error_line, EntityProvider, Provided, ProviderError};
use crate::config::{CognitoProviderConfig, Schedule};

/// The location type of Cognito providers.
pub const LOCATION_TYPE: &str = "cognito";
/// The user pool an entity comes from: its id, such as `eu-west-1_AbC123xyz`.
pub const ANNOTATION_USER_POOL: &str = "stagedoor.io/cognito-user-pool";
/// A User's `sub`: its stable, unique id in the pool.
pub const ANNOTATION_SUB: &str = "stagedoor.io/cognito-sub";
/// A User's username in the pool.
pub const ANNOTATION_USERNAME: &str = "stagedoor.io/cognito-username";
/// A Group's name in the pool.
pub const ANNOTATION_GROUP: &str = "stagedoor.io/cognito-group";

/// Items per page; the most Cognito's list operations return.
const PAGE_SIZE: i32 = 60;
/// Groups whose members are listed at the same time.
const MEMBER_QUERIES: usize = 4;
/// Hex digits of the hash that tells apart names that normalise alike.
const SUFFIX_LEN: usize = 8;

/// The issuer of the pool's tokens: with a `sub`, what identifies a user.
pub fn issuer(region: &str, user_pool_id: &str) -> String {
    format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}")
}

/// A user of the pool, with the attributes the catalog uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryUser {
    pub username: String,
    pub sub: Option<String>,
    pub enabled: bool,
    /// Milliseconds since the epoch.
    pub created_at: Option<i64>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
}

/// A group of the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryGroup {
    pub name: String,
    pub description: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{operation} on user pool {pool} failed: {message}")]
    Request {
        operation: &'static str,
        pool: String,
        message: String,
    },
}

/// What the catalog asks of a user directory. Each list is complete: every
/// page has been read.
#[async_trait::async_trait]
pub trait UserDirectory: Send + Sync {
    async fn list_users(&self) -> Result<Vec<DirectoryUser>, DirectoryError>;
    async fn list_groups(&self) -> Result<Vec<DirectoryGroup>, DirectoryError>;
    /// The usernames of a group's members.
    async fn list_users_in_group(&self, group: &str) -> Result<Vec<String>, DirectoryError>;
}

/// A Cognito user pool, read through the AWS SDK.
pub struct CognitoDirectory {
    client: cognito_idp::Client,
    user_pool_id: String,
}

impl CognitoDirectory {
    /// A client for the pool. Credentials are `credentials` when given, else
    /// AWS's standard chain: environment, profile, web identity (as IRSA sets it
    /// up on EKS), ECS and EC2 instance roles. `endpoint` replaces Cognito's
    /// endpoint only, so that the chain's own calls (STS) still reach AWS.
    pub async fn connect(
        config: &CognitoProviderConfig,
        credentials: Option<SharedCredentialsProvider>,
        http: SharedHttpClient,
    ) -> CognitoDirectory {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http);
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        let shared = loader.load().await;
        let mut builder = cognito_idp::config::Builder::from(&shared);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        CognitoDirectory {
            client: cognito_idp::Client::from_conf(builder.build()),
            user_pool_id: config.user_pool_id.clone(),
        }
    }

    fn error<E>(&self, operation: &'static str, e: &E) -> DirectoryError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        // A service error is its code and message; anything else (no connection,
        // no credentials) the chain of causes.
        let message = match e.code() {
            Some(code) => format!("{code}: {}", e.message().unwrap_or("no message")),
            None => error_line(e),
        };
        DirectoryError::Request {
            operation,
            pool: self.user_pool_id.clone(),
            message,
        }
    }
}

#[async_trait::async_trait]
impl UserDirectory for CognitoDirectory {
    async fn list_users(&self) -> Result<Vec<DirectoryUser>, DirectoryError> {
        let users: Vec<_> = self
            .client
            .list_users()
            .user_pool_id(&self.user_pool_id)
            .into_paginator()
            .page_size(PAGE_SIZE)
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error("ListUsers", &e))?;
        Ok(users.iter().map(directory_user).collect())
    }

    async fn list_groups(&self) -> Result<Vec<DirectoryGroup>, DirectoryError> {
        let groups: Vec<_> = self
            .client
            .list_groups()
            .user_pool_id(&self.user_pool_id)
            .into_paginator()
            .page_size(PAGE_SIZE)
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error("ListGroups", &e))?;
        Ok(groups
            .into_iter()
            .filter_map(|g| {
                Some(DirectoryGroup {
                    name: g.group_name?,
                    description: g.description,
                    created_at: g.creation_date.and_then(|d| d.to_millis().ok()),
                })
            })
            .collect())
    }

    async fn list_users_in_group(&self, group: &str) -> Result<Vec<String>, DirectoryError> {
        let users: Vec<_> = self
            .client
            .list_users_in_group()
            .user_pool_id(&self.user_pool_id)
            .group_name(group)
            .into_paginator()
            .page_size(PAGE_SIZE)
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error("ListUsersInGroup", &e))?;
        Ok(users.into_iter().filter_map(|u| u.username).collect())
    }
}

fn directory_user(u: &cognito_idp::types::UserType) -> DirectoryUser {
    let attribute = |name: &str| {
        u.attributes()
            .iter()
            .find(|a| a.name() == name)
            .and_then(|a| a.value())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    DirectoryUser {
        username: u.username().unwrap_or_default().to_string(),
        sub: attribute("sub"),
        enabled: u.enabled(),
        created_at: u.user_create_date().and_then(|d| d.to_millis().ok()),
        email: attribute("email"),
        name: attribute("name"),
        given_name: attribute("given_name"),
        family_name: attribute("family_name"),
        picture: attribute("picture"),
    }
}

/// A user pool as an entity provider of `catalog.providers.cognito.<id>`.
pub struct CognitoProvider {
    id: String,
    user_pool_id: String,
    schedule: Schedule,
    directory: Arc<dyn UserDirectory>,
}

impl CognitoProvider {
    pub fn new(config: &CognitoProviderConfig, directory: Arc<dyn UserDirectory>) -> Self {
        CognitoProvider {
            id: config.id.clone(),
            user_pool_id: config.user_pool_id.clone(),
            schedule: config.schedule,
            directory,
        }
    }
}

impl From<DirectoryError> for ProviderError {
    fn from(e: DirectoryError) -> Self {
        ProviderError::Source(Box::new(e))
    }
}

#[async_trait::async_trait]
impl EntityProvider for CognitoProvider {
    fn kind(&self) -> &str {
        LOCATION_TYPE
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    async fn read(&self) -> Result<Provided, ProviderError> {
        let users = self.directory.list_users().await?;
        let groups = self.directory.list_groups().await?;
        let names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
        let members: Vec<Vec<String>> = futures_util::stream::iter(names)
            .map(|name| {
                let directory = self.directory.clone();
                async move { directory.list_users_in_group(&name).await }
            })
            .buffered(MEMBER_QUERIES)
            .try_collect()
            .await?;
        let groups: Vec<(DirectoryGroup, Vec<String>)> = groups.into_iter().zip(members).collect();
        Ok(org_entities(&self.user_pool_id, &users, &groups))
    }
}

// ---------------------------------------------------------------- entities

/// The User and Group entities of a pool: enabled users only, each group with
/// its enabled members, in name order so that an unchanged pool gives
/// unchanged entities.
pub fn org_entities(
    user_pool_id: &str,
    users: &[DirectoryUser],
    groups: &[(DirectoryGroup, Vec<String>)],
) -> Provided {
    let mut warnings = Vec::new();
    let mut enabled: Vec<(&DirectoryUser, &str)> = Vec::with_capacity(users.len());
    for u in users.iter().filter(|u| u.enabled) {
        match u.sub.as_deref() {
            Some(sub) if !u.username.is_empty() => enabled.push((u, sub)),
            _ => warnings.push(format!(
                "user \"{}\" has no username or no sub attribute and is left out",
                u.username
            )),
        }
    }
    let user_names = assign_names(
        enabled
            .iter()
            .map(|(u, sub)| Candidate {
                base: entity_name(user_name_source(u))
                    .unwrap_or_else(|| format!("user-{}", short_hash(sub))),
                created_at: u.created_at,
                key: sub,
            })
            .collect(),
    );
    let group_names = assign_names(
        groups
            .iter()
            .map(|(g, _)| Candidate {
                base: entity_name(&g.name)
                    .unwrap_or_else(|| format!("group-{}", short_hash(&g.name))),
                created_at: g.created_at,
                key: &g.name,
            })
            .collect(),
    );

    let by_username: HashMap<&str, usize> = enabled
        .iter()
        .enumerate()
        .map(|(i, (u, _))| (u.username.as_str(), i))
        .collect();
    let mut member_of: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); enabled.len()];
    let mut entities = Vec::with_capacity(enabled.len() + groups.len());
    for (gi, (g, members)) in groups.iter().enumerate() {
        let group_name = group_names[gi].as_str();
        let members: BTreeSet<&str> = members
            .iter()
            .filter_map(|m| by_username.get(m.as_str()))
            .map(|&ui| {
                member_of[ui].insert(group_name);
                user_names[ui].as_str()
            })
            .collect();
        entities.push((
            group_name,
            group_entity(user_pool_id, group_name, g, members),
        ));
    }
    for (ui, (u, sub)) in enabled.iter().enumerate() {
        let name = user_names[ui].as_str();
        entities.push((
            name,
            user_entity(user_pool_id, name, u, sub, &member_of[ui]),
        ));
    }
    // Groups before users, each in name order.
    entities
        .sort_by(|(a, ea), (b, eb)| (ea["kind"] != "Group", a).cmp(&(eb["kind"] != "Group", b)));
    Provided {
        entities: entities.into_iter().map(|(_, e)| e).collect(),
        warnings,
    }
}

fn user_entity(
    user_pool_id: &str,
    name: &str,
    u: &DirectoryUser,
    sub: &str,
    member_of: &BTreeSet<&str>,
) -> Value {
    let mut profile = Map::new();
    profile.insert("displayName".into(), json!(display_name(u)));
    if let Some(email) = &u.email {
        profile.insert("email".into(), json!(email));
    }
    if let Some(picture) = &u.picture {
        profile.insert("picture".into(), json!(picture));
    }
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "User",
        "metadata": {
            "name": name,
            "annotations": {
                ANNOTATION_USER_POOL: user_pool_id,
                ANNOTATION_SUB: sub,
                ANNOTATION_USERNAME: u.username,
            },
        },
        "spec": {
            "profile": profile,
            "memberOf": member_of,
        },
    })
}

fn group_entity(
    user_pool_id: &str,
    name: &str,
    g: &DirectoryGroup,
    members: BTreeSet<&str>,
) -> Value {
    let mut metadata = json!({
        "name": name,
        "annotations": {
            ANNOTATION_USER_POOL: user_pool_id,
            ANNOTATION_GROUP: g.name,
        },
    });
    if let Some(d) = g
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        metadata["description"] = json!(d);
    }
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": metadata,
        "spec": {
            "type": "team",
            "profile": {"displayName": g.name},
            "children": [],
            "members": members,
        },
    })
}

/// `name`, else given and family name, else the email for an opaque username,
/// else the username.
fn display_name(u: &DirectoryUser) -> String {
    if let Some(name) = &u.name {
        return name.clone();
    }
    let full: Vec<&str> = [&u.given_name, &u.family_name]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect();
    if !full.is_empty() {
        return full.join(" ");
    }
    match &u.email {
        Some(email) if is_uuid(&u.username) => email.clone(),
        _ => u.username.clone(),
    }
}

/// What a user's entity name is made from: the username, or the email's local
/// part when the username is an opaque UUID.
fn user_name_source(u: &DirectoryUser) -> &str {
    if is_uuid(&u.username) {
        if let Some(local) = u
            .email
            .as_deref()
            .and_then(|e| e.split('@').next())
            .filter(|l| !l.is_empty())
        {
            return local;
        }
    }
    &u.username
}

/// The 8-4-4-4-12 hex form of a UUID.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Longest entity name.
const MAX_NAME: usize = 63;

fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.')
}

/// `raw` as a valid entity name: lowercase ASCII letters and digits, each run of
/// other characters one separator (kept if it is `-`, `_` or `.`, `-` for
/// white space, `_` for anything else), none at either end, at most 63
/// characters. None when `raw` has no ASCII letter or digit.
pub fn entity_name(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len().min(MAX_NAME));
    let mut pending: Option<char> = None;
    for c in raw.chars() {
        if out.len() >= MAX_NAME {
            break;
        }
        if c.is_ascii_alphanumeric() {
            if let Some(sep) = pending.take() {
                if !out.is_empty() {
                    out.push(sep);
                }
            }
            out.push(c.to_ascii_lowercase());
        } else if pending.is_none() {
            pending = Some(match c {
                c if is_separator(c) => c,
                c if c.is_whitespace() => '-',
                _ => '_',
            });
        }
    }
    out.truncate(MAX_NAME);
    let trimmed = out.trim_end_matches(is_separator);
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// The first hex digits of the SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..SUFFIX_LEN].to_string()
}

/// An item to name: the name it would like, its age, and the stable key whose
/// hash tells it apart when the name is taken.
struct Candidate<'a> {
    base: String,
    created_at: Option<i64>,
    key: &'a str,
}

/// One distinct name per candidate, in the candidates' order. The oldest
/// candidate (then the smallest key) gets its name as it is; a later one whose
/// name is taken gets a hash of its key appended.
fn assign_names(candidates: Vec<Candidate<'_>>) -> Vec<String> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| {
        let c = &candidates[i];
        (c.created_at.unwrap_or(i64::MAX), c.key)
    });
    let mut taken: HashSet<String> = HashSet::with_capacity(candidates.len());
    let mut names = vec![String::new(); candidates.len()];
    for i in order {
        let c = &candidates[i];
        let mut name = c.base.clone();
        let mut attempt = 0usize;
        while taken.contains(&name) {
            let suffix = match attempt {
                0 => short_hash(c.key),
                n => format!("{}{n}", short_hash(c.key)),
            };
            name = with_suffix(&c.base, &suffix);
            attempt += 1;
        }
        taken.insert(name.clone());
        names[i] = name;
    }
    names
}

/// `base-suffix`, shortening `base` so that the result is a valid name.
fn with_suffix(base: &str, suffix: &str) -> String {
    let room = MAX_NAME.saturating_sub(suffix.len() + 1);
    let head = base[..base.len().min(room)].trim_end_matches(is_separator);
    if head.is_empty() {
        suffix.to_string()
    } else {
        format!("{head}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::is_valid_name;
    use proptest::prelude::*;

    fn user(username: &str, sub: &str, created_at: i64) -> DirectoryUser {
        DirectoryUser {
            username: username.into(),
            sub: Some(sub.into()),
            enabled: true,
            created_at: Some(created_at),
            ..Default::default()
        }
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(entity_name("Alice").as_deref(), Some("alice"));
        assert_eq!(
            entity_name("alice+test@example.com").as_deref(),
            Some("alice_test_example.com")
        );
        assert_eq!(
            entity_name("  Platform Team ").as_deref(),
            Some("platform-team")
        );
        assert_eq!(entity_name("--a..b__").as_deref(), Some("a.b"));
        assert_eq!(entity_name("José Núñez").as_deref(), Some("jos_n_ez"));
        assert_eq!(entity_name("日本"), None);
        assert_eq!(entity_name(""), None);
        let long = format!("{}-{}", "a".repeat(62), "b");
        assert_eq!(entity_name(&long).as_deref(), Some("a".repeat(62).as_str()));
    }

    #[test]
    fn uuid_usernames_take_the_email_local_part() {
        let mut u = user("0b904120-d6fb-431f-b1e5-21e9e722f8eb", "s", 1);
        assert_eq!(user_name_source(&u), u.username);
        u.email = Some("Dave.Jones@example.com".into());
        assert_eq!(user_name_source(&u), "Dave.Jones");
        assert_eq!(display_name(&u), "Dave.Jones@example.com");
        u.given_name = Some("Dave".into());
        u.family_name = Some("Jones".into());
        assert_eq!(display_name(&u), "Dave Jones");
        u.name = Some("David Jones".into());
        assert_eq!(display_name(&u), "David Jones");
        let named = user("dave@example.com", "t", 1);
        assert_eq!(user_name_source(&named), "dave@example.com");
        assert_eq!(display_name(&named), "dave@example.com");
    }

    #[test]
    fn the_older_user_keeps_a_shared_name() {
        let users = [
            user("Alice", "sub-new", 20),
            user("alice", "sub-old", 10),
            user("bob", "sub-bob", 5),
        ];
        let provided = org_entities("us-east-1_x", &users, &[]);
        let names: Vec<&str> = provided
            .entities
            .iter()
            .map(|e| e["metadata"]["name"].as_str().expect("name"))
            .collect();
        let suffixed = format!("alice-{}", short_hash("sub-new"));
        assert_eq!(names, ["alice", suffixed.as_str(), "bob"]);
        let old = &provided.entities[0];
        assert_eq!(old["metadata"]["annotations"][ANNOTATION_SUB], "sub-old");
    }

    #[test]
    fn groups_and_members_both_ways() {
        let mut off = user("carol", "sub-carol", 3);
        off.enabled = false;
        let users = [user("alice", "sub-a", 1), user("bob", "sub-b", 2), off];
        let groups = [(
            DirectoryGroup {
                name: "Platform Team".into(),
                description: Some("Runs the platform".into()),
                created_at: Some(1),
            },
            vec!["bob".into(), "alice".into(), "carol".into(), "ghost".into()],
        )];
        let provided = org_entities("us-east-1_x", &users, &groups);
        assert!(provided.warnings.is_empty());
        let group = &provided.entities[0];
        assert_eq!(group["kind"], "Group");
        assert_eq!(group["metadata"]["name"], "platform-team");
        assert_eq!(group["metadata"]["description"], "Runs the platform");
        assert_eq!(group["spec"]["type"], "team");
        assert_eq!(group["spec"]["profile"]["displayName"], "Platform Team");
        assert_eq!(group["spec"]["members"], json!(["alice", "bob"]));
        assert_eq!(group["spec"]["children"], json!([]));
        let alice = &provided.entities[1];
        assert_eq!(alice["spec"]["memberOf"], json!(["platform-team"]));
        assert_eq!(provided.entities.len(), 3, "carol is disabled");
    }

    #[test]
    fn a_user_without_sub_is_reported() {
        let mut u = user("alice", "s", 1);
        u.sub = None;
        let provided = org_entities("us-east-1_x", &[u], &[]);
        assert!(provided.entities.is_empty());
        assert_eq!(provided.warnings.len(), 1);
    }

    proptest! {
        #[test]
        fn derived_names_are_valid_and_stable(raw in "\\PC{0,100}") {
            if let Some(name) = entity_name(&raw) {
                prop_assert!(is_valid_name(&name), "{name:?} from {raw:?}");
                prop_assert_eq!(entity_name(&raw), Some(name.clone()));
                // A name is its own normal form.
                prop_assert_eq!(entity_name(&name), Some(name));
            }
        }

        #[test]
        fn assigned_names_are_valid_distinct_and_stable(
            raws in proptest::collection::vec(("[a-zA-Z0-9 @._+-]{0,70}", 0i64..5), 1..12)
        ) {
            let users: Vec<DirectoryUser> = raws
                .iter()
                .enumerate()
                .map(|(i, (name, created))| user(name, &format!("sub-{i}"), *created))
                .filter(|u| !u.username.is_empty())
                .collect();
            let first = org_entities("us-east-1_x", &users, &[]);
            let names: Vec<String> = first
                .entities
                .iter()
                .map(|e| e["metadata"]["name"].as_str().expect("name").to_string())
                .collect();
            for n in &names {
                prop_assert!(is_valid_name(n), "{n:?}");
            }
            let distinct: HashSet<&String> = names.iter().collect();
            prop_assert_eq!(distinct.len(), names.len());
            // The same pool, listed in another order, gives the same entities.
            let mut reversed = users.clone();
            reversed.reverse();
            let again = org_entities("us-east-1_x", &reversed, &[]);
            prop_assert_eq!(first.entities, again.entities);
        }
    }
}
