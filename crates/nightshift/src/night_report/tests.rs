use super::*;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn attempt(id: &str, outcome: Outcome, start: i64, end: i64) -> Attempt {
    Attempt {
        task_id: id.into(),
        title: HOSTILE.into(),
        attempt: 1,
        host: "here".into(),
        lane: 0,
        outcome,
        reason: format!("exited \u{1b}[31m1\u{1b}[0m {HOSTILE}"),
        summary: Some(HOSTILE.into()),
        agent: Some("test".into()),
        start: t(start),
        end: t(end),
        duration_secs: (end - start) as f64,
        branch: None,
        base: None,
        worktree: None,
        diffstat: None,
        commits: vec![Commit {
            hash: "0123456789abcdef".into(),
            subject: HOSTILE.into(),
        }],
        verify: Vec::new(),
        attention: vec![Flagged {
            signal: "waiting".into(),
            evidence: HOSTILE.into(),
            raised_at: t(start + 5),
            cleared_at: Some(t(start + 50)),
            waited_secs: 45.0,
            answered: Some(Answer {
                how: "acked".into(),
                at: t(start + 40),
            }),
        }],
        usage: None,
        run_dir: PathBuf::from("/nonexistent/run"),
    }
}

#[test]
fn the_page_escapes_everything_from_agents_and_loads_nothing() {
    let attempts = vec![
        attempt("a", Outcome::Done, 0, 600),
        attempt("b", Outcome::Failed, 100, 300),
    ];
    let report = NightReport {
        generated_at: t(3600),
        host: "here".into(),
        window: Window {
            since: t(0),
            until: t(3600),
        },
        totals: totals(&attempts),
        attempts,
        waiting: vec![Waiting {
            task_id: "q".into(),
            title: HOSTILE.into(),
            why: "held".into(),
        }],
        lanes: Vec::new(),
        idle: Vec::new(),
        blocked: Vec::new(),
        fires: Vec::new(),
    };
    let page = html::render(&report).unwrap();
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains('\u{1b}'), "terminal escapes are stripped");
    assert!(page.contains("&lt;script&gt;"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    assert_eq!(page.matches("class=\"task-row\"").count(), 2);
    assert_eq!(page.matches("class=\"bar ").count(), 2);
}

#[test]
fn a_person_answered_while_the_flag_stood() {
    let sent = [t(5), t(120)];
    let ack = AckRecord { at: t(70) };
    // Sent at 5, before the flag: not an answer; the ack just after it cleared is.
    let a = answer(t(10), t(65), Some(&ack), &sent).unwrap();
    assert_eq!((a.how.as_str(), a.at), ("acked", t(70)));
    let a = answer(t(100), t(200), None, &sent).unwrap();
    assert_eq!((a.how.as_str(), a.at), ("sent", t(120)));
    assert!(answer(t(300), t(400), Some(&ack), &sent).is_none());
}
