//! Landing a finished task's work: whether its branch is pushed at done, whether a draft
//! pull request is opened, and with which tool. Pure decisions; the daemon's edge code
//! (`land.rs` in the binary) reads the remote's URL and PATH, and runs git and gh/glab.

use serde::{Deserialize, Serialize};

use crate::repo_url::{host_of, mask};

/// The remote pushed to when nothing names one.
pub const DEFAULT_REMOTE: &str = "origin";

/// `push:`, `pr:` and `remote:` as one source sets them: a task, a profile or config.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LandingChoice {
    pub push: Option<bool>,
    pub pr: Option<bool>,
    pub remote: Option<String>,
}

/// What an attempt does with its branch at done, settled when it starts (so a config change
/// in between does not change a running task's landing).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Landing {
    /// Also open a draft pull request (GitHub) or merge request (GitLab).
    pub pr: bool,
    /// The name of the git remote of the task's repository (`origin` by default).
    pub remote: String,
    /// The pull request's title: the task's.
    pub title: String,
}

/// The task's choice over its profile's over config.toml's. `None`: nothing is pushed. A
/// pull request needs the branch on the remote, so `pr: true` pushes too.
pub fn resolve(
    title: &str,
    task: &LandingChoice,
    profile: &LandingChoice,
    config: &LandingChoice,
) -> Option<Landing> {
    let pick = |field: fn(&LandingChoice) -> Option<bool>| {
        field(task)
            .or_else(|| field(profile))
            .or_else(|| field(config))
            .unwrap_or(false)
    };
    let pr = pick(|c| c.pr);
    if !(pick(|c| c.push) || pr) {
        return None;
    }
    let remote = [task, profile, config]
        .into_iter()
        .find_map(|c| c.remote.clone())
        .unwrap_or_else(|| DEFAULT_REMOTE.to_string());
    Some(Landing {
        pr,
        remote,
        title: title.to_string(),
    })
}

/// A remote's name as `remote:` may give it: what `git remote add` accepts, and nothing git
/// could read as an option.
pub fn check_remote_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && !name.starts_with('-')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a git remote name (letters, digits, `.`, `_`, `-`, `/`)"
        ))
    }
}

/// Whether to push at done, and if not, why (`None`: nothing was asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStep {
    Push { remote: String, branch: String },
    Skip(String),
}

/// Only a task that is done (its acceptance checks passed) and that ran on its own branch
/// is pushed.
pub fn push_step(landing: Option<&Landing>, done: bool, branch: Option<&str>) -> Option<PushStep> {
    let landing = landing?;
    if !done {
        return None;
    }
    Some(match branch {
        Some(branch) => PushStep::Push {
            remote: landing.remote.clone(),
            branch: branch.to_string(),
        },
        None => PushStep::Skip(
            "not pushed: the task ran in place, not on its own branch (isolation: worktree in a git repository)"
                .into(),
        ),
    })
}

/// The code host a remote is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
}

/// GitHub for `github.com` (and GitHub Enterprise hosts named `github.*`), GitLab for hosts
/// named `gitlab*`; `None` for anything else, a path among them.
pub fn forge(url: &str) -> Option<Forge> {
    let host = host_of(url)?;
    let first = host.split('.').next().unwrap_or_default();
    if host == "github.com" || host.ends_with(".github.com") || first == "github" {
        Some(Forge::GitHub)
    } else if first.starts_with("gitlab") || host.ends_with(".gitlab.com") {
        Some(Forge::GitLab)
    } else {
        None
    }
}

/// The CLI that opens pull requests on a forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrTool {
    Gh,
    Glab,
}

impl PrTool {
    pub fn of(forge: Forge) -> PrTool {
        match forge {
            Forge::GitHub => PrTool::Gh,
            Forge::GitLab => PrTool::Glab,
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            PrTool::Gh => "gh",
            PrTool::Glab => "glab",
        }
    }

    /// Where to get it.
    pub fn install_hint(self) -> &'static str {
        match self {
            PrTool::Gh => "install GitHub's CLI (https://cli.github.com) and run `gh auth login`",
            PrTool::Glab => {
                "install GitLab's CLI (https://gitlab.com/gitlab-org/cli) and run `glab auth login`"
            }
        }
    }
}

/// Whether to open a pull request after the push, with which tool, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrStep {
    Open(PrTool),
    Skip(String),
}

/// `None` when no pull request was asked for. `remote_url` is the remote's URL (`None`: the
/// remote does not exist); `installed` says whether a tool is on the PATH.
pub fn pr_step(
    landing: &Landing,
    pushed: bool,
    remote_url: Option<&str>,
    installed: impl Fn(PrTool) -> bool,
) -> Option<PrStep> {
    if !landing.pr {
        return None;
    }
    if !pushed {
        return Some(PrStep::Skip(
            "no pull request: the branch was not pushed".into(),
        ));
    }
    let Some(url) = remote_url else {
        return Some(PrStep::Skip(format!(
            "no pull request: the remote `{}` has no URL",
            landing.remote
        )));
    };
    let Some(forge) = forge(url) else {
        return Some(PrStep::Skip(format!(
            "no pull request: the remote `{}` ({}) is on neither GitHub nor GitLab",
            landing.remote,
            mask(url)
        )));
    };
    let tool = PrTool::of(forge);
    if !installed(tool) {
        return Some(PrStep::Skip(format!(
            "no pull request: `{}` is not installed (the remote is on {}); {}",
            tool.program(),
            match forge {
                Forge::GitHub => "GitHub",
                Forge::GitLab => "GitLab",
            },
            tool.install_hint()
        )));
    }
    Some(PrStep::Open(tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(push: Option<bool>, pr: Option<bool>, remote: Option<&str>) -> LandingChoice {
        LandingChoice {
            push,
            pr,
            remote: remote.map(str::to_string),
        }
    }

    #[test]
    fn the_task_overrides_the_profile_which_overrides_the_config() {
        let none = LandingChoice::default();
        assert_eq!(resolve("t", &none, &none, &none), None);
        let config = choice(Some(true), None, Some("upstream"));
        let landing = resolve("t", &none, &none, &config).expect("config pushes");
        assert_eq!((landing.pr, landing.remote.as_str()), (false, "upstream"));
        let profile = choice(Some(false), None, None);
        assert_eq!(resolve("t", &none, &profile, &config), None);
        let task = choice(Some(true), Some(true), Some("fork"));
        let landing = resolve("Title", &task, &profile, &config).expect("task pushes");
        assert_eq!(
            landing,
            Landing {
                pr: true,
                remote: "fork".into(),
                title: "Title".into()
            }
        );
        // A pull request needs the push.
        let pr_only = choice(None, Some(true), None);
        let landing = resolve("t", &pr_only, &none, &none).expect("pr pushes");
        assert_eq!(landing.remote, DEFAULT_REMOTE);
    }

    #[test]
    fn only_a_done_task_on_its_own_branch_is_pushed() {
        let landing = Landing {
            pr: false,
            remote: "origin".into(),
            title: "t".into(),
        };
        assert_eq!(push_step(None, true, Some("nightshift/a")), None);
        assert_eq!(push_step(Some(&landing), false, Some("nightshift/a")), None);
        assert_eq!(
            push_step(Some(&landing), true, Some("nightshift/a")),
            Some(PushStep::Push {
                remote: "origin".into(),
                branch: "nightshift/a".into()
            })
        );
        assert!(matches!(
            push_step(Some(&landing), true, None),
            Some(PushStep::Skip(why)) if why.contains("in place")
        ));
    }

    #[test]
    fn the_forge_comes_from_the_remotes_host() {
        for url in [
            "https://github.com/acme/app.git",
            "git@github.com:acme/app.git",
            "ssh://git@github.com/acme/app",
            "https://TOKEN@github.example.org/acme/app",
        ] {
            assert_eq!(forge(url), Some(Forge::GitHub), "{url}");
        }
        for url in [
            "git@gitlab.com:acme/app.git",
            "https://gitlab.corp:8443/a/b",
        ] {
            assert_eq!(forge(url), Some(Forge::GitLab), "{url}");
        }
        for url in [
            "/srv/git/app.git",
            "file:///srv/app.git",
            "git@bitbucket.org:a/b",
        ] {
            assert_eq!(forge(url), None, "{url}");
        }
    }

    #[test]
    fn a_pull_request_needs_the_push_a_known_forge_and_its_tool() {
        let landing = Landing {
            pr: true,
            remote: "origin".into(),
            title: "t".into(),
        };
        let gh = "https://github.com/acme/app.git";
        let all = |_: PrTool| true;
        let none = |_: PrTool| false;
        assert_eq!(
            pr_step(&landing, true, Some(gh), all),
            Some(PrStep::Open(PrTool::Gh))
        );
        assert_eq!(
            pr_step(&landing, true, Some("git@gitlab.com:a/b"), all),
            Some(PrStep::Open(PrTool::Glab))
        );
        let skipped = |step: Option<PrStep>| match step {
            Some(PrStep::Skip(why)) => why,
            other => panic!("expected a reason, got {other:?}"),
        };
        assert!(skipped(pr_step(&landing, false, Some(gh), all)).contains("not pushed"));
        let why = skipped(pr_step(&landing, true, Some(gh), none));
        assert!(why.contains("`gh` is not installed") && why.contains("cli.github.com"));
        assert!(skipped(pr_step(&landing, true, Some("/srv/app.git"), all)).contains("neither"));
        assert!(skipped(pr_step(&landing, true, None, all)).contains("no URL"));
        let no_pr = Landing {
            pr: false,
            ..landing
        };
        assert_eq!(pr_step(&no_pr, true, Some(gh), all), None);
    }

    #[test]
    fn remote_names_that_git_could_read_as_options_are_refused() {
        assert!(check_remote_name("origin").is_ok());
        assert!(check_remote_name("my-fork/x").is_ok());
        for bad in ["", "-o", "a b", "a..b", "a;b"] {
            assert!(check_remote_name(bad).is_err(), "{bad}");
        }
    }
}
