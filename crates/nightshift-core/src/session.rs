//! The tmux session name of a task: a pure function, so the core can name sessions.

/// The session name for a task: readable, and safe for tmux targets (no `.` or `:`). When
/// the id had to be changed, a hash of it keeps names unique.
pub fn session_name(task_id: &str) -> String {
    let clean: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == task_id {
        format!("ns-{clean}")
    } else {
        format!("ns-{clean}-{:08x}", stable_hash(task_id.as_bytes()) as u32)
    }
}

/// FNV-1a: tiny and stable across releases, unlike std's hasher.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
