//! The dashboard's edge: reads the files, asks the daemon, git and tmux, and turns the
//! answers into a [`Model`] and a [`Preview`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;

use crate::client;
use crate::config::Config;
use crate::home::{Home, TaskState};
use crate::ipc::DaemonStatus;
use crate::run;
use crate::status::{self, TaskView};
use crate::tmux::Tmux;
use nightshift_core::task;
use nightshift_store::Store;

use crate::tasks::AnyStore;

use super::model::{self, Live, Model};
use super::view::Preview;

/// Where to look for one running task's commits and output.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningTask {
    pub session: String,
    pub transcript: PathBuf,
    workdir: PathBuf,
    /// The commit the attempt started from, when the workdir is a repository.
    base: Option<String>,
}

pub struct Feed {
    home: Home,
    config: Config,
    tmux: Tmux,
    views: Vec<TaskView>,
    pub running: BTreeMap<String, RunningTask>,
    /// The last screen captured of each running task.
    screens: BTreeMap<String, String>,
    /// Each running task's newest commit, with the HEAD it was read at: git runs again
    /// only when HEAD (read from the repository's files) has moved.
    commits: BTreeMap<String, (Option<String>, Option<Timestamp>)>,
    /// Why the last read of the files failed, if it did.
    pub error: Option<String>,
    cache: status::ViewCache,
    store: AnyStore,
    /// Whether the queue is paused, as the store said at the last load.
    paused: bool,
}

impl Feed {
    pub fn new(home: Home, config: Config) -> Feed {
        let tmux = Tmux::new(&config.tmux_socket);
        Feed {
            config,
            tmux,
            views: Vec::new(),
            running: BTreeMap::new(),
            screens: BTreeMap::new(),
            commits: BTreeMap::new(),
            error: None,
            cache: status::ViewCache::default(),
            store: crate::tasks::open(&home),
            paused: false,
            home,
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads everything again: the task files, the daemon's status, and for running tasks
    /// their newest commit (and their screen, the first time).
    pub async fn load(&mut self) -> Model {
        // The same finished tasks as `ls` (the last few, from the store's index): a long
        // history costs nothing per redraw.
        let history = status::History::default();
        match status::collect_recent(
            &self.home,
            &self.store,
            &self.config,
            &mut self.cache,
            history,
        ) {
            Ok(listing) => {
                self.views = listing.tasks;
                self.error = None;
            }
            // Keep showing what was read last; the footer says what went wrong.
            Err(e) => self.error = Some(e.to_string()),
        }
        // Unknown shows as not paused, and the footer says why.
        self.paused = match crate::tasks::call("paused", self.store.paused()) {
            Ok(paused) => paused,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
                false
            }
        };
        self.running = self
            .views
            .iter()
            .filter(|v| v.state == TaskState::Running)
            .filter_map(|v| {
                let last = v.last.as_ref()?;
                let spawn = last.spawn.as_ref()?;
                Some((
                    v.id.clone(),
                    RunningTask {
                        session: spawn.session.clone(),
                        transcript: last.dir.join(run::TRANSCRIPT),
                        workdir: spawn
                            .worktree
                            .as_ref()
                            .map_or(spawn.workdir.clone(), |w| w.workdir.clone()),
                        base: spawn.git_head.clone(),
                    },
                ))
            })
            .collect();
        self.screens.retain(|id, _| self.running.contains_key(id));
        let mut commits = BTreeMap::new();
        for (id, run) in &self.running {
            if let Some(base) = &run.base {
                let head = crate::git::head(&run.workdir).await;
                let known = self.commits.get(id).filter(|(at, _)| *at == head);
                let newest = match known {
                    Some((_, newest)) => *newest,
                    None => crate::git::newest_commit_time(&run.workdir, base).await,
                };
                commits.insert(id.clone(), (head, newest));
            }
            // A failed capture (the session is still being made) is tried again next time.
            if !self.screens.contains_key(id)
                && let Ok(screen) = self.tmux.capture(&run.session).await
            {
                self.screens.insert(id.clone(), screen);
            }
        }
        self.commits = commits;
        let daemon = client::status(&self.home).await;
        self.model(daemon.as_ref().map(Option::as_ref).map_err(Clone::clone))
    }

    /// Captures the screens of these running tasks again (their output changed).
    pub async fn recapture(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(run) = self.running.get(id)
                && let Ok(screen) = self.tmux.capture(&run.session).await
            {
                self.screens.insert(id.clone(), screen);
            }
        }
    }

    /// The last line each running task shows, put into a model built earlier.
    pub fn refresh_lines(&self, model: &mut Model) {
        for row in &mut model.rows {
            if let Some(screen) = self.screens.get(&row.id) {
                row.last_line = last_line(screen);
            }
        }
    }

    fn model(&self, daemon: Result<Option<&DaemonStatus>, String>) -> Model {
        let now = Timestamp::now();
        let live = |id: &str| Live {
            last_commit: self.commits.get(id).and_then(|(_, newest)| *newest),
            last_line: self.screens.get(id).and_then(|s| last_line(s)),
        };
        model::build(
            &self.views,
            daemon,
            self.paused,
            next_schedule(&self.home, now),
            &live,
            model::Here {
                queue_dir: self.home.state_dir(TaskState::Queued).display().to_string(),
                host: &self.config.host,
                daemon_command: crate::client::hint::command(&self.home, "daemon"),
                config_error: self.home.reload_error(),
            },
            now,
        )
    }

    /// What the preview pane shows for this task.
    pub fn preview(&self, id: Option<&str>) -> Preview {
        let Some(id) = id else {
            return Preview::default();
        };
        if let Some(run) = self.running.get(id) {
            return Preview {
                heading: vec![
                    id.to_string(),
                    format!("tmux {}", run.session),
                    "Enter attaches, C-b d comes back".into(),
                ],
                lines: self
                    .screens
                    .get(id)
                    .map(|s| s.lines().map(str::to_string).collect())
                    .unwrap_or_default(),
                live: true,
            };
        }
        let Some(view) = self.views.iter().find(|v| v.id == id) else {
            return Preview::default();
        };
        // Not through a link, and never blocked on a FIFO that was set aside.
        let text = nightshift_store::fsutil::read_not_through_link(&view.path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("{}: {e}", view.path.display()));
        let mut lines = Vec::new();
        if let Some(reason) = view.reason() {
            lines.push(format!("{}: {reason}", view.state.as_str()));
            lines.push(String::new());
        } else if !view.waiting_for.is_empty() {
            lines.push(format!("waits for {}", view.waiting_for.join(", ")));
            lines.push(String::new());
        }
        // A finished task's report comes first: it is what one looks for.
        let body = task::strip_report(&text);
        let report = text[body.len()..].trim();
        lines.extend(report.lines().map(str::to_string));
        if !report.is_empty() {
            lines.push(String::new());
        }
        lines.extend(body.lines().map(str::to_string));
        Preview {
            heading: vec![id.to_string(), view.state.as_str().to_string()],
            lines,
            live: false,
        }
    }
}

/// The last line on a screen with something on it, without the frame around it.
fn last_line(screen: &str) -> Option<String> {
    screen
        .lines()
        .map(|l| {
            l.trim_matches(|c: char| c.is_whitespace() || "│┃|╭╮╰╯─━".contains(c))
                .to_string()
        })
        .rfind(|l| !l.is_empty())
}

/// The soonest run of any active schedule.
fn next_schedule(home: &Home, now: Timestamp) -> Option<(String, Timestamp)> {
    let dir = home.schedules_dir();
    let (schedules, _) = crate::daemon::read_schedules(&dir);
    schedules
        .iter()
        .filter(|s| s.enabled && crate::schedule::state::paused(&dir, &s.name).is_none())
        .filter_map(|s| {
            let at = *crate::schedule::plan::upcoming(&s.rule, now, 1).first()?;
            Some((s.name.clone(), at))
        })
        .min_by_key(|(_, at)| *at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_skips_blanks_and_frames() {
        let screen = "working\n╭────╮\n│ > fix it   │\n╰────╯\n\n  \n";
        assert_eq!(last_line(screen).as_deref(), Some("> fix it"));
        assert_eq!(last_line("\n \n"), None);
    }
}
