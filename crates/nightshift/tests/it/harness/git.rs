//! The test repository: git run inside the test's world.

use std::fs;
use std::process::{Command, Stdio};

use super::Env;

impl Env {
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.isolate(&mut cmd);
        let out = cmd
            .arg("-C")
            .arg(&self.repo)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(super) fn init_repo(&self) {
        self.git(&["init", "-q"]);
        self.git(&["config", "user.name", "Night Shift Test"]);
        self.git(&["config", "user.email", "nightshift-test@invalid"]);
        self.git(&["config", "commit.gpgsign", "false"]);
        fs::write(self.repo.join("README.md"), "test repo\n").unwrap();
        self.git(&["add", "README.md"]);
        self.git(&["commit", "-q", "-m", "initial commit"]);
    }

    /// Subjects of the repo's commits, newest first.
    pub(crate) fn git_log(&self) -> Vec<String> {
        self.git(&["log", "--format=%s"])
            .lines()
            .map(String::from)
            .collect()
    }
}
