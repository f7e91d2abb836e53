//! Schedules: task templates in `schedules/` that enqueue a task per slot of their time rule,
//! once per slot ever, through sleep, power-off and restarts.

pub mod export;
pub mod file;
pub mod plan;
pub mod state;
pub mod when;
