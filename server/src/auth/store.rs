//! Sign-in's tables and the queries on them. No decisions live here: the
//! session and flow rules are in `session.rs`, this module knows how to store.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder};

pub mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "auth_sessions")]
    pub struct Model {
        /// HMAC of the cookie value: the cookie itself is never stored.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_type = "Text")]
        pub user_ref: String,
        pub provider: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub issuer: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub subject: Option<String>,
        /// JSON: ownership refs, provider groups, admin flag and profile.
        #[sea_orm(column_type = "Text")]
        pub identity: String,
        pub csrf: String,
        pub created_at: i64,
        pub last_seen_at: i64,
        pub expires_at: i64,
        /// The provider's refresh and ID tokens, sealed.
        #[sea_orm(column_type = "Text", nullable)]
        pub provider_tokens: Option<String>,
        pub provider_refresh_at: Option<i64>,
        #[sea_orm(column_type = "Text", nullable)]
        pub user_agent: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod flows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "auth_flows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub state_hash: String,
        pub browser_hash: String,
        pub provider: String,
        /// Nonce and PKCE verifier, sealed.
        #[sea_orm(column_type = "Text")]
        pub secrets: String,
        #[sea_orm(column_type = "Text")]
        pub return_to: String,
        pub popup: bool,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod signing_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "auth_signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        #[sea_orm(column_type = "Text")]
        pub public_key: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "auth_users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub issuer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        #[sea_orm(column_type = "Text")]
        pub user_ref: String,
        pub created_at: i64,
        pub last_sign_in_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub async fn insert_session(db: &impl ConnectionTrait, m: sessions::Model) -> Result<(), DbErr> {
    sessions::Entity::insert(sessions::ActiveModel::from(m))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn session(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<sessions::Model>, DbErr> {
    sessions::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn sessions_of(
    db: &impl ConnectionTrait,
    user_ref: &str,
    now: i64,
) -> Result<Vec<sessions::Model>, DbErr> {
    sessions::Entity::find()
        .filter(sessions::Column::UserRef.eq(user_ref))
        .filter(sessions::Column::ExpiresAt.gt(now))
        .order_by_desc(sessions::Column::LastSeenAt)
        .all(db)
        .await
}

pub async fn touch_session(db: &impl ConnectionTrait, id: &str, now: i64) -> Result<(), DbErr> {
    sessions::Entity::update_many()
        .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
        .filter(sessions::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn update_session_identity(
    db: &impl ConnectionTrait,
    id: &str,
    identity: &str,
    provider_tokens: Option<String>,
    provider_refresh_at: Option<i64>,
) -> Result<(), DbErr> {
    let mut q =
        sessions::Entity::update_many().col_expr(sessions::Column::Identity, Expr::value(identity));
    if let Some(tokens) = provider_tokens {
        q = q
            .col_expr(sessions::Column::ProviderTokens, Expr::value(tokens))
            .col_expr(
                sessions::Column::ProviderRefreshAt,
                Expr::value(provider_refresh_at),
            );
    }
    q.filter(sessions::Column::Id.eq(id)).exec(db).await?;
    Ok(())
}

pub async fn delete_session(db: &impl ConnectionTrait, id: &str) -> Result<u64, DbErr> {
    Ok(sessions::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await?
        .rows_affected)
}

pub async fn delete_sessions_of(db: &impl ConnectionTrait, user_ref: &str) -> Result<u64, DbErr> {
    Ok(sessions::Entity::delete_many()
        .filter(sessions::Column::UserRef.eq(user_ref))
        .exec(db)
        .await?
        .rows_affected)
}

/// Deletes ended sessions and abandoned sign-in flows.
pub async fn prune(
    db: &impl ConnectionTrait,
    now: i64,
    idle_before: i64,
    flows_before: i64,
) -> Result<(), DbErr> {
    sessions::Entity::delete_many()
        .filter(
            sessions::Column::ExpiresAt
                .lte(now)
                .or(sessions::Column::LastSeenAt.lt(idle_before)),
        )
        .exec(db)
        .await?;
    flows::Entity::delete_many()
        .filter(flows::Column::CreatedAt.lt(flows_before))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn insert_flow(db: &impl ConnectionTrait, m: flows::Model) -> Result<(), DbErr> {
    flows::Entity::insert(flows::ActiveModel::from(m))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Removes the flow and returns it; of two concurrent takers, only one gets it.
pub async fn take_flow(
    db: &impl ConnectionTrait,
    state_hash: &str,
) -> Result<Option<flows::Model>, DbErr> {
    let Some(flow) = flows::Entity::find_by_id(state_hash.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let deleted = flows::Entity::delete_by_id(state_hash.to_string())
        .exec(db)
        .await?
        .rows_affected;
    Ok((deleted == 1).then_some(flow))
}

pub async fn insert_signing_key(
    db: &impl ConnectionTrait,
    m: signing_keys::Model,
) -> Result<(), DbErr> {
    signing_keys::Entity::insert(signing_keys::ActiveModel::from(m))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn signing_keys(db: &impl ConnectionTrait) -> Result<Vec<signing_keys::Model>, DbErr> {
    signing_keys::Entity::find()
        .order_by_desc(signing_keys::Column::CreatedAt)
        .all(db)
        .await
}

pub async fn delete_signing_keys_before(
    db: &impl ConnectionTrait,
    before: i64,
) -> Result<(), DbErr> {
    signing_keys::Entity::delete_many()
        .filter(signing_keys::Column::CreatedAt.lt(before))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn user_binding(
    db: &impl ConnectionTrait,
    issuer: &str,
    subject: &str,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find_by_id((issuer.to_string(), subject.to_string()))
        .one(db)
        .await
}

/// Another account of the same issuer already bound to this user, if any.
pub async fn other_binding(
    db: &impl ConnectionTrait,
    issuer: &str,
    subject: &str,
    user_ref: &str,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Issuer.eq(issuer))
        .filter(users::Column::UserRef.eq(user_ref))
        .filter(users::Column::Subject.ne(subject))
        .one(db)
        .await
}

pub async fn bind_user(
    db: &impl ConnectionTrait,
    issuer: &str,
    subject: &str,
    user_ref: &str,
    now: i64,
) -> Result<(), DbErr> {
    users::Entity::insert(users::ActiveModel {
        issuer: Set(issuer.to_string()),
        subject: Set(subject.to_string()),
        user_ref: Set(user_ref.to_string()),
        created_at: Set(now),
        last_sign_in_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([users::Column::Issuer, users::Column::Subject])
            .update_columns([users::Column::UserRef, users::Column::LastSignInAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
