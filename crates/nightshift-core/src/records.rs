//! Plain records shared by the core, the store and the edges.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Done,
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Done,
        TaskState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DoneSource {
    /// `nightshift done`
    Command,
    /// the completion marker in the output
    Marker,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoneRecord {
    pub ok: bool,
    pub summary: Option<String>,
    pub source: DoneSource,
    pub at: Timestamp,
}

/// A daemon that claims tasks: the host it runs on and which start of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    /// Different for every start of a daemon: a restarted daemon is a new instance.
    pub instance: String,
}

/// A claim on a running task: its owner and the end of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub owner: Owner,
    pub until: Timestamp,
}

/// Whether a starting daemon adopts a running task, given the claim on file.
///
/// - A store no other daemon claims from (`shared` false: the folder store, whose home one
///   daemon holds at a time): always. Its earlier claims are this daemon's predecessor's,
///   whatever host name they carry (a laptop's name changes with its network).
/// - No claim on file: adopt. The claim record is written just after the claim itself, so a
///   crash in between (or a claim from before owners were recorded) leaves none.
/// - A claim from this host: adopt. One host runs one daemon per home (the home's lock), so
///   its earlier instance is gone, whatever the lease says.
/// - A claim from another host: never. Its agent runs there; if that host is lost, the
///   shared store's rescue (judged on the store's clock, not this host's) puts the task back
///   in the queue with its attempt closed as lost, and it is claimed again as a new attempt.
pub fn adopts(claim: Option<&Claim>, me: &Owner, shared: bool) -> bool {
    match claim {
        _ if !shared => true,
        None => true,
        Some(c) => c.owner.host == me.host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(host: &str, until: i64) -> Claim {
        Claim {
            owner: Owner {
                host: host.into(),
                instance: "1".into(),
            },
            until: Timestamp::from_second(until).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_daemon_adopts_unrecorded_claims_its_own_hosts_and_all_of_an_unshared_store() {
        let me = Owner {
            host: "here".into(),
            instance: "2".into(),
        };
        let shared = true;
        assert!(adopts(None, &me, shared));
        // This host's earlier instance is gone (the home's lock), whatever its lease says.
        assert!(adopts(Some(&claim("here", 5_000)), &me, shared));
        // Another host's claim is never taken here, lapsed or not: the store's rescue
        // requeues a lost host's task, on the store's clock.
        assert!(!adopts(Some(&claim("there", 5_000)), &me, shared));
        assert!(!adopts(Some(&claim("there", 999)), &me, shared));
        // A store only one daemon claims from: every claim is its predecessor's.
        assert!(adopts(Some(&claim("renamed", 5_000)), &me, false));
    }
}
