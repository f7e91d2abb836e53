//! The warm pool: detached worktrees checked out ahead of time, so a task's start is a
//! branch creation and a rename instead of a full checkout.
//!
//! Each repository a task ran in gets `<worktrees>/<repo-key>/.pool/` (the layout and the
//! decisions are in [`nightshift_core::worktree_pool`]). A start claims a ready entry: the
//! branch `nightshift/<id>` is made at the base and the entry's HEAD pointed at it (or, when
//! the base moved since the entry was filled, `git checkout -B`, which writes only the
//! files that differ), then `git worktree move` puts it at the task's path. A claim does
//! not run a `post-checkout` hook unless it checks out. Anything that
//! goes wrong on the way throws the entry away and falls back to today's `git worktree
//! add`. After every start a background job tops the pool up, one job per repository at a
//! time; the first one a daemon runs for a pool also throws away what a killed daemon left.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use nightshift_core::worktree_pool::{
    self as plan, CLAIMED, ClaimBy, Listed, POOL_DIR, READY, REPO_FILE,
};

use super::create::{Place, locate, prepare_at, resolve_commit, valid_id};
use super::remove::{branch_exists, forget_base_note};
use super::{
    Worktree, WorktreeError, base_note, branch_name, checkout_workers, common_dir, git, git_status,
    io_err, own_dir, real_dir, repo_lock,
};

/// A task's worktree, and whether it was claimed from the pool.
#[derive(Debug)]
pub struct Prepared {
    pub worktree: Worktree,
    pub warm: bool,
}

/// One repository's pool.
#[derive(Debug, Clone)]
struct Pool {
    repo: PathBuf,
    common: PathBuf,
    /// `<worktrees>/<repo-key>/.pool` (canonical parent).
    dir: PathBuf,
}

impl Pool {
    fn of(place: &Place) -> Pool {
        Pool {
            repo: place.repo.clone(),
            common: place.common.clone(),
            dir: place.key_dir.join(POOL_DIR),
        }
    }

    fn marker(&self, entry: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{entry}{kind}"))
    }
}

/// [`super::prepare`], from the repository's warm pool when it has a worktree ready and the
/// task has neither a worktree nor a branch yet; then the pool (of `size` entries; 0: none)
/// is topped up in the background. A failed claim falls back to `git worktree add`.
pub async fn prepare_pooled(
    workdir: &Path,
    root: &Path,
    task_id: &str,
    base: Option<&str>,
    size: usize,
) -> Result<Prepared, WorktreeError> {
    valid_id(task_id)?;
    let place = locate(workdir, root).await?;
    let pool = Pool::of(&place);
    if size > 0 {
        match claim(&place, &pool, task_id, base).await {
            Ok(Some(worktree)) => {
                spawn_refill(pool, size);
                return Ok(Prepared {
                    worktree,
                    warm: true,
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(task = task_id, "cannot use a warm worktree: {e}"),
        }
    }
    release_branch(&place, &pool, task_id).await;
    let made = prepare_at(&place, task_id, base).await;
    // Learns the repository (or empties its pool when the size is now 0).
    if size > 0 || pool.dir.is_dir() {
        spawn_refill(pool, size);
    }
    Ok(Prepared {
        worktree: made?,
        warm: false,
    })
}

/// Takes a ready entry and makes it the task's worktree. `None`: nothing to claim, or the
/// task's start is not a first one (today's path reuses what it has).
async fn claim(
    place: &Place,
    pool: &Pool,
    task_id: &str,
    base: Option<&str>,
) -> Result<Option<Worktree>, WorktreeError> {
    let path = place.key_dir.join(task_id);
    let branch = branch_name(task_id);
    if fs::symlink_metadata(&path).is_ok() || branch_exists(&place.repo, &branch).await {
        return Ok(None);
    }
    // A base that names no commit: today's path says so.
    let Ok(target) = resolve_commit(&place.repo, base.unwrap_or("HEAD")).await else {
        return Ok(None);
    };
    let Some(entry) = take(pool) else {
        return Ok(None);
    };
    let entry_path = pool.dir.join(&entry);
    let entry_base = fs::read_to_string(pool.marker(&entry, CLAIMED)).ok();
    let branch_ref = format!("refs/heads/{branch}");
    let made = async {
        // Without its `.git` file git would look further up, maybe into another repository.
        if !entry_path.join(".git").is_file() {
            return Err(WorktreeError::NotARepository {
                path: entry_path.clone(),
            });
        }
        // On the branch before the move: a daemon killed in between leaves a pool entry
        // (thrown away at the next start) and an unused branch at the base, which a retry
        // takes up; never a task path on a detached HEAD. `checkout -B` reads every
        // worktree's records (is the branch checked out elsewhere?), which fails while
        // another `worktree add` is half done: the claim takes the repository's turn.
        let _turn = repo_lock(&pool.common).await;
        match plan::claim_by(entry_base.as_deref(), &target) {
            ClaimBy::Pointer => {
                // Created only if it does not exist yet (the all-zero old value).
                let zero = "0".repeat(target.len());
                git(&entry_path, ["update-ref", &branch_ref, &target, &zero]).await?;
                git(&entry_path, ["symbolic-ref", "HEAD", &branch_ref]).await?;
            }
            ClaimBy::Checkout => {
                let workers = checkout_workers(&place.repo).await;
                let checkout = [
                    OsStr::new("checkout"),
                    OsStr::new("-q"),
                    OsStr::new("-B"),
                    OsStr::new(&branch),
                    OsStr::new(&target),
                ];
                git(&entry_path, workers.iter().map(OsStr::new).chain(checkout)).await?;
            }
        }
        if let Some(note) = base_note(&path) {
            fs::write(&note, format!("{target}\n")).map_err(io_err(&note))?;
        }
        let moved = [
            OsStr::new("worktree"),
            OsStr::new("move"),
            entry_path.as_os_str(),
            path.as_os_str(),
        ];
        git(&place.repo, moved).await.map(|_| ())
    }
    .await;
    if let Err(e) = made {
        discard(pool, &entry).await;
        if !path.exists() {
            // Only the branch this claim made, still where it made it.
            let _ = git_status(&place.repo, ["update-ref", "-d", &branch_ref, &target]).await;
            let _ = forget_base_note(&path);
        }
        return Err(e);
    }
    let _ = fs::remove_file(pool.marker(&entry, CLAIMED));
    Ok(Some(place.worktree(task_id, target, true)))
}

/// A daemon killed in a claim between the branch and the move leaves the task's branch
/// checked out in a claimed entry, where the retry's `git worktree add` of that branch is
/// refused ("already checked out") until the next start's sweep: the entry is thrown away
/// first. No agent ever ran in it (it never reached the task's path).
async fn release_branch(place: &Place, pool: &Pool, task_id: &str) {
    let claimed = match list(&pool.dir) {
        Ok(listed) if real_dir(&pool.dir).is_ok() => plan::census(&listed).claimed,
        _ => return,
    };
    if claimed.is_empty() || fs::symlink_metadata(place.key_dir.join(task_id)).is_ok() {
        return;
    }
    let Ok(listed) = git(&place.repo, ["worktree", "list", "--porcelain"]).await else {
        return;
    };
    let holds = format!("branch refs/heads/{}", branch_name(task_id));
    for record in listed.split("\n\n") {
        let path = record
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("worktree "));
        let entry = path.and_then(|p| Path::new(p).strip_prefix(&pool.dir).ok());
        let Some(entry) = entry.and_then(Path::to_str) else {
            continue;
        };
        if claimed.iter().any(|c| c == entry) && record.lines().any(|l| l == holds) {
            tracing::info!(
                task = task_id,
                "throwing away the warm worktree {entry}: a claim of it was cut short"
            );
            discard(pool, entry).await;
        }
    }
}

/// Claims the oldest ready entry: renaming its marker is the claim, so two starts never
/// take the same one.
fn take(pool: &Pool) -> Option<String> {
    real_dir(&pool.dir).ok()?;
    let census = plan::census(&list(&pool.dir).ok()?);
    census
        .ready
        .into_iter()
        .find(|entry| fs::rename(pool.marker(entry, READY), pool.marker(entry, CLAIMED)).is_ok())
}

/// The names in the pool folder.
fn list(dir: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // file_type does not follow links: a link is never an entry.
        out.push(Listed {
            name,
            is_dir: entry.file_type()?.is_dir(),
        });
    }
    Ok(out)
}

/// Pools being refilled now, by folder, with the size a start asked for meanwhile.
static REFILLS: LazyLock<Mutex<HashMap<PathBuf, Option<usize>>>> = LazyLock::new(Default::default);
/// Pools this daemon has refilled once (and so cleared of what an earlier one left).
static SWEPT: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Default::default);

/// Tops the pool up to `size` in the background, unless a refill of it runs already (that
/// one then goes round once more). Never waits.
fn spawn_refill(pool: Pool, size: usize) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    {
        let mut running = REFILLS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(again) = running.get_mut(&pool.dir) {
            *again = Some(size);
            return;
        }
        running.insert(pool.dir.clone(), None);
    }
    runtime.spawn(async move {
        let mut size = size;
        loop {
            if let Err(e) = refill(&pool, size).await {
                tracing::warn!(
                    "cannot refill the worktree pool {}: {e}",
                    pool.dir.display()
                );
            }
            let mut running = REFILLS.lock().unwrap_or_else(PoisonError::into_inner);
            match running.get_mut(&pool.dir).and_then(Option::take) {
                Some(next) => size = next,
                None => {
                    running.remove(&pool.dir);
                    break;
                }
            }
        }
    });
}

async fn refill(pool: &Pool, size: usize) -> Result<(), WorktreeError> {
    if size == 0 && !pool.dir.is_dir() {
        return Ok(());
    }
    let sweep = SWEPT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pool.dir.clone());
    own_dir(&pool.dir)?;
    let repo_file = pool.dir.join(REPO_FILE);
    if size > 0 && !repo_file.is_file() {
        let bytes = pool.repo.as_os_str().as_encoded_bytes();
        nightshift_store::fsutil::write_atomic(&repo_file, bytes, 0o600)
            .map_err(io_err(&repo_file))?;
    }
    let listed = list(&pool.dir).map_err(io_err(&pool.dir))?;
    let todo = plan::refill(&plan::census(&listed), size, sweep);
    for entry in &todo.discard {
        discard(pool, entry).await;
    }
    for marker in &todo.stale_markers {
        let _ = fs::remove_file(pool.dir.join(marker));
    }
    for entry in &todo.trim {
        if fs::rename(pool.marker(entry, READY), pool.marker(entry, CLAIMED)).is_ok() {
            discard(pool, entry).await;
        }
    }
    for _ in 0..todo.fill {
        fill_one(pool).await?;
    }
    if size == 0 {
        let _ = fs::remove_file(&repo_file);
        let _ = fs::remove_dir(&pool.dir);
    }
    Ok(())
}

/// Makes one entry: registered without a checkout (a short turn in the repository's
/// records), checked out outside the turn, then marked ready.
async fn fill_one(pool: &Pool) -> Result<(), WorktreeError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let base = resolve_commit(&pool.repo, "HEAD").await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let entry = plan::entry_name(nanos, SEQ.fetch_add(1, Ordering::Relaxed));
    let path = pool.dir.join(&entry);
    let made = async {
        {
            let _turn = repo_lock(&pool.common).await;
            let add = [
                OsStr::new("worktree"),
                OsStr::new("add"),
                OsStr::new("-q"),
                OsStr::new("--detach"),
                OsStr::new("--no-checkout"),
                path.as_os_str(),
                OsStr::new(&base),
            ];
            git(&pool.repo, add).await?;
        }
        let workers = checkout_workers(&pool.repo).await;
        let reset = ["reset", "-q", "--hard"];
        git(&path, workers.iter().copied().chain(reset)).await?;
        let ready = pool.marker(&entry, READY);
        nightshift_store::fsutil::write_atomic(&ready, format!("{base}\n").as_bytes(), 0o600)
            .map_err(io_err(&ready))
    }
    .await;
    if made.is_err() {
        discard(pool, &entry).await;
    }
    made
}

/// Throws an entry away, whatever state it is in, with its markers.
async fn discard(pool: &Pool, entry: &str) {
    let path = pool.dir.join(entry);
    if !path.is_dir() || super::remove(&path, true).await.is_err() {
        // Half made: maybe still locked by an interrupted `worktree add`, maybe without its
        // checkout or its folder.
        let _turn = repo_lock(&pool.common).await;
        let _ = git_status(
            &pool.repo,
            [OsStr::new("worktree"), "unlock".as_ref(), path.as_os_str()],
        )
        .await;
        let _ = git_status(
            &pool.repo,
            [
                OsStr::new("worktree"),
                OsStr::new("remove"),
                OsStr::new("-f"),
                OsStr::new("-f"),
                path.as_os_str(),
            ],
        )
        .await;
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
            _ => {}
        }
        let _ = git_status(&pool.repo, ["worktree", "prune"]).await;
    }
    for kind in [READY, CLAIMED] {
        let _ = fs::remove_file(pool.marker(entry, kind));
    }
}

/// Starts the refill of every pool under `root` (a daemon's start: the repositories that
/// had pools keep them).
pub fn refill_pools(root: &Path, size: usize) {
    for dir in find_pools(root) {
        let Ok(bytes) = fs::read(dir.join(REPO_FILE)) else {
            continue;
        };
        let repo = PathBuf::from(OsString::from_vec(bytes));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match common_dir(&repo).await {
                Ok(common) => spawn_refill(Pool { repo, common, dir }, size),
                Err(e) => tracing::warn!(
                    "the worktree pool {} is of {}, which is no repository now: {e}",
                    dir.display(),
                    repo.display()
                ),
            }
        });
    }
}

/// Whether the repository the pool at `dir` was made for is no repository now (moved or
/// deleted). Unknown (no readable note of it) counts as there.
async fn repository_gone(dir: &Path) -> bool {
    let Ok(bytes) = fs::read(dir.join(REPO_FILE)) else {
        return false;
    };
    let repo = PathBuf::from(OsString::from_vec(bytes));
    !repo.is_dir() || common_dir(&repo).await.is_err()
}

/// The pool folders under `root` (`<repo-key>/.pool`), with canonical paths.
pub fn find_pools(root: &Path) -> Vec<PathBuf> {
    let Ok(keys) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = keys
        .flatten()
        .filter(|k| k.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|k| fs::canonicalize(k.path()).ok())
        .map(|k| k.join(POOL_DIR))
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect();
    out.sort();
    out
}

/// Removes a pool folder: each entry with the usual worktree removal, then its markers.
/// Returns how many entries went. A running daemon makes the pool again at the next start
/// in that repository.
pub async fn remove_pool(dir: &Path) -> Result<usize, WorktreeError> {
    real_dir(dir)?;
    let listed = list(dir).map_err(io_err(dir))?;
    if repository_gone(dir).await {
        // git can remove none of its worktrees now, and no start can claim one: the
        // folders go as they are (never through a link: `remove_dir_all` follows none).
        fs::remove_dir_all(dir).map_err(io_err(dir))?;
        return Ok(listed.iter().filter(|l| l.is_dir).count());
    }
    let mut removed = 0;
    for entry in listed.iter().filter(|l| l.is_dir) {
        let path = dir.join(&entry.name);
        super::remove(&path, true).await?;
        removed += 1;
    }
    for l in listed.iter().filter(|l| !l.is_dir) {
        let file = dir.join(&l.name);
        fs::remove_file(&file).map_err(io_err(&file))?;
    }
    fs::remove_dir(dir).map_err(io_err(dir))?;
    Ok(removed)
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
