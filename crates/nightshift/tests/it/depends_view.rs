//! `ls` and `show` explain dependencies: what a queued task waits for, that a task whose
//! dependency failed or that sits on a cycle will fail (before the daemon acts), and why it
//! failed (after, when it has no attempt to show a reason with).

use crate::harness::{Env, Task};

fn line_of(text: &str, start: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting `{start}` in:\n{text}"))
        .to_string()
}

#[test]
fn ls_and_show_explain_failed_cyclic_and_missing_dependencies() {
    let mut env = Env::new();
    env.queue("a", &Task::script(["@done --fail nope"]));
    env.queue("b", &Task::script(["@done ok"]).front("depends_on: a"));
    env.queue("c", &Task::script(["@done ok"]).front("depends_on: d"));
    env.queue("d", &Task::script(["@done ok"]).front("depends_on: c"));
    env.queue("e", &Task::script(["@done ok"]).front("depends_on: ghost"));

    // Before the daemon looks: the cycle is already a certain failure, and says so.
    let ls = env.run(&["ls"]).stdout;
    let c = line_of(&ls, "c ");
    assert!(
        c.contains("blocked") && c.contains("will fail: dependency cycle: c → d → c"),
        "{ls}"
    );
    let e = line_of(&ls, "e ");
    assert!(
        e.contains("waiting") && e.contains("waits for ghost (no such task yet)"),
        "{ls}"
    );
    let show = env.run(&["show", "c"]).stdout;
    assert!(
        line_of(&show, "blocked").contains("will fail: dependency cycle: c → d → c"),
        "{show}"
    );
    let show = env.run(&["show", "e"]).stdout;
    assert!(
        line_of(&show, "waits for").contains("ghost (no such task yet)"),
        "{show}"
    );

    env.start_daemon();
    for id in ["a", "b", "c", "d"] {
        assert_eq!(env.wait_finished(id), "failed", "{}", env.diagnostics());
    }
    let ls = env.run(&["ls"]).stdout;
    assert!(
        line_of(&ls, "b ").contains("— dependency `a` failed"),
        "{ls}"
    );
    assert!(
        line_of(&ls, "d ").contains("— dependency cycle: d → c → d"),
        "{ls}"
    );
    assert!(line_of(&ls, "e ").contains("waits for ghost"), "{ls}");
    let show = env.run(&["show", "b"]).stdout;
    assert!(
        line_of(&show, "reason").contains("dependency `a` failed"),
        "{show}"
    );
    let show = env.run(&["show", "c"]).stdout;
    assert!(
        line_of(&show, "reason").contains("dependency cycle: c → d → c"),
        "{show}"
    );
}
