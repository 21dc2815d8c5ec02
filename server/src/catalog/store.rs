//! The catalog's tables and the queries on them. No business rules live here:
//! `ingest` decides what to write, this module knows how.

use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseBackend, QueryOrder, QuerySelect,
};

pub mod locations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "locations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_name = "type")]
        pub kind: String,
        #[sea_orm(column_type = "Text")]
        pub target: String,
        /// `config` or `api`.
        pub source: String,
        pub created_at: i64,
        pub next_refresh_at: i64,
        pub last_refreshed_at: Option<i64>,
        #[sea_orm(column_type = "Text", nullable)]
        pub errors: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod entities {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "entities")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub uid: String,
        #[sea_orm(column_type = "Text")]
        pub entity_ref: String,
        pub kind: String,
        pub location_id: String,
        pub hash: String,
        #[sea_orm(column_type = "Text")]
        pub processed: String,
        #[sea_orm(column_type = "Text")]
        pub final_entity: String,
        pub etag: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub errors: Option<String>,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod relations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "relations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub originating_entity_id: i64,
        #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
        pub source_ref: String,
        #[sea_orm(primary_key, auto_increment = false, column_name = "type")]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
        pub target_ref: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod changes {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_changes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        pub entity_id: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows per multi-row statement: well below SQLite's and PostgreSQL's parameter limits.
const CHUNK: usize = 400;

/// Every row of `E` whose `column` is one of `values`, asked in chunks that stay
/// within both databases' bind-parameter limits.
async fn find_where_in<E, V>(
    db: &impl ConnectionTrait,
    column: E::Column,
    values: &[V],
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    V: Into<sea_orm::Value> + Clone,
{
    let mut out = Vec::new();
    for chunk in values.chunks(CHUNK) {
        out.extend(
            E::find()
                .filter(column.is_in(chunk.iter().cloned()))
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------- locations

pub async fn location_by_id(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<locations::Model>, DbErr> {
    locations::Entity::find_by_id(id.to_string()).one(db).await
}

pub async fn location_by_target(
    db: &impl ConnectionTrait,
    kind: &str,
    target: &str,
) -> Result<Option<locations::Model>, DbErr> {
    locations::Entity::find()
        .filter(locations::Column::Kind.eq(kind))
        .filter(locations::Column::Target.eq(target))
        .one(db)
        .await
}

pub async fn all_locations(db: &impl ConnectionTrait) -> Result<Vec<locations::Model>, DbErr> {
    locations::Entity::find()
        .order_by_asc(locations::Column::CreatedAt)
        .order_by_asc(locations::Column::Id)
        .all(db)
        .await
}

pub async fn insert_location(db: &impl ConnectionTrait, m: locations::Model) -> Result<(), DbErr> {
    locations::Entity::insert(locations::ActiveModel {
        id: Set(m.id),
        kind: Set(m.kind),
        target: Set(m.target),
        source: Set(m.source),
        created_at: Set(m.created_at),
        next_refresh_at: Set(m.next_refresh_at),
        last_refreshed_at: Set(m.last_refreshed_at),
        errors: Set(m.errors),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn delete_location(db: &impl ConnectionTrait, id: &str) -> Result<u64, DbErr> {
    Ok(locations::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await?
        .rows_affected)
}

pub async fn set_location_result(
    db: &impl ConnectionTrait,
    id: &str,
    errors: Option<String>,
    refreshed_at: i64,
    next_refresh_at: i64,
) -> Result<(), DbErr> {
    locations::Entity::update_many()
        .col_expr(locations::Column::Errors, Expr::value(errors))
        .col_expr(
            locations::Column::LastRefreshedAt,
            Expr::value(refreshed_at),
        )
        .col_expr(
            locations::Column::NextRefreshAt,
            Expr::value(next_refresh_at),
        )
        .filter(locations::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn set_next_refresh(
    db: &impl ConnectionTrait,
    id: &str,
    next_refresh_at: i64,
) -> Result<(), DbErr> {
    locations::Entity::update_many()
        .col_expr(
            locations::Column::NextRefreshAt,
            Expr::value(next_refresh_at),
        )
        .filter(locations::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Claims up to `limit` due locations by pushing their next refresh out, so that
/// no other replica picks them while this one works.
pub async fn claim_due_locations(
    db: &impl ConnectionTrait,
    now: i64,
    lease_until: i64,
    limit: u64,
) -> Result<Vec<locations::Model>, DbErr> {
    let due = locations::Entity::find()
        .filter(locations::Column::NextRefreshAt.lte(now))
        .order_by_asc(locations::Column::NextRefreshAt)
        .limit(limit)
        .all(db)
        .await?;
    let mut claimed = Vec::with_capacity(due.len());
    for loc in due {
        // Compare-and-set on the old due time: only one claimant wins.
        let res = locations::Entity::update_many()
            .col_expr(locations::Column::NextRefreshAt, Expr::value(lease_until))
            .filter(locations::Column::Id.eq(loc.id.clone()))
            .filter(locations::Column::NextRefreshAt.eq(loc.next_refresh_at))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            claimed.push(loc);
        }
    }
    Ok(claimed)
}

pub async fn make_all_due(db: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    locations::Entity::update_many()
        .col_expr(locations::Column::NextRefreshAt, Expr::value(now))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn due_location_count(db: &impl ConnectionTrait, now: i64) -> Result<u64, DbErr> {
    locations::Entity::find()
        .filter(locations::Column::NextRefreshAt.lte(now))
        .count(db)
        .await
}

pub async fn errored_location_count(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    locations::Entity::find()
        .filter(locations::Column::Errors.is_not_null())
        .count(db)
        .await
}

// ---------------------------------------------------------------- entities

/// What the writer needs to know about an existing entity, without its JSON.
#[derive(Debug, Clone, sea_orm::FromQueryResult)]
pub struct EntityHead {
    pub id: i64,
    pub uid: String,
    pub entity_ref: String,
    pub location_id: String,
    pub hash: String,
    pub errors: Option<String>,
}

fn head_query() -> sea_orm::Select<entities::Entity> {
    entities::Entity::find().select_only().columns([
        entities::Column::Id,
        entities::Column::Uid,
        entities::Column::EntityRef,
        entities::Column::LocationId,
        entities::Column::Hash,
        entities::Column::Errors,
    ])
}

pub async fn heads_by_location(
    db: &impl ConnectionTrait,
    location_id: &str,
) -> Result<Vec<EntityHead>, DbErr> {
    head_query()
        .filter(entities::Column::LocationId.eq(location_id))
        .into_model::<EntityHead>()
        .all(db)
        .await
}

pub async fn heads_by_refs(
    db: &impl ConnectionTrait,
    refs: &[String],
) -> Result<Vec<EntityHead>, DbErr> {
    let mut out = Vec::new();
    for chunk in refs.chunks(CHUNK) {
        out.extend(
            head_query()
                .filter(entities::Column::EntityRef.is_in(chunk.iter().cloned()))
                .into_model::<EntityHead>()
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

pub async fn entities_by_ids(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<Vec<entities::Model>, DbErr> {
    find_where_in::<entities::Entity, _>(db, entities::Column::Id, ids).await
}

pub async fn entities_by_refs(
    db: &impl ConnectionTrait,
    refs: &[String],
) -> Result<Vec<entities::Model>, DbErr> {
    find_where_in::<entities::Entity, _>(db, entities::Column::EntityRef, refs).await
}

/// A page of final entities in id order, for loading the index.
#[derive(Debug, Clone, sea_orm::FromQueryResult)]
pub struct FinalRow {
    pub id: i64,
    pub uid: String,
    pub entity_ref: String,
    pub final_entity: String,
}

pub async fn final_rows_after(
    db: &impl ConnectionTrait,
    after_id: i64,
    limit: u64,
) -> Result<Vec<FinalRow>, DbErr> {
    entities::Entity::find()
        .select_only()
        .columns([
            entities::Column::Id,
            entities::Column::Uid,
            entities::Column::EntityRef,
            entities::Column::FinalEntity,
        ])
        .filter(entities::Column::Id.gt(after_id))
        .order_by_asc(entities::Column::Id)
        .limit(limit)
        .into_model::<FinalRow>()
        .all(db)
        .await
}

pub async fn final_rows_by_ids(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<Vec<FinalRow>, DbErr> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(
            entities::Entity::find()
                .select_only()
                .columns([
                    entities::Column::Id,
                    entities::Column::Uid,
                    entities::Column::EntityRef,
                    entities::Column::FinalEntity,
                ])
                .filter(entities::Column::Id.is_in(chunk.iter().copied()))
                .into_model::<FinalRow>()
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

pub struct NewEntity {
    pub uid: String,
    pub entity_ref: String,
    pub kind: String,
    pub location_id: String,
    pub hash: String,
    pub processed: String,
    pub errors: Option<String>,
    pub updated_at: i64,
}

/// Inserts entities and returns their ids, in order.
pub async fn insert_entities(
    db: &impl ConnectionTrait,
    rows: Vec<NewEntity>,
) -> Result<Vec<i64>, DbErr> {
    let refs: Vec<String> = rows.iter().map(|r| r.entity_ref.clone()).collect();
    for chunk in rows.chunks(CHUNK) {
        entities::Entity::insert_many(chunk.iter().map(|r| entities::ActiveModel {
            id: NotSet,
            uid: Set(r.uid.clone()),
            entity_ref: Set(r.entity_ref.clone()),
            kind: Set(r.kind.clone()),
            location_id: Set(r.location_id.clone()),
            hash: Set(r.hash.clone()),
            processed: Set(r.processed.clone()),
            final_entity: Set(String::new()),
            etag: Set(String::new()),
            errors: Set(r.errors.clone()),
            updated_at: Set(r.updated_at),
        }))
        .exec_without_returning(db)
        .await?;
    }
    let heads = heads_by_refs(db, &refs).await?;
    let by_ref: std::collections::HashMap<&str, i64> = heads
        .iter()
        .map(|h| (h.entity_ref.as_str(), h.id))
        .collect();
    refs.iter()
        .map(|r| {
            by_ref
                .get(r.as_str())
                .copied()
                .ok_or_else(|| DbErr::RecordNotFound(format!("inserted entity {r}")))
        })
        .collect()
}

pub async fn update_processed(
    db: &impl ConnectionTrait,
    id: i64,
    hash: &str,
    processed: &str,
    errors: Option<String>,
    now: i64,
) -> Result<(), DbErr> {
    entities::Entity::update_many()
        .col_expr(entities::Column::Hash, Expr::value(hash))
        .col_expr(entities::Column::Processed, Expr::value(processed))
        .col_expr(entities::Column::Errors, Expr::value(errors))
        .col_expr(entities::Column::UpdatedAt, Expr::value(now))
        .filter(entities::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn update_errors(
    db: &impl ConnectionTrait,
    id: i64,
    errors: Option<String>,
) -> Result<(), DbErr> {
    entities::Entity::update_many()
        .col_expr(entities::Column::Errors, Expr::value(errors))
        .filter(entities::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Sets the final JSON and etag of many entities, a few hundred per statement.
pub async fn update_finals(
    db: &impl ConnectionTrait,
    rows: &[(i64, String, String)],
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for chunk in rows.chunks(300) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 3);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (id, final_entity, etag) in chunk {
            let n = values.len();
            tuples.push(match backend {
                DatabaseBackend::Postgres => format!("(${}, ${}, ${})", n + 1, n + 2, n + 3),
                _ => "(?, ?, ?)".to_string(),
            });
            values.push((*id).into());
            values.push(final_entity.clone().into());
            values.push(etag.clone().into());
        }
        // VALUES columns are named column1.. on both SQLite and PostgreSQL.
        let sql = format!(
            "UPDATE entities SET final_entity = v.column2, etag = v.column3 \
             FROM (VALUES {}) AS v WHERE entities.id = v.column1",
            tuples.join(", ")
        );
        db.execute(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    }
    Ok(())
}

pub async fn delete_entities(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    for chunk in ids.chunks(CHUNK) {
        entities::Entity::delete_many()
            .filter(entities::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- relations

pub async fn relations_from(
    db: &impl ConnectionTrait,
    originating: &[i64],
) -> Result<Vec<relations::Model>, DbErr> {
    find_where_in::<relations::Entity, _>(db, relations::Column::OriginatingEntityId, originating)
        .await
}

pub async fn relations_with_source(
    db: &impl ConnectionTrait,
    source_refs: &[String],
) -> Result<Vec<relations::Model>, DbErr> {
    find_where_in::<relations::Entity, _>(db, relations::Column::SourceRef, source_refs).await
}

pub async fn delete_relations_from(
    db: &impl ConnectionTrait,
    originating: &[i64],
) -> Result<(), DbErr> {
    for chunk in originating.chunks(CHUNK) {
        relations::Entity::delete_many()
            .filter(relations::Column::OriginatingEntityId.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

pub async fn insert_relations(
    db: &impl ConnectionTrait,
    rows: Vec<relations::Model>,
) -> Result<(), DbErr> {
    for chunk in rows.chunks(CHUNK) {
        relations::Entity::insert_many(chunk.iter().map(|r| relations::ActiveModel {
            originating_entity_id: Set(r.originating_entity_id),
            source_ref: Set(r.source_ref.clone()),
            kind: Set(r.kind.clone()),
            target_ref: Set(r.target_ref.clone()),
        }))
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- change feed

pub async fn record_changes(
    db: &impl ConnectionTrait,
    entity_ids: &[i64],
    now: i64,
) -> Result<(), DbErr> {
    for chunk in entity_ids.chunks(CHUNK) {
        changes::Entity::insert_many(chunk.iter().map(|id| changes::ActiveModel {
            seq: NotSet,
            entity_id: Set(*id),
            created_at: Set(now),
        }))
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

pub async fn changes_after(
    db: &impl ConnectionTrait,
    seq: i64,
    limit: u64,
) -> Result<Vec<changes::Model>, DbErr> {
    changes::Entity::find()
        .filter(changes::Column::Seq.gt(seq))
        .order_by_asc(changes::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// Feed entries older than `before_seq` (the newest when None), newest first:
/// a walk backwards along the primary key, however long the feed.
pub async fn changes_before(
    db: &impl ConnectionTrait,
    before_seq: Option<i64>,
    limit: u64,
) -> Result<Vec<changes::Model>, DbErr> {
    let mut query = changes::Entity::find();
    if let Some(seq) = before_seq {
        query = query.filter(changes::Column::Seq.lt(seq));
    }
    query
        .order_by_desc(changes::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

pub async fn max_change_seq(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(changes::Entity::find()
        .order_by_desc(changes::Column::Seq)
        .one(db)
        .await?
        .map(|c| c.seq)
        .unwrap_or(0))
}

pub async fn min_change_seq(db: &impl ConnectionTrait) -> Result<Option<i64>, DbErr> {
    Ok(changes::Entity::find()
        .order_by_asc(changes::Column::Seq)
        .one(db)
        .await?
        .map(|c| c.seq))
}

/// Drops feed entries older than `before`; replicas further behind reload fully.
pub async fn prune_changes(db: &impl ConnectionTrait, before: i64) -> Result<u64, DbErr> {
    let keep_from = max_change_seq(db).await?;
    Ok(changes::Entity::delete_many()
        .filter(changes::Column::CreatedAt.lt(before))
        .filter(changes::Column::Seq.lt(keep_from))
        .exec(db)
        .await?
        .rows_affected)
}
