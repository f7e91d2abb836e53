//! Schedules: task templates that enqueue a task per slot of their time rule.

pub mod plan;
pub mod when;
