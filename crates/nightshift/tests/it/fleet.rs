//! A fleet on one PostgreSQL store: several daemons, each with its own home, tmux server
//! and repository, stand in for hosts. The database is a private cluster per test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nightshift_postgres::test_cluster::Cluster;

use crate::harness::toml_str;
use crate::harness::{Env, EnvBuilder, Task};

pub(crate) struct Fleet {
    pub(crate) hosts: Vec<Env>,
    /// The database, on its Unix socket.
    pub(crate) url: String,
    pub(crate) cluster: Cluster,
    /// A file every task's agent appends its id to: who ran what, how often.
    pub(crate) ledger: std::path::PathBuf,
    /// The repository every host works on (`repo:`): a local workdir would pin each task to
    /// the host that added it.
    pub(crate) remote: std::path::PathBuf,
    _scratch: tempfile::TempDir,
}

/// What `ls --json` shows of each task: `id → (state, host)`.
pub(crate) type Listing = BTreeMap<String, (String, Option<String>)>;

/// A bare repository with one commit, standing in for the team's remote.
fn bare_remote(dir: &std::path::Path) -> std::path::PathBuf {
    let seed = dir.join("seed");
    let remote = dir.join("remote.git");
    let git = |args: &[&str], cwd: &std::path::Path| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap_or_else(|e| panic!("git: {e}"));
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    std::fs::create_dir(&seed).unwrap_or_else(|e| panic!("{e}"));
    git(&["init", "-q", "-b", "main"], &seed);
    std::fs::write(seed.join("README"), "seed\n").unwrap_or_else(|e| panic!("{e}"));
    git(&["add", "README"], &seed);
    git(&["commit", "-q", "-m", "seed"], &seed);
    let (seed_s, remote_s) = (seed.to_string_lossy(), remote.to_string_lossy());
    git(&["clone", "-q", "--bare", &seed_s, &remote_s], dir);
    remote
}

/// `n` hosts named h0…, each with `labels(i)`, sharing one fresh database.
pub(crate) fn fleet(n: usize, labels: impl Fn(usize) -> &'static str) -> Fleet {
    fleet_with(n, labels, |_| String::new())
}

/// [`fleet`], with more config (`tail(i)`, raw TOML tables) for host `i`.
fn fleet_with(
    n: usize,
    labels: impl Fn(usize) -> &'static str,
    tail: impl Fn(usize) -> String,
) -> Fleet {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("a PostgreSQL cluster: {e}"));
    fleet_on(cluster, n, |i, _, url| {
        host(i, url)
            .config("labels", labels(i))
            .config_tail(&tail(i))
    })
}

/// Host `i`'s set-up: named h{i}, 4 agents, a 2 s rescan, the store at `url` with a 3 s
/// lease.
pub(crate) fn host(i: usize, url: &str) -> EnvBuilder {
    Env::builder()
        .config("host", &toml_str(&format!("h{i}")))
        .config("max_agents", "4")
        .config("rescan_interval", "\"2s\"")
        .config_tail(&format!(
            "[store]\nurl = {}\nlease = \"3s\"\n",
            toml_str(url)
        ))
}

/// `n` hosts on a fresh database in `cluster`, host `i` set up by `setup(i, &cluster, url)`
/// (usually [`host`] and more), where `url` is the database on its Unix socket.
pub(crate) fn fleet_on(
    cluster: Cluster,
    n: usize,
    setup: impl Fn(usize, &Cluster, &str) -> EnvBuilder,
) -> Fleet {
    let url = cluster
        .database()
        .unwrap_or_else(|e| panic!("a database: {e}"));
    let hosts: Vec<Env> = (0..n).map(|i| setup(i, &cluster, &url).build()).collect();
    hosts[0].run(&["store", "migrate"]).success();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = scratch.path().join("ledger");
    let remote = bare_remote(scratch.path());
    Fleet {
        hosts,
        url,
        cluster,
        ledger,
        remote,
        _scratch: scratch,
    }
}

impl Fleet {
    pub(crate) fn add(&self, from: usize, id: &str, task: &Task) {
        self.hosts[from]
            .cmd(&["add", "-", "--id", id])
            .stdin(task.text())
            .run()
            .success();
    }

    /// A task that notes its run in the ledger, works for `work`, and signals done.
    pub(crate) fn ledger_task(&self, id: &str, work: &str) -> Task {
        let append = format!("@append {} {id}", self.ledger.display());
        let sleep = format!("@sleep {work}");
        Task::script([append.as_str(), sleep.as_str(), "@done"])
            .front(&format!("repo: {}", self.remote.display()))
    }

    pub(crate) fn ledger(&self) -> Vec<String> {
        std::fs::read_to_string(&self.ledger)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `(id → (state, host))` as `ls --json` on host `i` shows it.
    pub(crate) fn ls(&self, i: usize) -> Listing {
        let json = self.hosts[i]
            .run(&["ls", "--json", "--all"])
            .success()
            .json();
        json["tasks"]
            .as_array()
            .map(|tasks| {
                tasks
                    .iter()
                    .map(|t| {
                        let id = t["id"].as_str().unwrap_or_default().to_string();
                        let state = t["state"].as_str().unwrap_or_default().to_string();
                        let host = t["host"].as_str().map(str::to_string);
                        (id, (state, host))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (up to `limit`) until `cond` holds for what host `i` lists.
    pub(crate) fn wait_ls(
        &mut self,
        i: usize,
        what: &str,
        limit: Duration,
        cond: impl Fn(&Listing) -> bool,
    ) {
        let start = Instant::now();
        loop {
            if cond(&self.ls(i)) {
                return;
            }
            if start.elapsed() > limit {
                let logs: Vec<String> = self.hosts.iter().map(Env::daemon_log).collect();
                panic!(
                    "timed out waiting until {what}\nls: {:?}\n{}\ndb log:\n{}",
                    self.ls(i),
                    logs.join("\n=====\n"),
                    self.cluster.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Fleet {
    /// Waits until host `i`'s daemon log has `line` in it.
    fn wait_until_logged(&mut self, i: usize, line: &str) {
        let line = line.to_string();
        self.hosts[i].wait_until(&format!("the log says {line:?}"), |env| {
            env.daemon_log().contains(&line)
        });
    }
}

pub(crate) fn count(tasks: &Listing, state: &str) -> usize {
    tasks.values().filter(|(s, _)| s == state).count()
}

#[test]
fn three_hosts_drain_sixty_tasks_each_exactly_once() {
    let mut f = fleet(3, |_| "[]");
    let ids: Vec<String> = (0..60).map(|n| format!("t{n:02}")).collect();
    for id in &ids {
        let task = f.ledger_task(id, "300ms");
        f.add(0, id, &task);
    }
    for h in &mut f.hosts {
        h.start_daemon();
    }
    f.wait_ls(1, "all 60 are done", Duration::from_secs(240), |t| {
        count(t, "done") == 60
    });
    let mut ledger = f.ledger();
    ledger.sort();
    assert_eq!(ledger, ids, "each task ran exactly once");
    // Every host sees the same fleet, with who ran what.
    let seen = f.ls(0);
    assert_eq!(seen, f.ls(1));
    assert_eq!(seen, f.ls(2));
    let hosts: BTreeSet<&str> = seen.values().filter_map(|(_, h)| h.as_deref()).collect();
    assert!(
        hosts.len() >= 2 && hosts.iter().all(|h| ["h0", "h1", "h2"].contains(h)),
        "the work is shared: {hosts:?}"
    );
    assert!(
        seen.values().all(|(_, h)| h.is_some()),
        "every finished task names its host"
    );
}

#[test]
fn a_killed_host_s_task_is_taken_over_after_its_lease_and_the_rest_are_untouched() {
    let mut f = fleet(2, |i| if i == 0 { "[\"a\"]" } else { "[\"b\"]" });
    // Only h0 runs at first, so it takes the task; h1's own task needs its label.
    let orphan = f.ledger_task("orphan", "12s").front("max_attempts: 2");
    f.add(0, "orphan", &orphan);
    // With one attempt only, a lost host's task fails with why.
    let once = f.ledger_task("once", "12s");
    f.add(0, "once", &once);
    f.hosts[0].start_daemon();
    f.wait_ls(0, "h0 runs the task", Duration::from_secs(30), |t| {
        t.get("orphan") == Some(&("running".into(), Some("h0".into())))
            && t.get("once") == Some(&("running".into(), Some("h0".into())))
    });
    // Their agents have started (claimed is not yet started).
    let ledger = f.ledger.clone();
    f.hosts[0].wait_until("both agents on h0 started", |_| {
        let text = std::fs::read_to_string(&ledger).unwrap_or_default();
        text.lines().any(|l| l == "orphan") && text.lines().any(|l| l == "once")
    });
    let own = f.ledger_task("own", "8s").front("requires: [b]");
    f.add(1, "own", &own);
    f.hosts[1].start_daemon();
    f.wait_ls(1, "h1 runs its own task", Duration::from_secs(30), |t| {
        t.get("own").is_some_and(|(s, _)| s == "running")
    });
    // The host dies: its daemon and its agents.
    f.hosts[0].kill9_daemon();
    f.hosts[0].tmux(&["kill-server"]);
    f.wait_ls(
        1,
        "h1 took the orphan over and finished it",
        Duration::from_secs(90),
        |t| {
            t.get("orphan") == Some(&("done".into(), Some("h1".into())))
                && t.get("own").is_some_and(|(s, _)| s == "done")
        },
    );
    let ledger = f.ledger();
    let runs = |id: &str| ledger.iter().filter(|l| *l == id).count();
    assert_eq!(
        runs("orphan"),
        2,
        "one run on the lost host, one after: {ledger:?}"
    );
    assert_eq!(runs("own"), 1, "the survivor's task ran once: {ledger:?}");
    assert_eq!(runs("once"), 1, "{ledger:?}");
    let once = f.hosts[1].run(&["show", "once", "--json"]).success().json();
    assert_eq!(once["state"].as_str(), Some("failed"), "{once}");
    let filed = f
        .cluster
        .query(&f.url, "SELECT body FROM tasks WHERE id = 'once'")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(filed.contains("host lost: h0"), "{filed}");
    let lost = f
        .cluster
        .query(
            &f.url,
            "SELECT outcome FROM attempts WHERE task_id = 'orphan' ORDER BY n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lost.lines().collect::<Vec<_>>(), ["host lost", "done"]);
    let show = f.hosts[1]
        .run(&["show", "orphan", "--json"])
        .success()
        .json();
    assert_eq!(show["attempts"].as_u64(), Some(2), "{show}");
    let ls = f.hosts[1].run(&["ls"]);
    let text = ls.success().stdout.clone();
    assert!(text.contains("h0") && text.contains("LOST"), "{text}");
}

#[test]
fn a_database_outage_holds_new_work_and_loses_nothing() {
    let mut f = fleet(1, |_| "[]");
    let long = f.ledger_task("long", "8s");
    f.add(0, "long", &long);
    f.hosts[0].start_daemon();
    f.wait_ls(0, "the task runs", Duration::from_secs(30), |t| {
        t.get("long").is_some_and(|(s, _)| s == "running")
    });
    f.cluster
        .stop()
        .unwrap_or_else(|e| panic!("stopping the database: {e}"));
    let down = f.hosts[0].cmd(&["ls"]).run();
    assert_ne!(down.code(), Some(0));
    let said = down.stderr.clone();
    assert!(said.contains("task store"), "{said}");
    // The agent goes on while the database is down (30 s), and finishes meanwhile.
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        f.hosts[0].daemon_try_wait().is_none(),
        "the daemon is still up"
    );
    assert!(
        f.hosts[0].run_dir("long", 1).join("done.json").is_file(),
        "the agent finished while the database was down"
    );
    assert!(
        f.hosts[0].run_dir("long", 1).join("report.json").is_file(),
        "its report is kept on this host until it can be filed"
    );
    f.cluster
        .start_again()
        .unwrap_or_else(|e| panic!("starting the database: {e}"));
    f.wait_ls(
        0,
        "the finished task is filed",
        Duration::from_secs(60),
        |t| t.get("long").is_some_and(|(s, _)| s == "done"),
    );
    assert_eq!(f.ledger(), ["long"]);
    // New work starts again.
    let next = f.ledger_task("next", "100ms");
    f.add(0, "next", &next);
    f.wait_ls(0, "new work runs again", Duration::from_secs(60), |t| {
        t.get("next").is_some_and(|(s, _)| s == "done")
    });
}

#[test]
fn a_person_on_one_host_sees_answers_and_stops_an_agent_on_another() {
    let mut f = fleet(2, |i| if i == 0 { "[\"a\"]" } else { "[\"b\"]" });
    let repo = format!("repo: {}", f.remote.display());
    let asks = Task::script(["@ask Which database should I use? (y/n)", "@done"])
        .front("requires: [b]")
        .front(&repo);
    f.add(0, "asks", &asks);
    let hangs = Task::script(["@hang"]).front("requires: [b]").front(&repo);
    f.add(0, "hangs", &hangs);
    for h in &mut f.hosts {
        h.start_daemon();
    }
    // The flag raised on h1 shows on h0.
    let start = Instant::now();
    let flagged = loop {
        let json = f.hosts[0].run(&["attention", "--json"]).success().json();
        let flagged = json
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["id"] == "asks" && t["host"] == "h1"));
        if flagged || start.elapsed() > Duration::from_secs(60) {
            break flagged;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(flagged, "{}", f.hosts[1].daemon_log());
    let listed = f.hosts[0].run(&["attention"]);
    let listed = listed.success().stdout.clone();
    assert!(listed.contains("ssh h1 -t tmux -S"), "{listed}");
    let attach = f.hosts[0].run(&["attach", "asks"]);
    let attach = attach.success().stdout.clone();
    let socket = f.hosts[1].tmux_socket();
    assert!(
        attach.contains(&format!("ssh h1 -t tmux -S {} attach -t", socket.display())),
        "{attach}"
    );
    // The answer typed on h0 reaches the agent on h1, and it finishes.
    let sent = f.hosts[0].run(&["send", "asks", "postgres"]);
    assert!(sent.success().stdout.contains("h1"), "{sent:?}");
    f.wait_ls(
        0,
        "the answered task is done",
        Duration::from_secs(60),
        |t| t.get("asks").is_some_and(|(s, _)| s == "done"),
    );
    assert!(
        f.hosts[1]
            .transcript("asks", 1)
            .contains("answer: postgres"),
        "{}",
        f.hosts[1].transcript("asks", 1)
    );
    // A cancel on h0 stops the agent on h1.
    f.hosts[0].run(&["cancel", "hangs"]).success();
    f.wait_ls(
        0,
        "the cancelled task failed",
        Duration::from_secs(60),
        |t| t.get("hangs").is_some_and(|(s, _)| s == "failed"),
    );
}

#[test]
fn a_task_one_host_cannot_run_waits_for_a_host_that_can() {
    let special = "[agents.special]\n\
                   command = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\n\
                   preamble = false\n";
    let mut f = fleet_with(
        2,
        |_| "[]",
        |i| {
            if i == 1 {
                special.into()
            } else {
                String::new()
            }
        },
    );
    f.hosts[0].start_daemon();
    // Only h1 knows the agent: added there, while only h0 runs.
    let task = f.ledger_task("picky", "100ms").front("agent: special");
    f.add(1, "picky", &task);
    f.wait_until_logged(0, "not runnable on this host");
    assert_eq!(
        f.ls(0).get("picky").map(|(s, _)| s.as_str()),
        Some("queued"),
        "h0 left it for another host"
    );
    f.hosts[1].start_daemon();
    f.wait_ls(0, "h1 ran it", Duration::from_secs(60), |t| {
        t.get("picky") == Some(&("done".into(), Some("h1".into())))
    });
}
