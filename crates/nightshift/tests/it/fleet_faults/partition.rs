//! A partitioned host. The database runs in a network namespace of its own and listens on
//! TCP there; host A (h0) reaches it over TCP from inside that namespace, host B (h1) on
//! its Unix socket. Cutting the namespace's loopback cuts A off, and only A.

use std::time::{Duration, Instant};

use nightshift_postgres::test_cluster::Cluster;

use super::rows;
use crate::fleet::{fleet_on, host};
use crate::harness::{Env, Task};

/// Waits (up to `limit`) until `cond` holds for host A.
fn wait_for(a: &mut Env, what: &str, limit: Duration, cond: impl Fn(&Env) -> bool) {
    let start = Instant::now();
    while !cond(a) {
        assert!(
            start.elapsed() < limit,
            "timed out waiting until {what}\n{}",
            a.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_partitioned_host_s_task_is_taken_over_and_its_stale_writes_are_refused() {
    let cluster = Cluster::start_partitionable().unwrap_or_else(|e| {
        panic!("this test needs a network namespace for the database (root, unshare, nsenter, ip, tc): {e}")
    });
    let mut f = fleet_on(cluster, 2, |i, cluster, url| {
        if i == 0 {
            let pid = cluster.netns_pid().unwrap_or_else(|| panic!("no netns"));
            let tcp = cluster.tcp_url(url).unwrap_or_else(|e| panic!("{e}"));
            let nsenter = ["nsenter", "-t", &pid.to_string(), "-n", "--"];
            host(0, &tcp)
                .config("labels", "[\"a\"]")
                .wrapper(nsenter.iter().map(ToString::to_string).collect())
        } else {
            host(i, url).config("labels", "[\"b\"]")
        }
    });
    let ledger = f.ledger.display().to_string();
    let repo = format!("repo: {}", f.remote.display());
    // A's run (attempt 1) of `held` works on through the partition and after it; of
    // `finished`, ends during it. B's runs (attempt 2) are quick.
    let task = |first_run: &str| {
        let start = format!("@append {ledger} {{task}} {{attempt}} start");
        let end = format!("@append {ledger} {{task}} {{attempt}} done");
        let first = format!("@sleep-on-attempt 1 {first_run}");
        Task::script([
            start.as_str(),
            first.as_str(),
            "@sleep 1s",
            end.as_str(),
            "@done",
        ])
        .front(&repo)
        .front("max_attempts: 2")
    };
    f.add(1, "held", &task("120s"));
    f.add(1, "finished", &task("4s"));
    f.hosts[0].start_daemon();
    f.wait_ls(1, "A runs both", Duration::from_secs(30), |t| {
        t.get("held") == Some(&("running".into(), Some("h0".into())))
            && t.get("finished") == Some(&("running".into(), Some("h0".into())))
    });
    f.cluster
        .cut_network()
        .unwrap_or_else(|e| panic!("cutting A off: {e}"));
    let cut = Instant::now();
    f.hosts[1].start_daemon();
    // Added while A is cut off: B runs it.
    let fresh = f.ledger_task("fresh", "100ms");
    f.add(1, "fresh", &fresh);
    f.wait_ls(
        1,
        "B took A's tasks over and finished them",
        Duration::from_secs(90),
        |t| {
            ["held", "finished", "fresh"]
                .iter()
                .all(|id| t.get(*id) == Some(&("done".into(), Some("h1".into()))))
        },
    );
    // A, cut off, stopped nothing: its agent on `held` still works.
    assert!(
        f.hosts[0].has_session("ns-held"),
        "{:?}",
        f.hosts[0].sessions()
    );
    assert!(f.hosts[0].daemon_try_wait().is_none(), "A's daemon is up");
    // A's lease (3 s, renewed every 1 s) and its grace (3 s): at least 5 s after the cut,
    // then B's run of at least 1 s.
    assert!(
        cut.elapsed() > Duration::from_secs(6),
        "taken over only after A's lease and its grace: {:?}",
        cut.elapsed()
    );
    // A's agent on `finished` is done; A keeps the filing to send when the store is back.
    wait_for(
        &mut f.hosts[0],
        "A tries to file `finished` while cut off",
        Duration::from_secs(60),
        |a| {
            a.daemon_log()
                .contains("cannot file as done (will try again)")
        },
    );
    f.cluster
        .heal_network()
        .unwrap_or_else(|e| panic!("healing the partition: {e}"));
    // A hears that its claims were taken over: its agent is stopped, and its filing of
    // `finished` (kept while it was cut off) is refused.
    let refused = "another host took this task over; this attempt's result (done) is not filed";
    wait_for(
        &mut f.hosts[0],
        "A stops its agent on `held` and drops its stale filing",
        Duration::from_secs(60),
        |a| !a.has_session("ns-held") && a.daemon_log().contains(refused),
    );
    // Refused is final: A does not keep trying.
    std::thread::sleep(Duration::from_secs(5));
    let log = f.hosts[0].daemon_log();
    let (_, since) = log.rsplit_once(refused).unwrap_or_default();
    assert!(
        !since.contains("cannot file as done"),
        "A tried again after the refusal: {since}"
    );
    // A is back: it runs new work again.
    let after = f.ledger_task("after", "100ms").front("requires: [a]");
    f.add(1, "after", &after);
    f.wait_ls(0, "A runs new work", Duration::from_secs(60), |t| {
        t.get("after") == Some(&("done".into(), Some("h0".into())))
    });

    // Each task done once, with B's report.
    for id in ["held", "finished"] {
        let attempts = rows(
            &f,
            &format!(
                "SELECT n || ' ' || host || ' ' || outcome FROM attempts \
                 WHERE task_id = '{id}' ORDER BY n"
            ),
        );
        assert_eq!(attempts, ["1 h0 host lost", "2 h1 done"], "{id}");
        let body = rows(&f, &format!("SELECT body FROM tasks WHERE id = '{id}'")).join("\n");
        assert_eq!(
            body.matches("## nightshift report").count(),
            1,
            "{id}: {body}"
        );
        let (a_root, b_root) = (&f.hosts[0].root, &f.hosts[1].root);
        assert!(
            body.contains(&*b_root.to_string_lossy()) && !body.contains(&*a_root.to_string_lossy()),
            "{id}: B's report, not A's: {body}"
        );
    }
    let ledger = f.ledger();
    let lines = |prefix: &str| -> Vec<&str> {
        let mut l: Vec<&str> = ledger
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with(prefix))
            .collect();
        l.sort();
        l
    };
    assert_eq!(
        lines("held "),
        ["held 1 start", "held 2 done", "held 2 start"]
    );
    // A's agent on `finished` did finish, cut off; only B's run was filed (above).
    assert_eq!(
        lines("finished "),
        [
            "finished 1 done",
            "finished 1 start",
            "finished 2 done",
            "finished 2 start"
        ]
    );
    assert_eq!(lines("fresh"), ["fresh"]);
    assert!(
        !f.hosts[0].home.join("runs/fresh").exists(),
        "A started nothing while cut off"
    );
    assert!(
        !f.hosts[0].sessions().iter().any(|s| s == "ns-finished"),
        "{:?}",
        f.hosts[0].sessions()
    );
    // Every host shows the same fleet.
    assert_eq!(f.ls(0), f.ls(1));
}
