//! `bench --quick` at smoke size: the default settings (no grace_period or settle of its
//! own), agents that signal done with `nightshift done`, and every figure of issue 16's
//! table in the summary. Nothing about the timings is asserted (figures are for a person).

use std::time::Duration;

use crate::harness::{self, Env};

#[test]
fn bench_quick_runs_with_default_settings_and_prints_every_figure() {
    let env = Env::new();
    // Everything the bench makes goes under the test's own folder; an empty pueue folder
    // makes pueue absent whatever the machine has.
    let tmp = env.path("tmp");
    let no_pueue = env.path("no-pueue");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&no_pueue).unwrap();
    let args = [
        "bench",
        "--quick",
        "--tasks",
        "6",
        "--samples",
        "2",
        "--keep",
    ];
    let out = env
        .cmd(&args)
        .env("TMPDIR", &tmp)
        .env("NIGHTSHIFT_BENCH_PUEUE", &no_pueue)
        .timeout(Duration::from_secs(300))
        .try_run()
        .expect("bench --quick did not finish within 300 s");
    let shown = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "the bench failed\n{shown}");
    let s = &out.stdout;
    assert!(!s.contains("FAILED"), "{shown}");

    // Three drains (fresh daemon, warm, a worktree each), every task done.
    let drained = s
        .lines()
        .filter(|l| l.trim_start().starts_with("6 done in"))
        .count();
    assert_eq!(drained, 3, "{shown}");
    for line in s
        .lines()
        .filter(|l| l.contains("processes created per task:"))
    {
        let per = harness::number_after(line, "processes created per task:");
        assert!(
            per >= 2,
            "a task starts at least tmux and the agent: {line}\n{shown}"
        );
    }
    assert!(
        s.contains("bare tmux loop: 6 x `tmux new-session -d"),
        "{shown}"
    );
    assert!(s.contains("cargo install pueue --locked"), "{shown}");
    for row in [
        "| drain, plain folder, 4 slots |",
        "| drain with a worktree per task |",
        "| task start, 100k-file repository, median |",
        "| daemon CPU, 16 agents x 100 lines/s |",
        "| `ls`, 10k finished tasks |",
        "| `ls`, 100k finished tasks |",
        "| pickup median, plain folder |",
        "| idle CPU |",
        "| daemon RSS with 16 agents |",
    ] {
        assert!(s.contains(row), "no summary row `{row}`\n{shown}");
    }

    // The kept home: the defaults, and each task finished by `nightshift done`.
    let kept = s
        .lines()
        .find_map(|l| l.strip_prefix("Kept ")?.split(" (remove").next())
        .unwrap_or_else(|| panic!("no `Kept` line\n{shown}"));
    let home = std::path::Path::new(kept).join("home");
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    for key in ["grace_period", "settle"] {
        assert!(!config.contains(key), "the bench sets {key}:\n{config}");
    }
    let mut finished = 0;
    for entry in std::fs::read_dir(home.join("done")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("cold-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("the agent ran `nightshift done`"),
            "{name} was not finished by `nightshift done`:\n{text}"
        );
        finished += 1;
    }
    assert_eq!(finished, 6, "{shown}");
}
