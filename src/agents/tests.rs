//! Unit tests of the agents registry: worker choice, deployments, availability answers.
use super::*;

fn reg(name: &str) -> proto::RegisterWorkerRequest {
    proto::RegisterWorkerRequest {
        agent_name: name.into(),
        ..Default::default()
    }
}

#[test]
fn jobs_go_to_the_least_loaded_available_worker_of_that_name() {
    let a = Agents::default();
    let (tx, _rx) = mpsc::channel(4);
    let w1 = a.register(&reg("x"), "k".into(), tx.clone()).unwrap();
    let w2 = a.register(&reg("x"), "k".into(), tx.clone()).unwrap();
    let other = a.register(&reg("y"), "k".into(), tx).unwrap();
    let none = HashSet::new();
    // Equal load: the earlier registered.
    assert_eq!(
        a.pick(("x", ""), proto::JobType::JtRoom, &none, "j1")
            .unwrap()
            .0,
        w1
    );
    let load = |l: f32, status: Option<i32>| proto::UpdateWorkerStatus {
        status,
        load: l,
        ..Default::default()
    };
    a.update_worker(&w1, &load(0.5, None));
    assert_eq!(
        a.pick(("x", ""), proto::JobType::JtRoom, &none, "j2")
            .unwrap()
            .0,
        w2
    );
    // A full (draining) worker gets nothing; an absent status leaves it as it was.
    a.update_worker(&w2, &load(0.1, Some(proto::WorkerStatus::WsFull as i32)));
    a.update_worker(&w2, &load(0.1, None));
    assert_eq!(
        a.pick(("x", ""), proto::JobType::JtRoom, &none, "j3")
            .unwrap()
            .0,
        w1
    );
    // Tried workers are skipped; names match exactly; a NaN load is ignored.
    a.update_worker(&w1, &load(f32::NAN, None));
    assert!(a
        .pick(
            ("x", ""),
            proto::JobType::JtRoom,
            &HashSet::from([w1.clone()]),
            "j4"
        )
        .is_none());
    assert_eq!(
        a.pick(("y", ""), proto::JobType::JtRoom, &none, "j5")
            .unwrap()
            .0,
        other
    );
    assert!(a
        .pick(("", ""), proto::JobType::JtRoom, &none, "j6")
        .is_none());
    a.unregister(&w1);
    assert!(a
        .pick(("x", ""), proto::JobType::JtRoom, &none, "j7")
        .is_none());
    assert_eq!(a.workers().len(), 2);
}

#[test]
fn deployments_match_exactly() {
    let a = Agents::default();
    let (tx, _rx) = mpsc::channel(4);
    let plain = a.register(&reg("x"), "k".into(), tx.clone()).unwrap();
    let mut blue = reg("x");
    blue.deployment = "blue".into();
    let blue = a.register(&blue, "k".into(), tx).unwrap();
    let none = HashSet::new();
    let t = proto::JobType::JtRoom;
    assert_eq!(a.pick(("x", "blue"), t, &none, "j1").unwrap().0, blue);
    assert_eq!(a.pick(("x", ""), t, &none, "j2").unwrap().0, plain);
    assert!(a.pick(("x", "green"), t, &none, "j3").is_none());
}

#[test]
fn an_availability_answer_reaches_the_offer_waiting_for_it() {
    let a = Agents::default();
    let (tx, _rx) = mpsc::channel(4);
    let w = a.register(&reg(""), "k".into(), tx).unwrap();
    let (_, _, mut answer) = a
        .pick(("", ""), proto::JobType::JtRoom, &HashSet::new(), "AJ_1")
        .unwrap();
    // An answer for another job, or from another worker, is dropped.
    let resp = |job: &str| proto::AvailabilityResponse {
        job_id: job.into(),
        available: true,
        ..Default::default()
    };
    a.availability(&w, resp("AJ_2"));
    a.availability("AW_other", resp("AJ_1"));
    assert!(answer.try_recv().is_err());
    a.availability(&w, resp("AJ_1"));
    assert!(answer.try_recv().unwrap().available);
}
