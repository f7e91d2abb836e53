//! Carrying out the core's limit decisions: the run's `limited.json`, the home's
//! `limits.json` (the holds, for `ls`, `show`, `top` and the next start), and one message
//! per hold.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::Daemon;
use crate::limited::local_time;
use crate::run::{self, LimitedRecord, RunDir};
use nightshift_core::limits::{Hold, LimitKind};
use nightshift_store::Store;

/// What the core decided for a run that hit a limit.
pub(super) struct LimitHit {
    pub id: String,
    pub attempt: u32,
    pub profile: String,
    pub kind: LimitKind,
    pub until: Timestamp,
    pub evidence: String,
    pub notify: bool,
}

impl<S: Store> Daemon<S> {
    pub(super) fn on_limited(&mut self, hit: LimitHit) {
        let now = Timestamp::now();
        let dir = RunDir::new(self.home.run_dir(&hit.id, hit.attempt));
        let when = local_time(hit.until);
        let record = LimitedRecord {
            profile: hit.profile.clone(),
            kind: hit.kind,
            since: now,
            until: hit.until,
            evidence: hit.evidence.clone(),
        };
        if let Err(e) = dir.write(run::LIMITED, &record) {
            tracing::warn!(task = hit.id, "cannot record the limit: {e}");
        }
        let kind = hit.kind.name();
        dir.log_event(
            now,
            "limited",
            &format!("{kind} until {when}: {}", hit.evidence),
        );
        self.write_holds();
        tracing::warn!(
            task = hit.id,
            "agent `{}` hit a {kind}: {}; new starts of it wait until {when}",
            hit.profile,
            hit.evidence
        );
        if hit.notify {
            self.notify(
                crate::notify::EventKind::Limited,
                &hit.id,
                format!(
                    "nightshift: agent {} hit a {kind}; held until {when}",
                    hit.profile
                ),
                format!(
                    "{}\nNew tasks for `{}` wait; other agents go on. At {when} the limited agents are told to continue (`nightshift resume-limited` goes on now).",
                    hit.evidence, hit.profile
                ),
            );
        }
    }

    pub(super) fn on_limit_lifted(&mut self, profile: &str, by_hand: bool, runs: &[(String, u32)]) {
        self.write_holds();
        let how = if by_hand { "by hand" } else { "at its time" };
        tracing::info!("the hold on agent `{profile}` lifted {how}: its agents continue");
        for (id, attempt) in runs {
            let dir = RunDir::new(self.home.run_dir(id, *attempt));
            if let Err(e) = std::fs::remove_file(dir.file(run::LIMITED))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(task = id, "cannot clear the limit record: {e}");
            }
            dir.log_event(Timestamp::now(), "continued", how);
        }
    }

    /// The home's `limits.json`: the holds as the core has them now.
    pub(super) fn write_holds(&self) {
        let holds: &BTreeMap<String, Hold> = self.state.limit_holds();
        let path = self.home.limits_file();
        let written = serde_json::to_vec_pretty(holds)
            .map_err(std::io::Error::other)
            .and_then(|bytes| nightshift_store::fsutil::write_atomic(&path, &bytes, 0o600));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
}
