//! The catalog's tables: locations, entities, their relations and the change feed.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_catalog"
    }
}

#[derive(DeriveIden)]
enum Locations {
    Table,
    Id,
    Type,
    Target,
    Source,
    CreatedAt,
    NextRefreshAt,
    LastRefreshedAt,
    Errors,
}

#[derive(DeriveIden)]
enum Entities {
    Table,
    Id,
    Uid,
    EntityRef,
    Kind,
    LocationId,
    Hash,
    Processed,
    FinalEntity,
    Etag,
    Errors,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Relations {
    Table,
    OriginatingEntityId,
    SourceRef,
    Type,
    TargetRef,
}

#[derive(DeriveIden)]
enum CatalogChanges {
    Table,
    Seq,
    EntityId,
    CreatedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Locations::Table)
                    .col(
                        ColumnDef::new(Locations::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Locations::Type).string().not_null())
                    .col(ColumnDef::new(Locations::Target).text().not_null())
                    .col(ColumnDef::new(Locations::Source).string().not_null())
                    .col(
                        ColumnDef::new(Locations::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Locations::NextRefreshAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Locations::LastRefreshedAt).big_integer())
                    .col(ColumnDef::new(Locations::Errors).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("locations_type_target")
                    .table(Locations::Table)
                    .col(Locations::Type)
                    .col(Locations::Target)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("locations_next_refresh_at")
                    .table(Locations::Table)
                    .col(Locations::NextRefreshAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Entities::Table)
                    .col(
                        ColumnDef::new(Entities::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Entities::Uid)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Entities::EntityRef)
                            .text()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Entities::Kind).string().not_null())
                    .col(ColumnDef::new(Entities::LocationId).string().not_null())
                    .col(ColumnDef::new(Entities::Hash).string().not_null())
                    .col(ColumnDef::new(Entities::Processed).text().not_null())
                    .col(ColumnDef::new(Entities::FinalEntity).text().not_null())
                    .col(ColumnDef::new(Entities::Etag).string().not_null())
                    .col(ColumnDef::new(Entities::Errors).text())
                    .col(ColumnDef::new(Entities::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("entities_location_id")
                    .table(Entities::Table)
                    .col(Entities::LocationId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Relations::Table)
                    .col(
                        ColumnDef::new(Relations::OriginatingEntityId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Relations::SourceRef).text().not_null())
                    .col(ColumnDef::new(Relations::Type).string().not_null())
                    .col(ColumnDef::new(Relations::TargetRef).text().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("relations_originating", Relations::OriginatingEntityId),
            ("relations_source_ref", Relations::SourceRef),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Relations::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(CatalogChanges::Table)
                    .col(
                        ColumnDef::new(CatalogChanges::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CatalogChanges::EntityId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CatalogChanges::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CatalogChanges::Table.into_iden(),
            Relations::Table.into_iden(),
            Entities::Table.into_iden(),
            Locations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
