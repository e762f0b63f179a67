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

/// The webhook queue (migration 0008): `seq` orders it even when every time ties, and a room's
/// deliveries to one URL go out one at a time — a later one waits while an earlier one is pending
/// (being retried), on both databases.
async fn webhook_queue(store: &Store) {
    use parlor::store::Delivery;
    let now = 1_700_000_000_000;
    let d = |id: &str, url: &str, key: &str, seq: i64| Delivery {
        id: id.into(),
        event_id: format!("EV_{id}"),
        event: "room_started".into(),
        url: url.into(),
        payload: "{}".into(),
        status: "pending".into(),
        attempts: 0,
        next_attempt_at: now,
        last_status: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
        format: if key.is_empty() { "parlor" } else { "livekit" }.into(),
        ordering_key: key.into(),
        seq,
    };
    // Ids in the reverse of queue order: the old `ORDER BY next_attempt_at, id` would reorder them.
    for x in [
        d("whd_f", "http://a/", "r", 1),
        d("whd_e", "http://a/", "r", 2),
        d("whd_d", "http://a/", "r", 3),
        d("whd_c", "http://a/", "s", 4),
        d("whd_b", "http://b/", "r", 5),
        d("whd_a", "http://a/", "", 6),
        d("whd_0", "http://a/", "", 7),
    ] {
        store.insert_delivery(&x).await.unwrap();
    }
    assert_eq!(store.max_delivery_seq().await.unwrap(), 7);
    let due = |store: &Store| {
        let store = store.clone();
        async move {
            let v = store.due_deliveries(now, 32).await.unwrap();
            v.into_iter().map(|d| d.seq).collect::<Vec<_>>()
        }
    };
    // Room r on url a: only its first; room s and url b are not held back; no key: all.
    assert_eq!(due(store).await, [1, 4, 5, 6, 7]);
    let rows = store.due_deliveries(now, 32).await.unwrap();
    assert_eq!(
        (rows[0].format.as_str(), rows[0].ordering_key.as_str()),
        ("livekit", "r")
    );
    // The first of r fails and waits for its retry: the rest of r still waits behind it.
    store
        .record_attempt(
            "whd_f",
            "pending",
            1,
            now + 1000,
            Some(500),
            Some("HTTP 500"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(due(store).await, [4, 5, 6, 7]);
    for id in ["whd_c", "whd_b", "whd_a", "whd_0"] {
        store
            .record_attempt(id, "delivered", 1, now, Some(200), None, Some(now))
            .await
            .unwrap();
    }
    assert_eq!(due(store).await, Vec::<i64>::new());
    // Held-back deliveries do not make the dispatcher wake early: the next is r's retry.
    assert_eq!(store.next_delivery_at().await.unwrap(), Some(now + 1000));
    // Delivered (or given up): the next of r is due, in order.
    store
        .record_attempt("whd_f", "delivered", 2, now, Some(200), None, Some(now))
        .await
        .unwrap();
    assert_eq!(due(store).await, [2]);
    store
        .record_attempt("whd_e", "failed", 8, now, None, Some("refused"), None)
        .await
        .unwrap();
    assert_eq!(due(store).await, [3]);
    // The log, newest first.
    let log = store.list_deliveries(3).await.unwrap();
    assert_eq!(log.iter().map(|d| d.seq).collect::<Vec<_>>(), [7, 6, 5]);
}

#[tokio::test]
async fn webhook_queue_order() {
    for db in all_dbs().await {
        let store = Store::connect(&db.url, 4).await.unwrap();
        webhook_queue(&store).await;
        store.close().await;
        db.drop_db().await;
    }
}
