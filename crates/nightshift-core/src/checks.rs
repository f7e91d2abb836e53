//! Setup and acceptance checks: a round's verdict, and where an attempt's time went.

use std::collections::BTreeMap;

/// Whether a round of acceptance checks passed: every command passed, and the commands had
/// a workdir to run in (a run whose spawn record is missing cannot pass the checks it has).
pub fn round_passed(has_workdir: bool, has_commands: bool, all_passed: bool) -> bool {
    (has_workdir || !has_commands) && all_passed
}

/// An attempt's time by phase, in seconds: its setup and checks when it had any, and the
/// agent's share, the rest (never below zero).
pub fn phases(total: f64, setup: Option<f64>, verify: Option<f64>) -> BTreeMap<String, f64> {
    let mut phases = BTreeMap::new();
    if let Some(s) = setup {
        phases.insert("setup".to_string(), s);
    }
    if let Some(v) = verify {
        phases.insert("verify".to_string(), v);
    }
    let agent = total - setup.unwrap_or(0.0) - verify.unwrap_or(0.0);
    phases.insert("agent".to_string(), agent.max(0.0));
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_without_a_workdir_fail_and_no_checks_pass() {
        assert!(round_passed(true, true, true));
        assert!(!round_passed(true, true, false));
        assert!(!round_passed(false, true, true));
        assert!(round_passed(false, false, true));
    }

    #[test]
    fn the_agent_gets_the_time_setup_and_checks_did_not_take() {
        let p = phases(100.0, Some(10.0), Some(25.0));
        assert_eq!(p["setup"], 10.0);
        assert_eq!(p["verify"], 25.0);
        assert_eq!(p["agent"], 65.0);
        let p = phases(100.0, None, None);
        assert_eq!(p.len(), 1);
        assert_eq!(p["agent"], 100.0);
        assert_eq!(phases(5.0, Some(10.0), None)["agent"], 0.0);
    }
}
