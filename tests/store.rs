//! The storage suite, run on SQLite and on PostgreSQL.

mod common;
use common::*;
use parlor::store::{RoomRecord, Store, StoreError};

async fn suite(store: &Store) {
    store.ping().await.unwrap();
    let rec = |name: &str, t: i64| RoomRecord {
        name: name.into(),
        sid: format!("RM_{name}"),
        created_at: t,
        closed_at: None,
        max_participants: 10,
        ..Default::default()
    };
    for i in 0..5 {
        store
            .insert_room(&rec(&format!("room{i}"), 1000 + i))
            .await
            .unwrap();
    }
    // Unique violation maps to Conflict.
    assert!(matches!(
        store.insert_room(&rec("room1", 5)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_room("room3").await.unwrap(), rec("room3", 1003));
    assert!(matches!(
        store.get_room("nope").await,
        Err(StoreError::NotFound)
    ));
    // Keyset pagination, newest first.
    let page1 = store.list_open_rooms(None, 2).await.unwrap();
    assert_eq!(
        page1.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["room4", "room3"]
    );
    let page2 = store
        .list_open_rooms(Some(page1[1].created_at), 2)
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["room2", "room1"]
    );
    // Close: no longer listed, closed_at kept; closing twice is NotFound.
    store.close_room("room4", 2000).await.unwrap();
    assert_eq!(store.get_room("room4").await.unwrap().closed_at, Some(2000));
    assert!(matches!(
        store.close_room("room4", 2001).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.list_open_rooms(None, 10).await.unwrap().len(), 4);
    // Delete.
    store.delete_room("room0").await.unwrap();
    assert!(matches!(
        store.delete_room("room0").await,
        Err(StoreError::NotFound)
    ));
    // Odd but valid text round-trips exactly (quotes, unicode, SQL-looking input).
    let odd = "o'neil\"; DROP TABLE rooms; -- ünï";
    store.insert_room(&rec(odd, 1)).await.unwrap();
    assert_eq!(store.get_room(odd).await.unwrap().name, odd);
    // Concurrent writers.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_room(&rec(&format!("c{i}"), 3000 + i)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // room1..room3 open, the odd one, and the 20 concurrent ones.
    assert_eq!(
        store.list_open_rooms(None, 100).await.unwrap().len(),
        3 + 1 + 20
    );
}

#[tokio::test]
async fn storage_suite_sqlite() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url, 4).await.unwrap();
    assert_eq!(store.backend.name(), "sqlite");
    suite(&store).await;
    // Migrations are idempotent: reconnecting to the same file keeps the data.
    store.close().await;
    let again = Store::connect(&db.url, 4).await.unwrap();
    assert!(again.get_room("room3").await.is_ok());
}

#[tokio::test]
async fn storage_suite_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = Store::connect(&db.url, 4).await.unwrap();
    assert_eq!(store.backend.name(), "postgres");
    suite(&store).await;
    store.close().await;
    let again = Store::connect(&db.url, 4).await.unwrap();
    assert!(again.get_room("room3").await.is_ok());
    again.close().await;
    db.drop_db().await;
}
