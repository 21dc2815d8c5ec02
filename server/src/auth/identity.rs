//! Who a signed-in person is in the catalog: Backstage's sign-in resolvers,
//! the binding of a provider account (`iss` + `sub`) to one User entity, the
//! ownership refs (the user and its groups, transitively through parents) and
//! the admin role. Nothing here speaks HTTP.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::oidc::SignedIn;
use super::AuthError;
use crate::catalog::filter::{Condition, EntityFilter};
use crate::catalog::model::EntityRef;
use crate::catalog::service::{CatalogService, ListParams};
use crate::config::SignInResolver;

/// Groups deeper than this are not followed: a parent cycle cannot loop.
const MAX_GROUP_DEPTH: usize = 32;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
}

/// What a session knows about its user; stored with the session as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub user_ref: String,
    pub ownership: Vec<String>,
    /// Groups the provider asserted (`cognito:groups`), which count for the admin role.
    #[serde(default)]
    pub provider_groups: Vec<String>,
    pub admin: bool,
    pub profile: Profile,
}

impl Identity {
    /// Builds the identity from the catalog as it is now.
    pub fn build(
        catalog: &CatalogService,
        admin_groups: &[String],
        user_ref: String,
        extra_ownership: &[String],
        provider_groups: Vec<String>,
        mut profile: Profile,
    ) -> Identity {
        let user = EntityRef::parse(&user_ref, Some("User"), "default")
            .ok()
            .and_then(|r| entity(catalog, &r));
        if let Some(user) = &user {
            let spec_profile = &user["spec"]["profile"];
            if profile.display_name.is_none() {
                profile.display_name = spec_profile["displayName"].as_str().map(str::to_string);
            }
            if profile.email.is_none() {
                profile.email = spec_profile["email"].as_str().map(str::to_string);
            }
            if profile.picture.is_none() {
                profile.picture = spec_profile["picture"].as_str().map(str::to_string);
            }
        }
        let mut ownership = ownership_refs(catalog, &user_ref, user.as_ref());
        for r in extra_ownership {
            if !ownership.contains(r) {
                ownership.push(r.clone());
            }
        }
        let admin = is_admin(admin_groups, &provider_groups, &ownership);
        Identity {
            user_ref,
            ownership,
            provider_groups,
            admin,
            profile,
        }
    }
}

/// The user and every group it belongs to, directly or through parent groups.
fn ownership_refs(catalog: &CatalogService, user_ref: &str, user: Option<&Value>) -> Vec<String> {
    let mut out = vec![user_ref.to_string()];
    let Some(user) = user else {
        return out;
    };
    let mut seen = BTreeSet::new();
    let mut frontier: Vec<String> = targets(user, "memberOf");
    for _ in 0..MAX_GROUP_DEPTH {
        let mut next = Vec::new();
        for g in frontier {
            if !seen.insert(g.clone()) {
                continue;
            }
            out.push(g.clone());
            if let Some(group) = EntityRef::parse(&g, Some("Group"), "default")
                .ok()
                .and_then(|r| entity(catalog, &r))
            {
                next.extend(targets(&group, "childOf"));
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    out
}

/// An admin is in a group listed in `stagedoor.admins.groups`: a provider
/// group by name, or a catalog group by name (default namespace) or by ref.
pub fn is_admin(admin_groups: &[String], provider_groups: &[String], ownership: &[String]) -> bool {
    admin_groups.iter().any(|admin| {
        if admin.contains(':') {
            let admin = admin.to_lowercase();
            ownership.iter().any(|o| o.to_lowercase() == admin)
        } else {
            provider_groups.iter().any(|g| g == admin)
                || ownership
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(&format!("group:default/{admin}")))
        }
    })
}

fn targets(entity: &Value, relation: &str) -> Vec<String> {
    entity["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"].as_str() == Some(relation))
        .filter_map(|r| r["targetRef"].as_str().map(str::to_string))
        .collect()
}

fn entity(catalog: &CatalogService, r: &EntityRef) -> Option<Value> {
    let bytes = catalog.by_ref(r)?;
    serde_json::from_slice(&bytes).ok()
}

/// The user a sign-in resolves to, by the configured resolvers in order.
/// `Ok(None)` means no resolver matched; the caller refuses the sign-in.
pub fn resolve(
    catalog: &CatalogService,
    resolvers: &[SignInResolver],
    who: &SignedIn,
) -> Result<Option<(String, bool)>, AuthError> {
    let verified_email = who.email.as_deref().filter(|_| who.email_verified);
    for resolver in resolvers {
        match resolver {
            SignInResolver::EmailMatchingUserEntityProfileEmail { allow_without_user } => {
                let Some(email) = verified_email else {
                    continue;
                };
                let found = users_with_email(catalog, email)?;
                match found.as_slice() {
                    [one] => return Ok(Some((one.clone(), true))),
                    [] if *allow_without_user => {
                        return Ok(Some((fallback_ref(local_part(email)), false)))
                    }
                    [] => {}
                    _ => {
                        return Err(AuthError::NotAllowed(format!(
                            "more than one user in the catalog has the email {email}"
                        )))
                    }
                }
            }
            SignInResolver::EmailLocalPartMatchingUserEntityName {
                allowed_domains,
                allow_without_user,
            } => {
                let Some(email) = verified_email else {
                    continue;
                };
                let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
                if let Some(domains) = allowed_domains {
                    if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                        continue;
                    }
                }
                let r = EntityRef {
                    kind: "User".into(),
                    namespace: "default".into(),
                    name: local.to_string(),
                };
                if catalog.by_ref(&r).is_some() {
                    return Ok(Some((r.to_string(), true)));
                }
                if *allow_without_user {
                    return Ok(Some((fallback_ref(local), false)));
                }
            }
        }
    }
    Ok(None)
}

/// The User entity that a Cognito sync created for this account: its pool and
/// `sub` annotations name the token's issuer and subject. Found by subject, it
/// is the strongest match there is, so it comes before any email resolver.
pub fn user_by_cognito_subject(
    catalog: &CatalogService,
    issuer: &str,
    subject: &str,
) -> Result<Option<String>, AuthError> {
    let Some(pool) = cognito_pool(issuer) else {
        return Ok(None);
    };
    let filter = EntityFilter {
        any_of: vec![vec![
            Condition {
                key: "kind".into(),
                values: Some(vec!["user".into()]),
            },
            Condition {
                key: "metadata.annotations.stagedoor.io/cognito-sub".into(),
                values: Some(vec![subject.to_lowercase()]),
            },
            Condition {
                key: "metadata.annotations.stagedoor.io/cognito-user-pool".into(),
                values: Some(vec![pool.to_lowercase()]),
            },
        ]],
    };
    let found = refs_matching(catalog, filter)?;
    match found.as_slice() {
        [one] => Ok(Some(one.clone())),
        [] => Ok(None),
        _ => Err(AuthError::NotAllowed(format!(
            "more than one user in the catalog has the Cognito subject {subject}"
        ))),
    }
}

/// `https://cognito-idp.<region>.amazonaws.com/<pool>` → `<pool>`.
fn cognito_pool(issuer: &str) -> Option<String> {
    let url = url::Url::parse(issuer).ok()?;
    let host = url.host_str()?;
    if !(host.starts_with("cognito-idp.") && host.ends_with(".amazonaws.com")) {
        return None;
    }
    let pool = url.path().trim_matches('/');
    (!pool.is_empty() && !pool.contains('/')).then(|| pool.to_string())
}

/// Whether the catalog has this user.
pub fn user_exists(catalog: &CatalogService, user_ref: &str) -> bool {
    EntityRef::parse(user_ref, Some("User"), "default")
        .ok()
        .is_some_and(|r| catalog.by_ref(&r).is_some())
}

fn users_with_email(catalog: &CatalogService, email: &str) -> Result<Vec<String>, AuthError> {
    refs_matching(
        catalog,
        EntityFilter {
            any_of: vec![vec![
                Condition {
                    key: "kind".into(),
                    values: Some(vec!["user".into()]),
                },
                Condition {
                    key: "spec.profile.email".into(),
                    values: Some(vec![email.to_lowercase()]),
                },
            ]],
        },
    )
}

/// The refs of up to two entities matching a filter (two tell "one" from "many").
fn refs_matching(catalog: &CatalogService, filter: EntityFilter) -> Result<Vec<String>, AuthError> {
    let page = catalog
        .list(&ListParams {
            filter,
            fields: Some(vec![
                "kind".into(),
                "metadata.namespace".into(),
                "metadata.name".into(),
            ]),
            limit: Some(2),
            offset: None,
            order: vec![],
        })
        .map_err(|e| AuthError::Internal(anyhow::anyhow!("user lookup: {e}")))?;
    let users: Vec<Value> = serde_json::from_slice(&page.body)
        .map_err(|e| AuthError::Internal(anyhow::anyhow!("user lookup: {e}")))?;
    Ok(users
        .iter()
        .filter_map(|u| EntityRef::of_entity(u).ok())
        .map(|r| r.to_string())
        .collect())
}

fn local_part(email: &str) -> &str {
    email.rsplit_once('@').map_or(email, |(l, _)| l)
}

/// A user ref for someone not in the catalog: the name made valid.
fn fallback_ref(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean = clean
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    clean.truncate(63);
    if clean.is_empty() {
        clean = "unknown".into();
    }
    format!("user:default/{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_match_provider_groups_and_catalog_groups() {
        let ownership = vec![
            "user:default/ana".to_string(),
            "group:default/platform-team".to_string(),
        ];
        assert!(is_admin(&["platform-team".into()], &[], &ownership));
        assert!(is_admin(
            &["group:default/Platform-Team".into()],
            &[],
            &ownership
        ));
        assert!(is_admin(&["admins".into()], &["admins".into()], &ownership));
        assert!(!is_admin(
            &["admins".into()],
            &["Admins".into()],
            &ownership
        ));
        assert!(!is_admin(
            &["group:other/platform-team".into()],
            &[],
            &ownership
        ));
        assert!(!is_admin(&[], &["admins".into()], &ownership));
    }

    #[test]
    fn cognito_pools_come_from_cognito_issuers_only() {
        assert_eq!(
            cognito_pool("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"),
            Some("eu-west-1_AbC123".into())
        );
        assert_eq!(
            cognito_pool("https://login.example.com/eu-west-1_AbC123"),
            None
        );
        assert_eq!(
            cognito_pool("https://cognito-idp.eu-west-1.amazonaws.com/"),
            None
        );
    }

    #[test]
    fn fallback_names_are_valid() {
        assert_eq!(fallback_ref("jane.doe+dev"), "user:default/jane.doe-dev");
        assert_eq!(fallback_ref("++"), "user:default/unknown");
        assert_eq!(
            fallback_ref(&"a".repeat(80)).len(),
            "user:default/".len() + 63
        );
    }
}
