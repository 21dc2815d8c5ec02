//! Sign-in's tables: sessions, sign-in flows in progress, the keys that sign
//! Backstage identity tokens, and the binding of provider accounts to users.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_auth"
    }
}

#[derive(DeriveIden)]
enum AuthSessions {
    Table,
    Id,
    UserRef,
    Provider,
    Issuer,
    Subject,
    Identity,
    Csrf,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    ProviderTokens,
    ProviderRefreshAt,
    UserAgent,
}

#[derive(DeriveIden)]
enum AuthFlows {
    Table,
    StateHash,
    BrowserHash,
    Provider,
    Secrets,
    ReturnTo,
    Popup,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuthSigningKeys {
    Table,
    Kid,
    PublicKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuthUsers {
    Table,
    Issuer,
    Subject,
    UserRef,
    CreatedAt,
    LastSignInAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthSessions::Table)
                    .col(
                        ColumnDef::new(AuthSessions::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuthSessions::UserRef).text().not_null())
                    .col(ColumnDef::new(AuthSessions::Provider).string().not_null())
                    .col(ColumnDef::new(AuthSessions::Issuer).text())
                    .col(ColumnDef::new(AuthSessions::Subject).text())
                    .col(ColumnDef::new(AuthSessions::Identity).text().not_null())
                    .col(ColumnDef::new(AuthSessions::Csrf).string().not_null())
                    .col(
                        ColumnDef::new(AuthSessions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthSessions::LastSeenAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthSessions::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuthSessions::ProviderTokens).text())
                    .col(ColumnDef::new(AuthSessions::ProviderRefreshAt).big_integer())
                    .col(ColumnDef::new(AuthSessions::UserAgent).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("auth_sessions_user_ref")
                    .table(AuthSessions::Table)
                    .col(AuthSessions::UserRef)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("auth_sessions_expires_at")
                    .table(AuthSessions::Table)
                    .col(AuthSessions::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthFlows::Table)
                    .col(
                        ColumnDef::new(AuthFlows::StateHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuthFlows::BrowserHash).string().not_null())
                    .col(ColumnDef::new(AuthFlows::Provider).string().not_null())
                    .col(ColumnDef::new(AuthFlows::Secrets).text().not_null())
                    .col(ColumnDef::new(AuthFlows::ReturnTo).text().not_null())
                    .col(ColumnDef::new(AuthFlows::Popup).boolean().not_null())
                    .col(
                        ColumnDef::new(AuthFlows::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthSigningKeys::Table)
                    .col(
                        ColumnDef::new(AuthSigningKeys::Kid)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuthSigningKeys::PublicKey).text().not_null())
                    .col(
                        ColumnDef::new(AuthSigningKeys::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthUsers::Table)
                    .col(ColumnDef::new(AuthUsers::Issuer).string().not_null())
                    .col(ColumnDef::new(AuthUsers::Subject).string().not_null())
                    .col(ColumnDef::new(AuthUsers::UserRef).text().not_null())
                    .col(
                        ColumnDef::new(AuthUsers::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthUsers::LastSignInAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(AuthUsers::Issuer)
                            .col(AuthUsers::Subject),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("auth_users_user_ref")
                    .table(AuthUsers::Table)
                    .col(AuthUsers::UserRef)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuthUsers::Table.into_iden(),
            AuthSigningKeys::Table.into_iden(),
            AuthFlows::Table.into_iden(),
            AuthSessions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
