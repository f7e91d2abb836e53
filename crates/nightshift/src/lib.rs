//! nightshift: run coding agents in tmux sessions from a queue of markdown task files.
//!
//! The library holds everything; `main.rs` only parses the command line.
//! Decisions live in [`core`] as plain functions over state and events; tmux, git,
//! files and sockets stay at the edges ([`tmux`], [`git`], [`nightshift_store`], [`ipc`]).

pub mod admit;
pub mod agent_trust;
pub mod any_store;
pub mod checks;
pub mod claude_state;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codex_state;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod dev;
pub mod exit;
pub mod followup;
pub mod git;
pub mod home;
pub mod hook;
pub mod ipc;
pub mod land;
pub mod limited;
pub mod local_time;
pub mod machine;
pub mod night_report;
pub mod notify;
mod out;
pub mod privacy;
pub mod repo_remote;
pub mod report;
pub mod run;
pub mod schedule;
pub mod service;
pub mod status;
pub mod tasks;
pub mod templates;
pub mod term_text;
pub mod tmux;
pub mod transcript;
pub mod trigger;
pub mod usage;
pub mod worktree;
pub mod wrap;
