//! Integration tests: real tmux, real git, the real binary.
//!
//! Each test builds its own world with [`harness::Env`] (temp HOME, home, git repo, tmux
//! server), so the tests run in parallel and never touch the user's files or tmux.

// A failed unwrap in a test is a failed test, with the reason in the panic message; the
// crate-wide lint is for the binary's outside inputs. (clippy.toml's allow-unwrap-in-tests
// does not cover the harness's helper functions.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod agent_run;
mod agents;
mod aider;
mod architecture;
mod attention;
mod bench;
mod claude;
mod claude_limits;
mod claude_signals;
mod cli;
mod cli_output;
mod clock;
mod closing;
mod codex;
mod codex_dialogs;
mod completion;
mod daemon_life;
mod dashboard;
mod depends_view;
mod disk;
mod first_run;
mod fleet;
mod fleet_bench;
mod fleet_faults;
mod followup;
mod gemini;
mod history;
mod hosts;
mod injection;
mod landing;
mod leaks;
mod limits;
mod night_report;
mod notify;
mod queue;
mod recovery;
mod repo_remote;
mod schedules;
mod security;
mod standin;
mod tidy;
mod torture;
mod transcript;
mod triggers;
mod waiting;
mod worktree_pool;
