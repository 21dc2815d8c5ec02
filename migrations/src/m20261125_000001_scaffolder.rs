//! The scaffolder's tables: tasks with their checkpointed state, their event
//! log, and the admins' curation of templates.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000001_scaffolder"
    }
}

#[derive(DeriveIden)]
enum ScaffolderTasks {
    Table,
    Id,
    Spec,
    Status,
    CreatedBy,
    TemplateRef,
    CreatedAt,
    LastHeartbeatAt,
    ClaimedBy,
    Secrets,
    State,
    Workspace,
    CancelRequested,
    Attempts,
    FinishedAt,
}

#[derive(DeriveIden)]
enum ScaffolderTaskEvents {
    Table,
    Id,
    TaskId,
    EventType,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ScaffolderTemplates {
    Table,
    EntityRef,
    Published,
    AllowedGroups,
    UpdatedAt,
    UpdatedBy,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ScaffolderTasks as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(ColumnDef::new(T::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(T::Spec).text().not_null())
                    .col(ColumnDef::new(T::Status).string().not_null())
                    .col(ColumnDef::new(T::CreatedBy).text())
                    .col(ColumnDef::new(T::TemplateRef).text())
                    .col(ColumnDef::new(T::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(T::LastHeartbeatAt).big_integer())
                    .col(ColumnDef::new(T::ClaimedBy).string())
                    .col(ColumnDef::new(T::Secrets).text())
                    .col(ColumnDef::new(T::State).text().not_null())
                    .col(ColumnDef::new(T::Workspace).text())
                    .col(
                        ColumnDef::new(T::CancelRequested)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(T::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(T::FinishedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("scaffolder_tasks_status_created")
                    .table(T::Table)
                    .col(T::Status)
                    .col(T::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("scaffolder_tasks_created_by")
                    .table(T::Table)
                    .col(T::CreatedBy)
                    .to_owned(),
            )
            .await?;

        use ScaffolderTaskEvents as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .col(
                        ColumnDef::new(E::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(E::TaskId).string().not_null())
                    .col(ColumnDef::new(E::EventType).string().not_null())
                    .col(ColumnDef::new(E::Body).text().not_null())
                    .col(ColumnDef::new(E::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("scaffolder_task_events_task")
                    .table(E::Table)
                    .col(E::TaskId)
                    .col(E::Id)
                    .to_owned(),
            )
            .await?;

        use ScaffolderTemplates as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(ColumnDef::new(S::EntityRef).text().not_null().primary_key())
                    .col(
                        ColumnDef::new(S::Published)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(S::AllowedGroups).text().not_null())
                    .col(ColumnDef::new(S::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(S::UpdatedBy).text())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ScaffolderTemplates::Table.into_iden(),
            ScaffolderTaskEvents::Table.into_iden(),
            ScaffolderTasks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
