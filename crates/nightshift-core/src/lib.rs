//! The decisions, with no I/O: `State` + `Event` + `now` → `Vec<Action>`.
//!
//! The daemon turns the world (file events, tmux, the socket, the clock) into [`Event`]s,
//! calls [`State::step`], and carries out the [`Action`]s. Time is an argument, so tests
//! replay hours in microseconds, and crash recovery feeds the same events as normal running.

pub mod action;
pub mod attention;
pub mod checks;
pub mod clock;
pub mod completion;
pub mod debounce;
pub mod delivery;
pub mod dispatch;
pub mod duration;
pub mod event;
pub mod labels;
pub mod landing;
pub mod limits;
pub mod night;
pub mod notice;
pub mod records;
pub mod recovery;
pub mod repo_url;
pub mod routing;
pub mod schedule_runs;
pub mod session;
pub mod settings;
pub mod start;
pub mod state;
#[cfg(any(test, feature = "strategies"))]
pub mod strategies;
pub mod task;
pub mod task_id;
pub mod tidy;
pub mod worktree_pool;

pub use action::Action;
pub use event::{Event, Observation, Recovered};
pub use event::{Invalid, QueuedTask};
pub use settings::{AgentSettings, Policy, Settings};
pub use state::{DISK_RESUME_AT, Phase, Run, State};

#[cfg(test)]
mod tests;
