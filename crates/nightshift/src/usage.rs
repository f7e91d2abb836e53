//! Tokens and cost from an agent's own transcript, for the run report. Claude Code writes one
//! JSON object a line; assistant messages carry `message.usage`, and a streamed message may be
//! written several times under one `message.id`, so each id counts once (its last line).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::report::Usage;

/// Transcripts bigger than this are not read to the end: the report is not worth it.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The usage summed over a Claude Code transcript; `None` when it has none (or is missing).
pub fn from_claude_transcript(path: &Path) -> Option<Usage> {
    let file = std::fs::File::open(path).ok()?;
    let mut per_message: HashMap<String, (Usage, Option<f64>)> = HashMap::new();
    let mut anonymous = Vec::new();
    for line in BufReader::new(file.take(MAX_BYTES)).lines() {
        let Ok(line) = line else { break };
        if !line.contains("\"usage\"") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(u) = v.pointer("/message/usage") else {
            continue;
        };
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let usage = Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_creation_input_tokens: n("cache_creation_input_tokens"),
            cache_read_input_tokens: n("cache_read_input_tokens"),
            cost_usd: None,
        };
        let cost = v.get("costUSD").and_then(Value::as_f64);
        match v.pointer("/message/id").and_then(Value::as_str) {
            Some(id) => {
                per_message.insert(id.to_string(), (usage, cost));
            }
            None => anonymous.push((usage, cost)),
        }
    }
    let all: Vec<(Usage, Option<f64>)> = per_message.into_values().chain(anonymous).collect();
    if all.is_empty() {
        return None;
    }
    let mut total = Usage::default();
    for (u, cost) in all {
        total.input_tokens += u.input_tokens;
        total.output_tokens += u.output_tokens;
        total.cache_creation_input_tokens += u.cache_creation_input_tokens;
        total.cache_read_input_tokens += u.cache_read_input_tokens;
        if let Some(c) = cost {
            total.cost_usd = Some(total.cost_usd.unwrap_or(0.0) + c);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_message_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let lines = [
            r#"{"type":"user","message":{"role":"user","content":"hi"}}"#,
            r#"{"type":"assistant","message":{"id":"m1","usage":{"input_tokens":10,"output_tokens":1}}}"#,
            r#"{"type":"assistant","message":{"id":"m1","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100}}}"#,
            r#"{"type":"assistant","costUSD":0.25,"message":{"id":"m2","usage":{"input_tokens":3,"output_tokens":2,"cache_creation_input_tokens":7}}}"#,
            "not json with \"usage\"",
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let u = from_claude_transcript(&path).unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 13,
                output_tokens: 7,
                cache_creation_input_tokens: 7,
                cache_read_input_tokens: 100,
                cost_usd: Some(0.25),
            }
        );
        assert_eq!(from_claude_transcript(&dir.path().join("missing")), None);
    }
}
