//! `nightshift clean`: remove the worktrees of finished tasks and free their disk space.
//!
//! A finished (done or failed) task's worktree is expendable: everything the task committed
//! lives on in its branch `nightshift/<id>`, so the worktree is removed with `--force`
//! (uncommitted leftovers go with it). The branch itself is deleted only once it is merged
//! into the repository's HEAD; an unmerged branch is the task's work and is kept. Worktrees
//! of tasks that are queued or running are never touched; those of tasks that no longer
//! exist are removed like finished ones.
//!
//! The branches of finished tasks whose worktrees are already gone (removed by the daemon
//! after the task, or by hand) are found through the tasks' spawn records and deleted on the
//! same terms: merged, and checked out nowhere.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::home::{Home, TaskState};
use crate::out::outln;
use crate::worktree;

use super::exit;

#[path = "clean_pools.rs"]
mod pools;
use pools::{clean_pools, print_pool};

#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Only report what would be removed
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of lines
    #[arg(long)]
    pub json: bool,
    /// Also remove worktrees with uncommitted changes (they are kept otherwise)
    #[arg(long)]
    pub force: bool,
    /// Also remove the warm worktree pools (a running daemon makes a repository's pool
    /// again at its next task start; `worktree_pool = 0` keeps none)
    #[arg(long)]
    pub pools: bool,
}

/// A task worktree folder under `<home>/worktrees/<repo-key>/<task id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    path: PathBuf,
    task_id: String,
}

/// What happened (or would happen) to one worktree.
#[derive(Debug, Serialize)]
struct Outcome {
    path: PathBuf,
    task: String,
    /// `None`: the task no longer exists.
    state: Option<TaskState>,
    bytes: u64,
    removed: bool,
    branch: String,
    branch_exists: bool,
    branch_merged: bool,
    branch_deleted: bool,
    error: Option<String>,
}

/// What happened (or would happen) to the branch of a task whose worktree was gone.
#[derive(Debug, Serialize)]
struct BranchOutcome {
    repo: PathBuf,
    branch: String,
    task: String,
    merged: bool,
    /// Checked out in some worktree: in use, kept.
    in_use: bool,
    deleted: bool,
    error: Option<String>,
}

pub(super) fn run(home: &Home, args: CleanArgs) -> anyhow::Result<i32> {
    let found = find_worktrees(&home.worktrees_dir())?;
    // An error here stops the command: a task whose state is unknown must not count as gone.
    let states = crate::tasks::states(home)?;
    let selected = select(&found, |id| states.get(id).copied());
    // Listed before any worktree is removed: those branches are dealt with below.
    let leftovers = leftover_branches(home, |id| states.get(id).copied());
    let rt = super::runtime()?;
    let outcomes = rt.block_on(clean_all(&selected, args.dry_run, args.force));
    let branches = rt.block_on(clean_branches(&leftovers, args.dry_run));
    let pools = if args.pools {
        rt.block_on(clean_pools(&home.worktrees_dir(), args.dry_run))
    } else {
        Vec::new()
    };
    let freed: u64 = outcomes
        .iter()
        .filter(|o| o.removed || (args.dry_run && o.error.is_none()))
        .map(|o| o.bytes)
        .chain(
            pools
                .iter()
                .filter(|p| p.removed || (args.dry_run && p.error.is_none()))
                .map(|p| p.bytes),
        )
        .sum();
    let failed = outcomes.iter().any(|o| o.error.is_some())
        || branches.iter().any(|b| b.error.is_some())
        || pools.iter().any(|p| p.error.is_some());
    if args.json {
        let out = serde_json::json!({
            "dry_run": args.dry_run,
            "worktrees": outcomes,
            "branches": branches,
            "pools": pools,
            "freed_bytes": freed,
            "freed": format_size(freed),
        });
        outln!("{}", crate::term_text::to_json(&out)?)?;
    } else {
        for outcome in &outcomes {
            print_outcome(outcome, args.dry_run)?;
        }
        for b in &branches {
            print_branch(b, args.dry_run)?;
        }
        for p in &pools {
            print_pool(p, args.dry_run)?;
        }
        let verb = if args.dry_run { "would free" } else { "freed" };
        outln!("{verb} {}", format_size(freed))?;
    }
    Ok(if failed { exit::FAILURE } else { exit::SUCCESS })
}

fn print_outcome(o: &Outcome, dry_run: bool) -> std::io::Result<()> {
    let path = o.path.display();
    let size = format_size(o.bytes);
    if o.removed {
        outln!("removed {path} ({size})")?;
    } else if dry_run && o.error.is_none() {
        outln!("would remove {path} ({size})")?;
    }
    if let Some(error) = &o.error {
        eprintln!("cannot clean {path}: {error}");
    }
    if !o.branch_exists || (o.error.is_some() && !o.removed) {
        return Ok(());
    }
    match (o.branch_merged, o.branch_deleted, dry_run) {
        (true, _, true) => outln!("would delete branch {} (merged)", o.branch),
        (true, true, false) => outln!("deleted branch {} (merged)", o.branch),
        (true, false, false) => Ok(()),
        (false, _, _) => outln!("kept branch {} (not merged)", o.branch),
    }
}

fn print_branch(b: &BranchOutcome, dry_run: bool) -> std::io::Result<()> {
    if let Some(error) = &b.error {
        eprintln!("cannot delete branch {}: {error}", b.branch);
    } else if b.deleted {
        outln!("deleted branch {} (merged)", b.branch)?;
    } else if b.merged && !b.in_use && dry_run {
        outln!("would delete branch {} (merged)", b.branch)?;
    }
    Ok(())
}

/// The `(repository, branch, task)` of every finished (or gone) task of this home whose
/// spawn records name a worktree that no longer exists.
fn leftover_branches(
    home: &Home,
    state_of: impl Fn(&str) -> Option<TaskState>,
) -> Vec<(PathBuf, String, String)> {
    let mut out: Vec<(PathBuf, String, String)> = Vec::new();
    let Ok(tasks) = fs::read_dir(home.runs_dir()) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(id) = task.file_name().to_str().map(String::from) else {
            continue;
        };
        if !expendable(state_of(&id)) {
            continue;
        }
        for attempt in crate::run::attempts(&task.path()) {
            let spawn: Option<crate::run::SpawnRecord> =
                crate::run::RunDir::new(task.path().join(attempt.to_string()))
                    .read(crate::run::SPAWN)
                    .ok()
                    .flatten();
            let Some(wt) = spawn.and_then(|s| s.worktree) else {
                continue;
            };
            let entry = (wt.repo, wt.branch, id.clone());
            if !wt.path.exists() && !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out.sort();
    out
}

/// Deletes each branch that still exists, is merged into its repository's HEAD and is
/// checked out nowhere. Unmerged branches are the tasks' work: they stay.
async fn clean_branches(
    leftovers: &[(PathBuf, String, String)],
    dry_run: bool,
) -> Vec<BranchOutcome> {
    let mut outcomes = Vec::new();
    for (repo, branch, task) in leftovers {
        if !worktree::branch_exists(repo, branch).await {
            continue;
        }
        let mut b = BranchOutcome {
            repo: repo.clone(),
            branch: branch.clone(),
            task: task.clone(),
            merged: worktree::branch_merged(repo, branch).await,
            in_use: worktree::branch_checked_out(repo, branch).await,
            deleted: false,
            error: None,
        };
        if b.merged && !b.in_use && !dry_run {
            match worktree::delete_branch(repo, branch).await {
                Ok(()) => b.deleted = true,
                Err(e) => b.error = Some(e.to_string()),
            }
        }
        outcomes.push(b);
    }
    outcomes
}

/// The task worktree folders under `dir`: `<repo-key>/<task id>`, real directories only
/// (dot-files hold base notes).
fn find_worktrees(dir: &Path) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for repo_dir in subdirectories(dir)? {
        for (task_id, path) in subdirectories(&repo_dir)?
            .into_iter()
            .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        {
            found.push(Found { path, task_id });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn subdirectories(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        // file_type does not follow symbolic links: a link is never walked into.
        if !hidden && entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Whether a task in this state (`None`: gone) can lose its worktree.
fn expendable(state: Option<TaskState>) -> bool {
    match state {
        None | Some(TaskState::Done) | Some(TaskState::Failed) => true,
        Some(TaskState::Queued) | Some(TaskState::Running) => false,
    }
}

/// The worktrees to clean, with their task's state.
fn select(
    found: &[Found],
    state_of: impl Fn(&str) -> Option<TaskState>,
) -> Vec<(Found, Option<TaskState>)> {
    found
        .iter()
        .map(|f| (f.clone(), state_of(&f.task_id)))
        .filter(|(_, state)| expendable(*state))
        .collect()
}

async fn clean_all(
    selected: &[(Found, Option<TaskState>)],
    dry_run: bool,
    force: bool,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(selected.len());
    for (found, state) in selected {
        outcomes.push(clean_one(found, *state, dry_run, force).await);
    }
    outcomes
}

async fn clean_one(found: &Found, state: Option<TaskState>, dry_run: bool, force: bool) -> Outcome {
    let mut outcome = Outcome {
        path: found.path.clone(),
        task: found.task_id.clone(),
        state,
        bytes: disk_usage(&found.path),
        removed: false,
        branch: worktree::branch_name(&found.task_id),
        branch_exists: false,
        branch_merged: false,
        branch_deleted: false,
        error: None,
    };
    // Found before removal: afterwards nothing leads from the folder to its repository.
    let repo = match worktree::main_repo(&found.path).await {
        Ok(repo) => repo,
        Err(e) => {
            outcome.error = Some(format!("{e}; left alone"));
            return outcome;
        }
    };
    // Uncommitted work is never thrown away unasked.
    if !force && worktree::is_dirty(&found.path).await.unwrap_or(true) {
        outcome.error = Some("it has uncommitted changes; kept (--force removes it)".into());
        return outcome;
    }
    if !dry_run {
        if let Err(e) = worktree::remove(&found.path, true).await {
            outcome.error = Some(e.to_string());
            return outcome;
        }
        outcome.removed = true;
        if let Some(parent) = found.path.parent() {
            // Only succeeds once the repository has no task worktrees left.
            let _ = fs::remove_dir(parent);
        }
    }
    outcome.branch_exists = worktree::branch_exists(&repo, &outcome.branch).await;
    outcome.branch_merged =
        outcome.branch_exists && worktree::branch_merged(&repo, &outcome.branch).await;
    if outcome.branch_merged && !dry_run {
        match worktree::delete_branch(&repo, &outcome.branch).await {
            Ok(()) => outcome.branch_deleted = true,
            Err(e) => outcome.error = Some(e.to_string()),
        }
    }
    outcome
}

/// Bytes in the files under `path`, without following symbolic links (a link counts its
/// own size). Unreadable parts count as nothing.
fn disk_usage(path: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![path.to_path_buf()];
    while let Some(p) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                pending.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else {
            total = total.saturating_add(meta.len());
        }
    }
    total
}

/// `512 B`, `12.3 MB`: decimal units, one decimal.
fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    // Compare the rounded value, so 999,960 bytes reads `1.0 MB`, not `1000.0 kB`.
    while (value * 10.0).round() >= 10_000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(999), "999 B");
        assert_eq!(format_size(1000), "1.0 kB");
        assert_eq!(format_size(12_345_678), "12.3 MB");
        assert_eq!(format_size(45_600_000_000), "45.6 GB");
        assert_eq!(format_size(999_960), "1.0 MB");
        assert_eq!(format_size(999_940), "999.9 kB");
        assert_eq!(format_size(u64::MAX), "18446.7 PB");
    }

    fn found(id: &str) -> Found {
        Found {
            path: PathBuf::from(format!("/h/worktrees/app-0000/{id}")),
            task_id: id.to_string(),
        }
    }

    #[test]
    fn selects_finished_and_gone_tasks_only() {
        let all = [
            found("queued"),
            found("running"),
            found("done"),
            found("failed"),
            found("gone"),
        ];
        let state_of = |id: &str| match id {
            "queued" => Some(TaskState::Queued),
            "running" => Some(TaskState::Running),
            "done" => Some(TaskState::Done),
            "failed" => Some(TaskState::Failed),
            _ => None,
        };
        let picked: Vec<(String, Option<TaskState>)> = select(&all, state_of)
            .into_iter()
            .map(|(f, s)| (f.task_id, s))
            .collect();
        assert_eq!(
            picked,
            vec![
                ("done".to_string(), Some(TaskState::Done)),
                ("failed".to_string(), Some(TaskState::Failed)),
                ("gone".to_string(), None),
            ]
        );
    }

    #[test]
    fn finds_task_folders_and_measures_them_without_following_links() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("worktrees");
        assert_eq!(find_worktrees(&root).expect("missing is empty"), vec![]);
        let t1 = root.join("app-12345678/t1");
        fs::create_dir_all(t1.join("src")).expect("mkdir");
        fs::create_dir_all(root.join("lib-87654321/t2")).expect("mkdir");
        fs::write(root.join("app-12345678/.t1.base"), "abc\n").expect("note");
        fs::write(root.join("stray-file"), "x").expect("write");
        let big = tmp.path().join("big");
        fs::write(&big, vec![0u8; 100_000]).expect("write");
        std::os::unix::fs::symlink(tmp.path(), root.join("app-12345678/linked")).expect("link");
        fs::write(t1.join("a"), [0u8; 10]).expect("write");
        fs::write(t1.join("src/b"), [0u8; 20]).expect("write");
        std::os::unix::fs::symlink(&big, t1.join("src/link")).expect("link");

        let found = find_worktrees(&root).expect("listed");
        let ids: Vec<&str> = found.iter().map(|f| f.task_id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(found[0].path, t1);
        let link_len = big.as_os_str().len() as u64;
        assert_eq!(disk_usage(&t1), 30 + link_len);
    }

    fn git(dir: &Path, args: &[&str]) {
        crate::git::test_git(dir, args);
    }

    /// Against real worktrees: a done task's worktree goes and its merged branch with it,
    /// a failed task's unmerged branch stays, a queued task's worktree is untouched, and a
    /// dry run changes nothing.
    fn selected_of(root: &Path, home: &Home) -> Vec<(Found, Option<TaskState>)> {
        let found = find_worktrees(root).expect("listed");
        let states = crate::tasks::states(home).expect("states");
        select(&found, |id| states.get(id).copied())
    }

    #[tokio::test]
    async fn cleans_finished_worktrees_only() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = tmp.path().join("app");
        fs::create_dir(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "T"]);
        git(&repo, &["config", "user.email", "t@example.com"]);
        fs::write(repo.join("f"), "f\n").expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "one"]);
        let home = Home::at(tmp.path().join("home"));
        for (state, id) in [
            (TaskState::Done, "merged"),
            (TaskState::Failed, "unmerged"),
            (TaskState::Queued, "waiting"),
        ] {
            let file = home.task_file(state, id);
            fs::create_dir_all(file.parent().expect("state dir")).expect("mkdir");
            fs::write(&file, format!("# {id}\n")).expect("task");
        }
        let root = home.worktrees_dir();
        let merged = worktree::prepare(&repo, &root, "merged", None)
            .await
            .expect("wt");
        let unmerged = worktree::prepare(&repo, &root, "unmerged", None)
            .await
            .expect("wt");
        fs::write(unmerged.path.join("work"), "w\n").expect("write");
        worktree::commit_all(&unmerged.path, "work")
            .await
            .expect("commit");
        let waiting = worktree::prepare(&repo, &root, "waiting", None)
            .await
            .expect("wt");
        let gone = worktree::prepare(&repo, &root, "gone", None)
            .await
            .expect("wt");
        // A finished task's worktree with uncommitted work is kept, unless forced.
        fs::write(gone.path.join("draft"), "unsaved\n").expect("write");
        let kept = clean_all(&selected_of(&root, &home), true, false).await;
        let gone_kept = kept.iter().find(|o| o.task == "gone").expect("gone");
        assert!(
            !gone_kept.removed
                && gone_kept
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("uncommitted"))
        );
        assert!(gone.path.join("draft").exists());

        let found = find_worktrees(&root).expect("listed");
        assert_eq!(found.len(), 4);
        let states = crate::tasks::states(&home).expect("states");
        let selected = select(&found, |id| states.get(id).copied());
        assert_eq!(selected.len(), 3);

        let dry = clean_all(&selected, true, true).await;
        assert!(
            dry.iter().all(|o| !o.removed && o.error.is_none()),
            "{dry:?}"
        );
        assert!(merged.path.is_dir() && gone.path.is_dir());

        let outcomes = clean_all(&selected, false, true).await;
        let by_task = |id: &str| {
            outcomes
                .iter()
                .find(|o| o.task == id)
                .expect("outcome for task")
        };
        assert!(outcomes.iter().all(|o| o.error.is_none()), "{outcomes:?}");
        assert!(by_task("merged").removed && by_task("merged").branch_deleted);
        assert!(by_task("merged").bytes > 0);
        assert!(by_task("unmerged").removed && !by_task("unmerged").branch_deleted);
        assert!(!by_task("unmerged").branch_merged);
        assert!(by_task("gone").removed && by_task("gone").state.is_none());
        assert!(!merged.path.exists() && !unmerged.path.exists() && !gone.path.exists());
        assert!(waiting.path.join("f").is_file(), "queued task untouched");
        assert!(!worktree::branch_exists(&repo, "nightshift/merged").await);
        assert!(worktree::branch_exists(&repo, "nightshift/unmerged").await);
        assert!(worktree::branch_exists(&repo, "nightshift/waiting").await);
    }
}
