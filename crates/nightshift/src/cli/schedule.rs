//! `nightshift schedule ls | next | run | pause | resume`. They read and write the files in
//! `schedules/` and the queue directly, so they work whether the daemon runs or not.

use jiff::Timestamp;

use super::{CliError, exit};
use crate::daemon::read_schedules;
use crate::home::{Home, TaskState};
use crate::local_time::in_zone;
use crate::out::{out, outln};
use crate::schedule::file::{self, Schedule};
use crate::schedule::plan::{self, Overlap};
use crate::schedule::state;
use nightshift_store::{EnqueueError, Store};

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Each schedule: its rule, next run, last run and outcome, paused or not
    Ls {
        /// Print JSON for scripts (times in RFC 3339)
        #[arg(long)]
        json: bool,
    },
    /// The next runs of a schedule, in its time zone
    Next {
        /// The schedule (schedules/NAME.md)
        name: String,
        /// How many runs to show
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// Enqueue a run now
    Run {
        /// The schedule (schedules/NAME.md)
        name: String,
        /// Override the schedule's overlap policy for this run
        #[arg(long, value_parser = ["skip", "queue-one", "allow"])]
        overlap: Option<String>,
        /// Run the slot that is due now, under its slot id (what OS timers call: a slot the
        /// daemon enqueued already is not enqueued again)
        #[arg(long)]
        due: bool,
    },
    /// Write OS timer units that call `schedule run NAME --due`
    Export {
        /// Only this schedule
        name: Option<String>,
        /// launchd plists (macOS)
        #[arg(long, conflicts_with = "systemd", required_unless_present = "systemd")]
        launchd: bool,
        /// systemd user timers and services
        #[arg(long)]
        systemd: bool,
        /// Write the files into this folder (default: print them)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Stop firing (slots while paused are recorded as skipped, never run later)
    Pause {
        /// The schedule (schedules/NAME.md)
        name: String,
    },
    /// Fire again from the next slot
    Resume {
        /// The schedule (schedules/NAME.md)
        name: String,
    },
}

/// The zone a schedule's times are shown in: its own `timezone:`, else the machine's.
fn zone_of(s: &Schedule) -> jiff::tz::TimeZone {
    s.timezone
        .as_deref()
        .and_then(|name| jiff::tz::TimeZone::get(name).ok())
        .unwrap_or_else(jiff::tz::TimeZone::system)
}

pub(super) fn run(home: &Home, cmd: ScheduleCommand) -> anyhow::Result<i32> {
    home.ensure_layout()?;
    let dir = home.schedules_dir();
    let (all, errors) = read_schedules(&dir);
    let find = |name: &str| -> anyhow::Result<&Schedule> {
        if let Some(e) = errors.get(name) {
            return Err(CliError::new(exit::FAILURE, e.clone()).into());
        }
        all.iter().find(|s| s.name == name).ok_or_else(|| {
            CliError::new(
                exit::NOT_FOUND,
                format!("no schedule `{name}` (no {}/{name}.md)", dir.display()),
            )
            .into()
        })
    };
    let now = Timestamp::now();
    match cmd {
        ScheduleCommand::Ls { json } => {
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|s| {
                    let st = state::load(&dir, &s.name);
                    serde_json::json!({
                        "name": s.name,
                        "rule": s.describe,
                        "enabled": s.enabled,
                        "paused": state::paused(&dir, &s.name),
                        "next": plan::upcoming(&s.rule, now, 1).first(),
                        "last_run": st.as_ref().and_then(|st| st.last_run.clone()),
                        "failures_in_a_row": st.as_ref().map_or(0, |st| st.consecutive_failures),
                    })
                })
                .collect();
            if json {
                let out = serde_json::json!({ "schedules": rows, "errors": errors });
                outln!("{}", crate::term_text::to_json(&out)?)?;
                return Ok(exit::SUCCESS);
            }
            if all.is_empty() && errors.is_empty() {
                outln!("no schedules; write one in {}", dir.display())?;
            }
            for (s, row) in all.iter().zip(&rows) {
                let state = match (s.enabled, row["paused"].as_str()) {
                    (false, _) => "disabled".to_string(),
                    (true, Some(why)) => format!("PAUSED ({why})"),
                    (true, None) => "active".to_string(),
                };
                let last = match &row["last_run"] {
                    serde_json::Value::Null => "never".to_string(),
                    l => format!(
                        "{} {}",
                        l["task_id"].as_str().unwrap_or(""),
                        l["outcome"].as_str().unwrap_or("running or queued")
                    ),
                };
                let next = plan::upcoming(&s.rule, now, 1)
                    .first()
                    .map_or_else(|| "-".to_string(), |at| in_zone(*at, &zone_of(s)));
                outln!(
                    "{:<20} {:<10} next {:<27} last {last}   {}",
                    s.name,
                    state,
                    next,
                    s.describe
                )?;
            }
            // The file's name and its error quote the file: cleaned for the terminal.
            for (name, e) in &errors {
                let clean = |s: &str| crate::term_text::clean_line(s, true);
                outln!("{:<20} INVALID    {}", clean(name), clean(&e.clone()))?;
            }
            Ok(exit::SUCCESS)
        }
        ScheduleCommand::Next { name, count } => {
            let s = find(&name)?;
            let zone = zone_of(s);
            for at in plan::upcoming(&s.rule, now, count) {
                outln!("{}", in_zone(at, &zone))?;
            }
            Ok(exit::SUCCESS)
        }
        ScheduleCommand::Export {
            name,
            launchd,
            systemd: _,
            out,
        } => {
            let exe = std::fs::canonicalize(std::env::current_exe()?)?;
            let root = std::fs::canonicalize(home.root())?;
            let chosen: Vec<&Schedule> = match &name {
                Some(n) => vec![find(n)?],
                None => all.iter().collect(),
            };
            let mut files: Vec<(String, String)> = Vec::new();
            for s in chosen {
                let (p, e, tz) = (s.pattern.as_deref(), s.every, s.timezone.as_deref());
                if launchd {
                    let text = crate::schedule::export::launchd_agent(&s.name, p, e, &exe, &root)
                        .map_err(|m| {
                        CliError::new(exit::FAILURE, format!("{}: {m}", s.name))
                    })?;
                    files.push((format!("dev.nightshift.schedule.{}.plist", s.name), text));
                } else {
                    let (timer, service) =
                        crate::schedule::export::systemd_units(&s.name, p, e, tz, &exe, &root)
                            .map_err(|m| {
                                CliError::new(exit::FAILURE, format!("{}: {m}", s.name))
                            })?;
                    files.push((format!("nightshift-schedule-{}.timer", s.name), timer));
                    files.push((format!("nightshift-schedule-{}.service", s.name), service));
                }
            }
            for (file_name, text) in files {
                match &out {
                    Some(dir) => {
                        std::fs::create_dir_all(dir)?;
                        nightshift_store::fsutil::write_atomic(
                            &dir.join(&file_name),
                            text.as_bytes(),
                            0o644,
                        )?;
                        outln!("wrote {}", dir.join(&file_name).display())?;
                    }
                    None => out!("# {file_name}\n{text}\n")?,
                }
            }
            Ok(exit::SUCCESS)
        }
        ScheduleCommand::Run { name, overlap, due } => {
            let s = find(&name)?;
            // The slot due now (the most recent within the catch-up window), if any.
            let slot = if due {
                if !s.enabled || state::paused(&dir, &name).is_some() {
                    outln!("`{name}` is paused or disabled; nothing enqueued")?;
                    return Ok(exit::SUCCESS);
                }
                let from = now
                    .checked_sub(jiff::SignedDuration::try_from(s.rule.catchup_window)?)
                    .unwrap_or(now);
                let mut latest = s.rule.clone();
                latest.catchup = plan::Catchup::Latest;
                // An OS timer fires at the bare slot time: the jitter is the daemon's.
                latest.delay = std::time::Duration::ZERO;
                match plan::decide(&latest, from, now).fire.last() {
                    Some(slot) => Some(*slot),
                    None => {
                        outln!("no slot of `{name}` is due now")?;
                        return Ok(exit::SUCCESS);
                    }
                }
            } else {
                None
            };
            if let Some(slot) = slot {
                let id = file::slot_id(&name, slot);
                if crate::tasks::locate(home, &id)?.is_some() {
                    outln!("{id} was enqueued already")?;
                    return Ok(exit::SUCCESS);
                }
                // The daemon handled (ran or skipped) this slot already.
                if state::load(&dir, &name).is_some_and(|st| st.cursor >= slot) {
                    outln!("the daemon has handled {id} already")?;
                    return Ok(exit::SUCCESS);
                }
            }
            let overlap = match overlap.as_deref() {
                Some("allow") => Overlap::Allow,
                Some("queue-one") => Overlap::QueueOne,
                Some(_) => Overlap::Skip,
                None => s.overlap,
            };
            let states = crate::tasks::states(home)?;
            let active = |state: TaskState| {
                states
                    .iter()
                    .filter(|(id, s)| **s == state && file::schedule_of(id) == Some(name.as_str()))
                    .count()
            };
            if overlap.in_the_way(active(TaskState::Queued), active(TaskState::Running)) {
                return Err(CliError::new(
                    exit::FAILURE,
                    format!(
                        "a run of `{name}` is already queued or running (overlap: {}); use --overlap allow to run another",
                        overlap.as_str()
                    ),
                )
                .into());
            }
            let id = file::slot_id(&name, slot.unwrap_or(now));
            let store = crate::tasks::open(home);
            match crate::tasks::call("enqueue", store.enqueue(&id, &s.template)) {
                Ok(_) => {}
                Err(EnqueueError::Exists { .. }) => {
                    return Err(
                        CliError::new(exit::FAILURE, format!("`{id}` exists already")).into(),
                    );
                }
                Err(e) => return Err(e.into()),
            }
            outln!("queued {id}")?;
            Ok(exit::SUCCESS)
        }
        ScheduleCommand::Pause { name } => {
            find(&name)?;
            state::pause(&dir, &name, "paused by hand")?;
            outln!("paused {name}")?;
            Ok(exit::SUCCESS)
        }
        ScheduleCommand::Resume { name } => {
            find(&name)?;
            if state::resume(&dir, &name)? {
                // A fresh start: the failures that paused it are behind it.
                if let Some(mut st) = state::load(&dir, &name) {
                    st.consecutive_failures = 0;
                    state::save(&dir, &name, &st)?;
                }
                outln!("resumed {name}; it fires from its next slot")?;
            } else {
                outln!("{name} was not paused")?;
            }
            Ok(exit::SUCCESS)
        }
    }
}
