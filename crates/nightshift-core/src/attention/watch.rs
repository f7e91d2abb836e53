//! The attention state of one run, fed output, screens, hooks, commits and ticks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use regex::Regex;

use super::detectors::{is_error_line, normalize};
use super::retrying::{Retrying, Streaking};
use super::screen::{plain_menu, question};
use super::sieve::{Sieve, Sifted};
use super::signals::{Change, Flag, Hook, Signal, Thresholds};
use super::{add, elapsed, strip_ansi, sub, truncate};

mod looks;

/// The attention state of one run.
#[derive(Debug, Clone)]
pub struct Watch {
    git_repo: bool,
    last_output: Timestamp,
    /// Start or last commit, for the evidence.
    last_commit: Timestamp,
    /// Silence and no-commits count from these: the last output/commit, or a later ack.
    quiet_from: Timestamp,
    commit_from: Timestamp,
    /// The screen was read since the last output.
    screen_checked: bool,
    /// A person acked during this quiet period: the question on screen is known.
    waiting_acked: bool,
    /// The Waiting flag came from a hook: only the agent working again (or an ack) clears
    /// it, not the screen or a redraw.
    waiting_from_hook: bool,
    /// A hook said the turn ended, and when; becomes Waiting unless done follows.
    turn_ended: Option<(Timestamp, String)>,
    /// A tool a hook announced that has not finished yet: it may wait for permission.
    tool_pending: Option<PendingTool>,
    /// Recent times of each normalised error line (at most the threshold count).
    errors: HashMap<String, VecDeque<Timestamp>>,
    flags: BTreeMap<Signal, Flag>,
    /// Sorts new output for the detectors, with one compiled set of all their patterns.
    sieve: Sieve,
    /// The agent CLI's current streak of API retries.
    retrying: Retrying,
    /// Output spoke of a limit or a retry: look at the screen then, where a full-screen UI's
    /// line reads whole (its output draws only the cells that changed). And when the last
    /// such look was, so a countdown asks at most every [`LIMIT_LOOK_GAP`].
    limit_look: Option<Timestamp>,
    last_limit_look: Option<Timestamp>,
    /// The last hook of a turn still under way (a prompt submitted, a tool done), when the
    /// agent has hooks. An agent CLI retrying its API makes no hooks, and its countdown may
    /// redraw only digits, so hooks falling silent mid-turn is a reason to look at the screen.
    turn_hook: Option<Timestamp>,
}

/// A tool announced by a hook (`PreToolUse`) with no result yet, and when to look at the
/// screen for its permission dialog.
#[derive(Debug, Clone)]
struct PendingTool {
    tool: String,
    next_look: Timestamp,
    /// The wait from `next_look` to the look after it.
    gap: Duration,
    since: Timestamp,
}

/// A plain numbered menu ending a turn's last words: its question and options, cut.
fn menu_in(last_words: &str) -> Option<String> {
    let words: Vec<&str> = last_words
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut menu = plain_menu(&words)?;
    truncate(&mut menu, 400);
    Some(menu)
}

/// How soon after output spoke of a limit the screen is read (the rest of the line may
/// still be on its way), and how long before another such look.
const LIMIT_LOOK_DELAY: std::time::Duration = std::time::Duration::from_millis(300);
const LIMIT_LOOK_GAP: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a line of output may be part of a limit or a retry message: a cheap test, the
/// screen decides.
fn speaks_of_limits(line: &str) -> bool {
    // Several words of each CLI's limit lines: a full-screen UI that redraws only changed
    // cells may break any one word of a line with a cursor move (it skips a cell that held
    // the same letter), and the countdown after it redraws only digits.
    [
        "limit", "Limit", "retry", "Retry", "429", "uota", "hour", "reached", "attempt", "resets",
        "rying",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// A question with its options on one line: "Which database? 1. PostgreSQL 2. SQLite".
static INLINE_MENU: std::sync::LazyLock<Option<Regex>> =
    std::sync::LazyLock::new(|| Regex::new(r"^(?P<q>[^?]*\?)\s+1[.)]\s+\S.*\s2[.)]\s+\S").ok());

/// A plain question to the user as the last line of a turn's last words, or one with its
/// options on the same line.
fn question_in(last_words: &str) -> Option<String> {
    let last = last_words.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let inline = INLINE_MENU
        .as_ref()
        .and_then(|re| re.captures(last))
        .is_some_and(|c| super::screen::is_prose_question(&c["q"]));
    if !inline && !super::screen::is_prose_question(last) {
        return None;
    }
    let mut asked = last.to_string();
    truncate(&mut asked, 300);
    Some(asked)
}

impl Watch {
    /// `git_repo`: false switches no-commits off for this run (not a repository).
    pub fn new(now: Timestamp, git_repo: bool) -> Watch {
        Watch {
            git_repo,
            last_output: now,
            last_commit: now,
            quiet_from: now,
            commit_from: now,
            screen_checked: false,
            waiting_acked: false,
            waiting_from_hook: false,
            turn_ended: None,
            tool_pending: None,
            errors: HashMap::new(),
            sieve: Sieve::default(),
            flags: BTreeMap::new(),
            retrying: Retrying::default(),
            limit_look: None,
            last_limit_look: None,
            turn_hook: None,
        }
    }

    /// New output lines arrived: activity (clears Waiting and Silence), and error counting.
    pub fn on_output(&mut self, lines: &[String], now: Timestamp, t: &Thresholds) -> Change {
        let sifted = self.sift(lines, None, &[], now, t);
        self.on_sifted(&sifted, now, t)
    }

    /// Sorts new output lines for the decisions, stripping each once and testing it against
    /// one set of every pattern: `marker`, the done marker if the caller looks for it;
    /// `limits`, the limit patterns if it looks for limits.
    pub fn sift<'a>(
        &mut self,
        lines: &'a [String],
        marker: Option<&str>,
        limits: &[String],
        now: Timestamp,
        t: &Thresholds,
    ) -> Sifted<'a> {
        let mut sifted = self.sieve.sift(lines, marker, limits, t);
        sifted.speaks_of_limits = self.limit_look.is_none()
            && self
                .last_limit_look
                .is_none_or(|at| add(at, LIMIT_LOOK_GAP) <= now)
            && lines.iter().any(|l| speaks_of_limits(l));
        sifted
    }

    /// [`Watch::on_output`] for output already sifted: only the candidate lines are looked
    /// at again.
    pub fn on_sifted(&mut self, s: &Sifted, now: Timestamp, t: &Thresholds) -> Change {
        let mut change = Change::default();
        if s.lines == 0 {
            return change;
        }
        self.active(now);
        if !self.waiting_from_hook {
            self.waiting_acked = false;
            self.clear(Signal::Waiting, &mut change);
        }
        self.clear(Signal::Silence, &mut change);
        if t.retrying.is_some() {
            self.retrying.on_lines(&s.retries, now);
        }
        if s.speaks_of_limits && self.limit_look.is_none() {
            self.limit_look = Some(add(now, LIMIT_LOOK_DELAY));
        }
        if t.repeated_error.is_none() {
            return change;
        }
        self.forget_old_errors(now, t);
        for line in &s.errors {
            let text = strip_ansi(line);
            let text = text.trim();
            if !is_error_line(text, &t.error_patterns) {
                continue;
            }
            let mut key = normalize(text);
            truncate(&mut key, 500);
            self.count_error(key, text, now, t, &mut change);
        }
        change
    }

    /// Drops error sightings older than the repeated-error window.
    fn forget_old_errors(&mut self, now: Timestamp, t: &Thresholds) {
        let Some((_, window)) = t.repeated_error else {
            return;
        };
        let cutoff = sub(now, window);
        self.errors.retain(|_, times| {
            while times.front().is_some_and(|at| *at < cutoff) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// One more sighting of the error `key` (normalised; old ones forgotten already);
    /// raises RepeatedError, quoting `quoted`, once it has been seen the threshold count of
    /// times within the window.
    fn count_error(
        &mut self,
        key: String,
        quoted: &str,
        now: Timestamp,
        t: &Thresholds,
        change: &mut Change,
    ) {
        let Some((count, window)) = t.repeated_error else {
            return;
        };
        let count = count.max(1) as usize;
        let times = self.errors.entry(key).or_default();
        times.push_back(now);
        if times.len() > count {
            times.pop_front();
        }
        let seen = times.len();
        if seen >= count && !self.flags.contains_key(&Signal::RepeatedError) {
            let mut quoted = quoted.to_string();
            truncate(&mut quoted, 200);
            let evidence = format!(
                "\"{quoted}\" seen {seen} times in {}",
                crate::duration::format(window)
            );
            self.raise(Signal::RepeatedError, now, evidence, change);
        }
    }

    /// The visible screen after output has been quiet for `input_debounce`: raises Waiting
    /// when its last lines ask something, clears it when they no longer do.
    ///
    /// While a tool announced by a hook is pending (past `tool_window`), the screen is read
    /// whatever the output does: a permission dialog found then raises Waiting at once, and
    /// only the tool finishing (or an ack) clears it. A tool that simply runs shows no dialog.
    pub fn on_screen(&mut self, screen: &str, now: Timestamp, t: &Thresholds) -> Change {
        let mut change = Change::default();
        if !t.waiting {
            return change;
        }
        if let Some(pending) = &self.tool_pending
            && add(pending.since, t.tool_window) <= now
            && !self.waiting_acked
            && !self.flags.contains_key(&Signal::Waiting)
            && let Some(dialog) = question(screen, &t.waiting_patterns)
        {
            let evidence = format!("{} waits for a person: {dialog}", pending.tool);
            self.raise_from_hook(evidence, now, &mut change);
            return change;
        }
        if now < add(self.last_output, t.input_debounce) {
            return change;
        }
        self.screen_checked = true;
        match question(screen, &t.waiting_patterns) {
            Some(evidence) if !self.waiting_acked && !self.flags.contains_key(&Signal::Waiting) => {
                self.raise(Signal::Waiting, now, evidence, &mut change);
            }
            Some(_) => {}
            None if !self.waiting_from_hook => self.clear(Signal::Waiting, &mut change),
            None => {}
        }
        change
    }

    /// An event from the agent's hooks.
    pub fn on_hook(&mut self, hook: Hook, now: Timestamp, t: &Thresholds) -> Change {
        let mut change = Change::default();
        // Any event but a new tool's ends the pending one (its result, or the turn).
        self.tool_pending = None;
        self.turn_hook = match hook {
            Hook::Working | Hook::ToolRequested(_) | Hook::ToolFailed(_) => Some(now),
            Hook::NeedsInput(_) | Hook::TurnFailed(_) | Hook::TurnEnded(_) => None,
        };
        match hook {
            Hook::Working => self.working(now, &mut change),
            Hook::ToolRequested(tool) => {
                self.working(now, &mut change);
                self.tool_pending = Some(PendingTool {
                    tool,
                    next_look: add(now, t.tool_window),
                    gap: t.tool_window,
                    since: now,
                });
            }
            Hook::ToolFailed(print) => {
                self.working(now, &mut change);
                self.forget_old_errors(now, t);
                self.count_error(print.clone(), &print, now, t, &mut change);
            }
            Hook::NeedsInput(evidence) | Hook::TurnFailed(evidence) => {
                self.turn_ended = None;
                // After an ack, only a new prompt (which comes after work) raises again.
                if t.waiting && !self.waiting_acked {
                    self.raise_from_hook(evidence, now, &mut change);
                }
            }
            Hook::TurnEnded(last_words)
                if t.waiting && !self.flags.contains_key(&Signal::Waiting) =>
            {
                // A question (with options, or a plain one as its last line): no done signal
                // races that, so no debounce.
                match menu_in(&last_words).or_else(|| question_in(&last_words)) {
                    Some(asked) if !self.waiting_acked => {
                        let evidence = format!("the agent ended its turn asking: {asked}");
                        self.raise_from_hook(evidence, now, &mut change);
                    }
                    Some(_) => {}
                    None => self.turn_ended = Some((now, last_words)),
                }
            }
            Hook::TurnEnded(_) => {}
        }
        change
    }

    /// A flag the watch cannot see for itself (timeout, died), raised by the caller.
    pub fn flag(&mut self, signal: Signal, now: Timestamp, evidence: String) -> Change {
        let mut change = Change::default();
        if !self.flags.contains_key(&signal) {
            self.raise(signal, now, evidence, &mut change);
        }
        change
    }

    /// The agent works again: clears Waiting and Silence.
    fn working(&mut self, now: Timestamp, change: &mut Change) {
        self.active(now);
        self.retrying.reset(now);
        self.turn_ended = None;
        self.waiting_acked = false;
        self.clear(Signal::Waiting, change);
        self.clear(Signal::Silence, change);
    }

    pub fn has(&self, signal: Signal) -> bool {
        self.flags.contains_key(&signal)
    }

    fn active(&mut self, now: Timestamp) {
        self.last_output = now;
        self.quiet_from = now;
        self.screen_checked = false;
    }

    fn raise_from_hook(&mut self, evidence: String, now: Timestamp, change: &mut Change) {
        if !self.flags.contains_key(&Signal::Waiting) {
            self.raise(Signal::Waiting, now, evidence, change);
        }
        self.waiting_from_hook = true;
    }

    /// A new commit: clears NoCommits and RepeatedError (progress), restarts the commit clock.
    pub fn on_commit(&mut self, now: Timestamp) -> Change {
        let mut change = Change::default();
        self.last_commit = now;
        self.commit_from = now;
        self.errors.clear();
        self.retrying.reset(now);
        self.clear(Signal::NoCommits, &mut change);
        self.clear(Signal::RepeatedError, &mut change);
        change
    }

    /// Time passed: raises Silence and NoCommits when their periods are over.
    pub fn on_tick(&mut self, now: Timestamp, t: &Thresholds) -> Change {
        let mut change = Change::default();
        // The debounce leaves room for a done signal that raced the end of the turn.
        if let Some((at, _)) = &self.turn_ended
            && add(*at, t.input_debounce) <= now
            && let Some((_, last_words)) = self.turn_ended.take()
            && !self.waiting_acked
        {
            let mut evidence = "the agent ended its turn without signalling done".to_string();
            if let Some(last) = last_words.lines().rev().find(|l| !l.trim().is_empty()) {
                let mut last = last.trim().to_string();
                truncate(&mut last, 200);
                evidence.push_str(&format!("; its last words: \"{last}\""));
            }
            self.raise_from_hook(evidence, now, &mut change);
        }
        if let Some(after) = t.retrying {
            match self.retrying.check(after, now) {
                Streaking::Long { since, evidence }
                    if !self.flags.contains_key(&Signal::Retrying) =>
                {
                    self.raise(Signal::Retrying, since, evidence, &mut change);
                }
                Streaking::Over => self.clear(Signal::Retrying, &mut change),
                _ => {}
            }
        }
        // An agent waiting for a person is quiet and commits nothing: that is one cause, and
        // it is flagged already.
        let waiting = self.flags.contains_key(&Signal::Waiting);
        if let Some(d) = t.silence
            && !waiting
            && !self.flags.contains_key(&Signal::Silence)
            && add(self.quiet_from, d) <= now
        {
            let evidence = format!(
                "no output for {}",
                crate::duration::format(elapsed(self.last_output, now))
            );
            self.raise(
                Signal::Silence,
                add(self.quiet_from, d),
                evidence,
                &mut change,
            );
        }
        if let Some(d) = t.no_commits
            && self.git_repo
            && !waiting
            && !self.flags.contains_key(&Signal::NoCommits)
            && add(self.commit_from, d) <= now
        {
            let evidence = format!(
                "no commit for {}",
                crate::duration::format(elapsed(self.last_commit, now))
            );
            self.raise(
                Signal::NoCommits,
                add(self.commit_from, d),
                evidence,
                &mut change,
            );
        }
        change
    }

    /// A person acknowledged: clears every flag; each needs new evidence to come back.
    pub fn ack(&mut self, now: Timestamp) -> Change {
        let change = Change {
            raised: Vec::new(),
            cleared: self.flags.keys().copied().collect(),
        };
        self.flags.clear();
        self.errors.clear();
        self.retrying.reset(now);
        self.quiet_from = now;
        self.commit_from = now;
        self.waiting_acked = true;
        self.waiting_from_hook = false;
        self.turn_ended = None;
        self.tool_pending = None;
        change
    }

    /// A limit the agent waited out is over and it was told to continue: its quiet time
    /// and commit-less time start again, and what it showed while limited is old news.
    pub fn resume_after_limit(&mut self, now: Timestamp) {
        self.active(now);
        self.commit_from = now;
        self.errors.clear();
        self.turn_ended = None;
    }

    /// The raised flags, sorted by signal.
    pub fn flags(&self) -> Vec<Flag> {
        self.flags.values().cloned().collect()
    }

    /// When `on_tick` could next raise something, or when a screen check is due.
    pub fn next_wake(&self, t: &Thresholds) -> Option<Timestamp> {
        let waiting = self.flags.contains_key(&Signal::Waiting);
        let silence = t
            .silence
            .filter(|_| !waiting && !self.flags.contains_key(&Signal::Silence))
            .map(|d| add(self.quiet_from, d));
        let commits = t
            .no_commits
            .filter(|_| !waiting && self.git_repo && !self.flags.contains_key(&Signal::NoCommits))
            .map(|d| add(self.commit_from, d));
        let screen =
            (t.waiting && !self.screen_checked).then(|| add(self.last_output, t.input_debounce));
        let turn = self
            .turn_ended
            .as_ref()
            .map(|(at, _)| add(*at, t.input_debounce));
        let retrying = self
            .retrying
            .next_wake(t.retrying, self.flags.contains_key(&Signal::Retrying));
        [
            silence,
            commits,
            screen,
            turn,
            retrying,
            self.tool_look(t),
            self.limit_look,
            self.silence_look(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn raise(&mut self, signal: Signal, since: Timestamp, evidence: String, change: &mut Change) {
        let flag = Flag {
            signal,
            since,
            evidence,
        };
        self.flags.insert(signal, flag.clone());
        change.raised.push(flag);
    }

    fn clear(&mut self, signal: Signal, change: &mut Change) {
        if signal == Signal::Waiting {
            self.waiting_from_hook = false;
        }
        if self.flags.remove(&signal).is_some() {
            change.cleared.push(signal);
        }
    }
}
