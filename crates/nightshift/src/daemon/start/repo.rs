//! The start of a `repo:` task: its worktree made from this host's mirror of the remote.

use jiff::Timestamp;

use super::StartJob;
use crate::repo_remote::PushRecord;
use crate::run::{self, RunDir};
use crate::worktree::Worktree;
use nightshift_core::start::StartError;

impl StartJob {
    /// Fetches (or first makes) the mirror of `url` and gets the task's worktree from it
    /// ready. A fetch that fails may go better next attempt; a missing base will not.
    pub(super) async fn remote_worktree(&self, url: &str) -> Result<Worktree, StartError> {
        let task = &self.task;
        let prepared = crate::repo_remote::prepare(
            &self.home.mirrors_dir(),
            &self.home.worktrees_dir(),
            url,
            &task.id,
            task.base
                .clone()
                .or_else(|| self.pushed_dependency_branch(url))
                .as_deref(),
        )
        .await
        .map_err(|e| {
            let reason = e.to_string();
            if e.passing() {
                StartError::passing(reason)
            } else {
                StartError::lasting(reason)
            }
        })?;
        let how = if prepared.mirror_created {
            "made"
        } else {
            "fetched"
        };
        self.dir.log_event(
            Timestamp::now(),
            "mirror",
            &format!("{how} {}", prepared.mirror.display()),
        );
        let wt = prepared.worktree;
        if wt.created {
            self.set_up(&wt).await?;
        }
        Ok(wt)
    }

    /// A task that builds on another's work starts from that task's branch: the first of its
    /// dependencies on the same remote whose last attempt pushed its branch.
    fn pushed_dependency_branch(&self, url: &str) -> Option<String> {
        let remote = nightshift_core::repo_url::mask(url);
        self.task.depends_on.iter().find_map(|dep| {
            let last = *run::attempts(&self.home.task_runs(dep)).last()?;
            let push: PushRecord = RunDir::new(self.home.run_dir(dep, last))
                .read(crate::repo_remote::PUSH)
                .ok()
                .flatten()?;
            (push.pushed && push.remote == remote).then_some(push.branch)
        })
    }
}
