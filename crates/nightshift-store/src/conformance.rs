//! The conformance suite: what every store backend must do, as async functions over any
//! [`Store`]. A backend runs all of it with one line in its tests:
//!
//! ```ignore
//! nightshift_store::conformance_suite!(my_backend_fixture);
//! ```
//!
//! where `my_backend_fixture` is an `async fn() -> (Arc<MyStore>, Guard)` that gives an
//! empty store (the guard keeps its resources, e.g. a temp dir or a database, alive). The
//! tests run on tokio's multi-thread runtime, so the backend's tests need `tokio` with
//! `macros` and `rt-multi-thread`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use nightshift_core::records::TaskState;

use crate::{Claim, EnqueueError, Owner, ScanRules, Store};

/// Runs every case against a backend. See the module docs.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::conformance_suite!(@cases $fixture;
            enqueue_refuses_bad_ids_and_duplicates,
            a_task_is_claimed_exactly_once,
            only_the_owner_renews_a_claim,
            requeue_releases_the_claim,
            a_claim_is_taken_over_only_as_it_was_read,
            finish_files_the_task_with_its_report,
            a_scan_sees_queued_and_finished_tasks,
            an_invalid_task_is_set_aside_as_failed,
            a_schedule_slot_fires_exactly_once,
            a_snapshot_lists_every_task_with_its_text,
            cancel_takes_only_a_queued_task,
            retry_queues_a_finished_task_with_a_fresh_budget,
            pausing_is_kept_and_says_whether_it_changed,
            recent_lists_the_last_finished_newest_first,
        );
    };
    (@cases $fixture:path; $($case:ident),+ $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (store, _guard) = $fixture().await;
            $crate::conformance::$case(store).await;
        }
    )+};
}

/// A valid task file.
fn task_text(title: &str) -> String {
    format!("---\nworkdir: /tmp\n---\n# {title}\n\nDo it.\n")
}

fn claim_by(instance: &str) -> Claim {
    Claim {
        owner: Owner {
            host: "test-host".into(),
            instance: instance.into(),
        },
        until: Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(1),
    }
}

/// Who holds the claim on `id`: the owner only, since a store may set the lease's end on
/// its own clock rather than take the claimer's.
async fn owner_of<S: Store>(store: &S, id: &str) -> Option<Option<Owner>> {
    store.claim_of(id).await.ok().map(|c| c.map(|c| c.owner))
}

fn admit_all(_: &nightshift_core::task::Task, _: &std::path::Path) -> AdmitResult {
    Ok(None)
}
type AdmitResult = Result<Option<String>, nightshift_core::task::TaskError>;

fn rules() -> ScanRules<'static> {
    ScanRules {
        settle: Duration::ZERO,
        admit: &admit_all,
        user_home: None,
    }
}

pub async fn enqueue_refuses_bad_ids_and_duplicates<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("first", &task_text("one")).await.is_ok());
    match store.enqueue("first", &task_text("again")).await {
        Err(EnqueueError::Exists { id, state }) => {
            assert_eq!((id.as_str(), state), ("first", TaskState::Queued));
        }
        other => panic!("a duplicate id was not refused: {other:?}"),
    }
    for bad in ["../escape", "", "a/b", ".hidden"] {
        assert!(
            matches!(
                store.enqueue(bad, &task_text("bad")).await,
                Err(EnqueueError::InvalidId { .. })
            ),
            "{bad:?} was accepted"
        );
    }
    assert_eq!(
        store.list(TaskState::Queued).await.ok(),
        Some(vec!["first".to_string()])
    );
    assert_eq!(
        store.locate("first").await.ok(),
        Some(Some(TaskState::Queued))
    );
    assert_eq!(store.locate("missing").await.ok(), Some(None));
}

pub async fn a_task_is_claimed_exactly_once<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("contested", &task_text("c")).await.is_ok());
    let claimers: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let claim = claim_by(&format!("daemon-{n}"));
                store
                    .claim("contested", &claim)
                    .await
                    .ok()
                    .filter(|won| *won)
                    .map(|_| claim)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for claimer in claimers {
        if let Ok(Some(claim)) = claimer.await {
            winners.push(claim);
        }
    }
    assert_eq!(winners.len(), 1, "claimed by {winners:?}");
    assert_eq!(
        store.locate("contested").await.ok(),
        Some(Some(TaskState::Running))
    );
    assert_eq!(
        owner_of(&*store, "contested").await,
        Some(winners.pop().map(|c| c.owner))
    );
    // Gone from the queue: nobody claims it again.
    assert_eq!(
        store.claim("contested", &claim_by("late")).await.ok(),
        Some(false)
    );
    assert_eq!(
        store.claim("missing", &claim_by("late")).await.ok(),
        Some(false)
    );
}

pub async fn only_the_owner_renews_a_claim<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("leased", &task_text("l")).await.is_ok());
    let mine = claim_by("me");
    assert_eq!(store.claim("leased", &mine).await.ok(), Some(true));
    let later = Claim {
        until: mine.until + jiff::SignedDuration::from_hours(1),
        ..mine.clone()
    };
    assert_eq!(store.renew("leased", &later).await.ok(), Some(true));
    assert_eq!(
        owner_of(&*store, "leased").await,
        Some(Some(later.owner.clone()))
    );
    assert_eq!(
        store.renew("leased", &claim_by("someone-else")).await.ok(),
        Some(false)
    );
    assert_eq!(owner_of(&*store, "leased").await, Some(Some(later.owner)));
}

pub async fn a_claim_is_taken_over_only_as_it_was_read<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("adopted", &task_text("a")).await.is_ok());
    let old = claim_by("before-restart");
    assert_eq!(store.claim("adopted", &old).await.ok(), Some(true));
    let read = store.claim_of("adopted").await.ok().flatten();
    assert_eq!(read.as_ref().map(|c| &c.owner), Some(&old.owner));
    let new = claim_by("after-restart");
    assert_eq!(
        store.take_over("adopted", read.as_ref(), &new).await.ok(),
        Some(true)
    );
    assert_eq!(
        owner_of(&*store, "adopted").await,
        Some(Some(new.owner.clone()))
    );
    // A second taker that read the old claim loses.
    let late = claim_by("late");
    assert_eq!(
        store.take_over("adopted", read.as_ref(), &late).await.ok(),
        Some(false)
    );
    assert_eq!(owner_of(&*store, "adopted").await, Some(Some(new.owner)));
    // Nothing to take over in a task that is not running.
    assert!(store.enqueue("queued", &task_text("q")).await.is_ok());
    assert_eq!(
        store.take_over("queued", None, &late).await.ok(),
        Some(false)
    );
}

pub async fn requeue_releases_the_claim<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("again", &task_text("a")).await.is_ok());
    assert_eq!(
        store.claim("again", &claim_by("first")).await.ok(),
        Some(true)
    );
    assert!(store.requeue("again").await.is_ok());
    assert_eq!(
        store.locate("again").await.ok(),
        Some(Some(TaskState::Queued))
    );
    assert_eq!(store.claim_of("again").await.ok(), Some(None));
    let second = claim_by("second");
    assert_eq!(store.claim("again", &second).await.ok(), Some(true));
    assert_eq!(owner_of(&*store, "again").await, Some(Some(second.owner)));
}

pub async fn finish_files_the_task_with_its_report<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("finished", &task_text("f")).await.is_ok());
    assert!(store.enqueue("never-ran", &task_text("n")).await.is_ok());
    assert_eq!(
        store.claim("finished", &claim_by("me")).await.ok(),
        Some(true)
    );
    let report = "\n<!-- nightshift:report -->\n## Report\n\nok\n";
    let filed = store
        .finish("finished", TaskState::Running, TaskState::Done, report)
        .await;
    assert!(filed.is_ok(), "{filed:?}");
    assert_eq!(
        store.locate("finished").await.ok(),
        Some(Some(TaskState::Done))
    );
    assert_eq!(store.claim_of("finished").await.ok(), Some(None));
    // A retry of a filing that happened (its answer was lost) finds it done.
    let again = store
        .finish("finished", TaskState::Running, TaskState::Done, report)
        .await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(
        store.list(TaskState::Done).await.ok(),
        Some(vec!["finished".to_string()])
    );
    // A queued task can fail without running (its dependency failed).
    let filed = store
        .finish("never-ran", TaskState::Queued, TaskState::Failed, report)
        .await;
    assert!(filed.is_ok(), "{filed:?}");
    assert_eq!(
        store.list(TaskState::Failed).await.ok(),
        Some(vec!["never-ran".to_string()])
    );
    assert_eq!(store.list(TaskState::Queued).await.ok(), Some(Vec::new()));
}

pub async fn a_scan_sees_queued_and_finished_tasks<S: Store>(store: Arc<S>) {
    let waiting = "---\nworkdir: /tmp\ndepends_on: [done-one]\n---\n# waiting\n\nDo it.\n";
    assert!(store.enqueue("waiting", waiting).await.is_ok());
    assert!(
        store
            .enqueue("done-one", &task_text("done-one"))
            .await
            .is_ok()
    );
    assert_eq!(
        store.claim("done-one", &claim_by("me")).await.ok(),
        Some(true)
    );
    let filed = store
        .finish(
            "done-one",
            TaskState::Running,
            TaskState::Done,
            "\nreport\n",
        )
        .await;
    assert!(filed.is_ok());
    let later = SystemTime::now() + Duration::from_secs(3600);
    let scan = match store.scan(rules(), later).await {
        Ok(scan) => scan,
        Err(e) => panic!("scan failed: {e}"),
    };
    let queued: Vec<&str> = scan.queued.iter().map(|q| q.task.id.as_str()).collect();
    assert_eq!(queued, ["waiting"]);
    assert_eq!(scan.queued[0].task.title, "waiting");
    assert_eq!(scan.queued[0].last_attempt, 0);
    assert!(scan.invalid.is_empty(), "{:?}", scan.invalid);
    assert_eq!(scan.finished.get("done-one"), Some(&TaskState::Done));
}

pub async fn an_invalid_task_is_set_aside_as_failed<S: Store>(store: Arc<S>) {
    assert!(
        store
            .enqueue("broken", "---\npriority: [unclosed\n---\n# b\n")
            .await
            .is_ok()
    );
    let later = SystemTime::now() + Duration::from_secs(3600);
    let Ok(scan) = store.scan(rules(), later).await else {
        panic!("scan failed");
    };
    assert!(scan.queued.is_empty());
    assert_eq!(scan.invalid.len(), 1, "{:?}", scan.invalid);
    let invalid = &scan.invalid[0];
    assert!(invalid.error.contains("broken"), "{}", invalid.error);
    assert!(store.reject(&invalid.path, &invalid.error).await.is_ok());
    assert_eq!(
        store.locate("broken").await.ok(),
        Some(Some(TaskState::Failed))
    );
    assert_eq!(store.list(TaskState::Queued).await.ok(), Some(Vec::new()));
}

pub async fn a_schedule_slot_fires_exactly_once<S: Store>(store: Arc<S>) {
    let slot = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(24);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim_slot("nightly", slot).await.ok() })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        if let Ok(Some(true)) = racer.await {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.claim_slot("nightly", slot).await.ok(), Some(false));
    let next = slot + jiff::SignedDuration::from_hours(24);
    assert_eq!(store.claim_slot("nightly", next).await.ok(), Some(true));
    assert_eq!(store.claim_slot("weekly", slot).await.ok(), Some(true));
}

pub async fn a_snapshot_lists_every_task_with_its_text<S: Store>(store: Arc<S>) {
    for id in ["b-queued", "a-queued", "running", "finished"] {
        assert!(store.enqueue(id, &task_text(id)).await.is_ok());
    }
    assert_eq!(
        store.claim("running", &claim_by("me")).await.ok(),
        Some(true)
    );
    assert_eq!(
        store.claim("finished", &claim_by("me")).await.ok(),
        Some(true)
    );
    assert!(
        store
            .finish(
                "finished",
                TaskState::Running,
                TaskState::Done,
                "\nreport\n"
            )
            .await
            .is_ok()
    );
    let Ok(all) = store.snapshot().await else {
        panic!("snapshot failed");
    };
    let listed: Vec<(&str, TaskState)> = all.iter().map(|e| (e.id.as_str(), e.state)).collect();
    assert_eq!(
        listed,
        [
            ("a-queued", TaskState::Queued),
            ("b-queued", TaskState::Queued),
            ("running", TaskState::Running),
            ("finished", TaskState::Done),
        ]
    );
    let text = |id: &str| {
        let entry = all.iter().find(|e| e.id == id);
        entry
            .and_then(|e| e.content.clone().ok())
            .map(String::from_utf8)
    };
    assert_eq!(text("a-queued"), Some(Ok(task_text("a-queued"))));
    let finished = text("finished").and_then(Result::ok).unwrap_or_default();
    assert!(finished.starts_with(&task_text("finished")) && finished.ends_with("report\n"));
    // The same, one at a time; and a snapshot again sees what changed since.
    let one = store.entry("running").await.ok().flatten();
    assert_eq!(one.map(|e| e.state), Some(TaskState::Running));
    assert!(matches!(store.entry("missing").await, Ok(None)));
    assert!(store.retry("finished").await.is_ok());
    let again = store.snapshot().await.ok().unwrap_or_default();
    let now = again.iter().find(|e| e.id == "finished");
    assert_eq!(now.map(|e| e.state), Some(TaskState::Queued));
}

pub async fn cancel_takes_only_a_queued_task<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("waiting", &task_text("w")).await.is_ok());
    assert!(store.enqueue("taken", &task_text("t")).await.is_ok());
    assert_eq!(store.claim("taken", &claim_by("me")).await.ok(), Some(true));
    let report = "\n<!-- nightshift:report -->\ncancelled\n";
    assert_eq!(store.cancel("waiting", report).await.ok(), Some(true));
    assert_eq!(
        store.locate("waiting").await.ok(),
        Some(Some(TaskState::Failed))
    );
    let filed = store.entry("waiting").await.ok().flatten();
    let text = filed.and_then(|e| e.content.ok()).map(String::from_utf8);
    assert!(
        matches!(&text, Some(Ok(t)) if t.ends_with("cancelled\n") && t.starts_with("---")),
        "{text:?}"
    );
    // A claimed task is the daemon's to stop; a missing one is nothing to cancel.
    assert_eq!(store.cancel("taken", report).await.ok(), Some(false));
    assert_eq!(
        store.locate("taken").await.ok(),
        Some(Some(TaskState::Running))
    );
    assert_eq!(store.cancel("missing", report).await.ok(), Some(false));
}

pub async fn retry_queues_a_finished_task_with_a_fresh_budget<S: Store>(store: Arc<S>) {
    assert!(store.enqueue("flaky", &task_text("f")).await.is_ok());
    assert_eq!(store.claim("flaky", &claim_by("me")).await.ok(), Some(true));
    assert!(
        store
            .finish("flaky", TaskState::Running, TaskState::Failed, "\nfailed\n")
            .await
            .is_ok()
    );
    let next = store.retry("flaky").await.ok().flatten();
    assert!(next.is_some_and(|n| n >= 1), "{next:?}");
    assert_eq!(
        store.locate("flaky").await.ok(),
        Some(Some(TaskState::Queued))
    );
    // Only finished tasks are retried.
    assert_eq!(store.retry("flaky").await.ok(), Some(None));
    assert_eq!(store.retry("missing").await.ok(), Some(None));
    let later = SystemTime::now() + Duration::from_secs(3600);
    let scan = store.scan(rules(), later).await.ok();
    let queued = scan.as_ref().and_then(|s| s.queued.first());
    assert_eq!(queued.map(|q| q.counted_attempts), Some(0));
    // The number retry gave is the one the next attempt gets.
    assert_eq!(queued.map(|q| q.last_attempt + 1), next);
}

pub async fn pausing_is_kept_and_says_whether_it_changed<S: Store>(store: Arc<S>) {
    let at = Timestamp::UNIX_EPOCH;
    assert_eq!(store.paused().await.ok(), Some(false));
    assert_eq!(store.set_paused(true, at).await.ok(), Some(true));
    assert_eq!(store.paused().await.ok(), Some(true));
    assert_eq!(store.set_paused(true, at).await.ok(), Some(false));
    assert_eq!(store.set_paused(false, at).await.ok(), Some(true));
    assert_eq!(store.paused().await.ok(), Some(false));
    assert_eq!(store.set_paused(false, at).await.ok(), Some(false));
}

pub async fn recent_lists_the_last_finished_newest_first<S: Store>(store: Arc<S>) {
    let mut filed_at = Vec::new();
    for (id, to) in [
        ("a", TaskState::Done),
        ("b", TaskState::Failed),
        ("c", TaskState::Done),
    ] {
        assert!(store.enqueue(id, &task_text(id)).await.is_ok());
        assert_eq!(store.claim(id, &claim_by("me")).await.ok(), Some(true));
        // Filing times well apart: a file's mtime comes from a coarse clock (a few ms).
        tokio::time::sleep(Duration::from_millis(60)).await;
        filed_at.push(Timestamp::now());
        assert!(
            store
                .finish(id, TaskState::Running, to, "\nr\n")
                .await
                .is_ok()
        );
    }
    assert!(store.enqueue("waiting", &task_text("w")).await.is_ok());
    let ids = |r: &crate::Recent| r.entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>();

    let recent = store.recent(2, None).await.ok().unwrap_or_default();
    assert_eq!(
        (ids(&recent), recent.older),
        (vec!["c".into(), "b".into()], 1)
    );
    let since = filed_at[1] - Duration::from_millis(20);
    let recent = store.recent(10, Some(since)).await.ok().unwrap_or_default();
    assert_eq!(
        (ids(&recent), recent.older),
        (vec!["c".into(), "b".into()], 1)
    );

    // A retried task is active again, not finished.
    assert!(store.retry("b").await.ok().flatten().is_some());
    let recent = store.recent(10, None).await.ok().unwrap_or_default();
    assert_eq!(
        (ids(&recent), recent.older),
        (vec!["c".into(), "a".into()], 0)
    );
    let active = store.active().await.ok().unwrap_or_default();
    let mut active: Vec<String> = active.into_iter().map(|e| e.id).collect();
    active.sort();
    assert_eq!(active, ["b", "waiting"]);
}
