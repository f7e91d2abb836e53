//! Noticing when a running agent needs a person: no commits for a while, the same error over
//! and over, a question on the screen, or silence.
//!
//! Pure, like the rest of `core`: the daemon feeds output lines, screen captures, commits and
//! clock ticks into a [`Watch`] and acts on the returned [`Change`]. A flag is raised once and
//! stays until its evidence goes away or a person acknowledges it, so nobody is nagged twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::LazyLock;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use regex::Regex;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    NoCommits,
    RepeatedError,
    Waiting,
    Silence,
    /// The task's wall-clock limit was reached.
    Timeout,
    /// The agent exited without signalling done, or its session vanished.
    Died,
}

impl Signal {
    /// What a raised flag does when nothing is configured: heuristics only notify; a timeout
    /// stops the agent; a dead agent is tried again while attempts remain.
    pub fn default_policy(self) -> crate::Policy {
        match self {
            Signal::Timeout => crate::Policy::Stop,
            Signal::Died => crate::Policy::Restart,
            _ => crate::Policy::Notify,
        }
    }

    /// Whether `policy` makes sense for this signal: a dead agent cannot be left running.
    pub fn check_policy(self, policy: crate::Policy) -> Result<(), String> {
        if self == Signal::Died && policy == crate::Policy::Notify {
            return Err(
                "died: the agent is gone, so the policy is `restart` (the default) or `stop`"
                    .into(),
            );
        }
        Ok(())
    }

    /// The kebab-case name used in config, files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Signal::NoCommits => "no-commits",
            Signal::RepeatedError => "repeated-error",
            Signal::Waiting => "waiting",
            Signal::Silence => "silence",
            Signal::Timeout => "timeout",
            Signal::Died => "died",
        }
    }
}

/// What an agent's own hooks (Claude Code's) say about it: precise where the screen guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// It asks a person: a permission prompt, a question dialog, or idling at its prompt.
    NeedsInput(String),
    /// It works: a prompt was submitted, or a tool is about to run or has run.
    Working,
    /// A turn ended; unless done was signalled, it now waits at its prompt. Its last words.
    TurnEnded(String),
    /// An API error ended the turn.
    TurnFailed(String),
}

/// A raised signal: since when (the moment its condition was met) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flag {
    pub signal: Signal,
    pub since: Timestamp,
    pub evidence: String,
}

/// Thresholds; `None` switches a signal off.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub no_commits: Option<Duration>,
    /// This many error lines that normalise the same, within this window.
    pub repeated_error: Option<(u32, Duration)>,
    pub silence: Option<Duration>,
    pub waiting: bool,
    /// A question counts only once output has been quiet this long (it may still be streaming).
    pub input_debounce: Duration,
    /// Lines that look like errors. Benign mentions (`"is_error": false`, `errors: 0`,
    /// `0 errors`, `no errors`) are cut from a line before these are tried.
    pub error_patterns: Vec<Regex>,
    /// Screen lines that ask the user something. Numbered yes/no menus and a plain question
    /// as the last line are recognised on top of these.
    pub waiting_patterns: Vec<Regex>,
}

const ERROR_PATTERNS: &[&str] = &[
    r"(?i)^\s*(error|fatal|panic(ked)?|exception|traceback)\b",
    r"(?i)^\s*thread '[^']*' panicked at\b",
    // `TypeError: ...`, `java.io.IOException: ...`
    r"^\s*[\w.$]*(Error|Exception):\s",
    // Compiler style: `src/a.c:3:1: error: ...`; the space keeps `std::error::Error` out.
    r"(?i)\berror(\[[\w-]+\])?:\s",
    r"\bFAILED\b",
    r"^\s*FAIL\s",
    r"\bERROR\b",
    r"^\s*npm ERR!",
    r"(?i): command not found\s*$",
];

/// Prompts any CLI may show.
const WAITING_PATTERNS: &[&str] = &[
    // Still unanswered: nothing typed after it.
    r"(?i)(\(y/n\)|\[y/n\]|\(yes/no\)|\[yes/no\])\s*[:?]?\s*$",
    // The highlighted item of a menu.
    r"^[❯›▸▶➤]\s*\d+[.)]\s+\S",
    r"(?i)^>\s*1[.)]\s+(yes|no|allow|approve|proceed|continue)\b",
    r"(?i)\bdo you want to\b.*\?$",
    r"(?i)\bwhat do you want to do\?",
    r"(?i)\bpress (enter|return|any key) to continue\b",
    r"(?i)^(allow|approve)\b.*\?$",
    r"(?i)\bwould you like to (run|make|apply|proceed|allow)\b",
];

/// Prompts of particular agent CLIs, by program name (what their screens say; see
/// shared/research/orchestrators.md §2.6). They add to the generic ones.
const AGENT_WAITING_PATTERNS: &[(&str, &[&str])] = &[
    (
        "claude",
        &[
            r"(?i)\bdo you trust the files in this folder\b",
            r"(?i)\btrust this folder\b",
            r"(?i)\bis this a project you created or one you trust\b",
            r"(?i)\bstop and wait for (the )?limit to reset\b",
            // Esc fires no hook; this line is all there is.
            r"(?i)\binterrupted\b.*\bwhat should claude do instead\b",
            r"(?i)\benter to (select|confirm)\b.*\besc to cancel\b",
        ],
    ),
    (
        "codex",
        &[
            r"(?i)\bpress enter to confirm or esc to cancel\b",
            r"(?i)\ballow command\?",
            r"(?i)\benter to submit answer\b",
            r"(?i)\bopen documentation url for more info\b",
        ],
    ),
    (
        "aider",
        &[r"(?i)\(y\)es/\(n\)o", r"(?i)\(d\)on't ask again"],
    ),
    (
        "gemini",
        &[
            r"(?i)\byes, allow once\b",
            r"(?i)\bwaiting for user confirmation\b",
            r"(?i)\ballow execution\b.*\?",
        ],
    ),
];

/// The built-in prompt patterns of an agent CLI, found by its program's file name
/// (`/usr/local/bin/claude` → Claude Code's); none for programs not known.
pub fn agent_waiting_patterns(program: &str) -> Vec<Regex> {
    let name = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    AGENT_WAITING_PATTERNS
        .iter()
        .find(|(agent, _)| *agent == name)
        .map(|(_, patterns)| compile(patterns))
        .unwrap_or_default()
}

/// Benign mentions of errors, cut from a line before the error patterns are tried.
const BENIGN: &[&str] = &[
    r#"(?i)["']?[\w.-]*(error|fail)[\w.-]*["']?\s*[:=]\s*((null|nil|none|false|0)\b|\[\]|\{\}|""|'')"#,
    r"(?i)\b(0|no|zero|without)\s+(errors?|failures?|failed)\b",
];

/// Status and input lines agent UIs keep below their last message.
const CHROME: &[&str] = &[
    r"(?i)for shortcuts|shift\+tab|auto-accept|bypass permissions|context left|esc to (interrupt|cancel)|\? for help|/help for help",
    r"^[>❯›]\s",
];

const ANSWERS: &str = r"(?i)^[❯›▸▶➤>●]?\s*1[.)]\s+(yes|no|allow|approve|proceed|continue|accept|ok|always|deny|reject|cancel|stop|wait|trust|don't)\b";
const MENU_ITEM_2: &str = r"^[❯›▸▶➤>●]?\s*2[.)]\s+\S";

/// Compiles built-in patterns. They are constants (a test checks that all compile), so one
/// that did not would be a bug to fix here, not an error to report at run time.
fn compile(patterns: &[&str]) -> Vec<Regex> {
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

static BENIGN_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| compile(BENIGN));
static CHROME_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| compile(CHROME));
static MENU_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| compile(&[ANSWERS, MENU_ITEM_2]));
/// Any numbered choice, highlighted or not: `❯ 1. Yes`, `  2. No`.
static OPTION_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| compile(&[r"^[❯›▸▶➤>]?\s*\d+[.)]\s+\S"]));
static NORM_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    compile(&[
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?",
        r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b",
        r#"(/private)?/var/folders/[^/\s]+/[^/\s]+/[TC]/[^/\s:'"]+|(/private)?/(var/)?tmp/[^/\s:'"]+"#,
        r"\b0[xX][0-9a-fA-F]+\b",
        r"\b[0-9a-fA-F]{7,}\b",
        r"\b\d+(\.\d+)*",
    ])
});

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            no_commits: Some(Duration::from_secs(15 * 60)),
            repeated_error: Some((5, Duration::from_secs(10 * 60))),
            silence: Some(Duration::from_secs(10 * 60)),
            waiting: true,
            input_debounce: Duration::from_secs(2),
            error_patterns: compile(ERROR_PATTERNS),
            waiting_patterns: compile(WAITING_PATTERNS),
        }
    }
}

impl Thresholds {
    /// Builds patterns from strings (config); an invalid regex is an error naming it. A
    /// non-empty list replaces the built-ins; an empty one keeps them.
    pub fn with_patterns(errors: &[String], waiting: &[String]) -> Result<Thresholds, String> {
        fn build(kind: &str, list: &[String], into: &mut Vec<Regex>) -> Result<(), String> {
            if !list.is_empty() {
                *into = list
                    .iter()
                    .map(|p| {
                        Regex::new(p).map_err(|e| format!("invalid {kind} pattern `{p}`: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            Ok(())
        }
        let mut t = Thresholds::default();
        build("error", errors, &mut t.error_patterns)?;
        build("waiting", waiting, &mut t.waiting_patterns)?;
        Ok(t)
    }
}

/// What changed in a run's flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub raised: Vec<Flag>,
    pub cleared: Vec<Signal>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.raised.is_empty() && self.cleared.is_empty()
    }
}

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
    /// Recent times of each normalised error line (at most the threshold count).
    errors: HashMap<String, VecDeque<Timestamp>>,
    flags: BTreeMap<Signal, Flag>,
    /// The error patterns as one set: a line is scanned once, not once per pattern.
    error_set: ErrorSet,
}

/// A [`RegexSet`](regex::RegexSet) of the error patterns, rebuilt when they change.
#[derive(Debug, Clone, Default)]
struct ErrorSet {
    sources: Vec<String>,
    set: Option<regex::RegexSet>,
}

impl ErrorSet {
    fn of(&mut self, patterns: &[Regex]) -> Option<regex::RegexSet> {
        let same = self
            .sources
            .iter()
            .map(String::as_str)
            .eq(patterns.iter().map(Regex::as_str));
        if !same || self.set.is_none() {
            self.sources = patterns.iter().map(|r| r.as_str().to_string()).collect();
            self.set = regex::RegexSet::new(&self.sources).ok();
        }
        self.set.clone()
    }
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
            errors: HashMap::new(),
            error_set: ErrorSet::default(),
            flags: BTreeMap::new(),
        }
    }

    /// New output lines arrived: activity (clears Waiting and Silence), and error counting.
    pub fn on_output(&mut self, lines: &[String], now: Timestamp, t: &Thresholds) -> Change {
        let mut change = Change::default();
        if lines.is_empty() {
            return change;
        }
        self.active(now);
        if !self.waiting_from_hook {
            self.waiting_acked = false;
            self.clear(Signal::Waiting, &mut change);
        }
        self.clear(Signal::Silence, &mut change);
        let Some((count, window)) = t.repeated_error else {
            return change;
        };
        let count = count.max(1) as usize;
        let set = self.error_set.of(&t.error_patterns);
        let cutoff = sub(now, window);
        self.errors.retain(|_, times| {
            while times.front().is_some_and(|at| *at < cutoff) {
                times.pop_front();
            }
            !times.is_empty()
        });
        for line in lines {
            let text = strip_ansi(line);
            let text = text.trim();
            // The set says whether any pattern could match, in one scan.
            if set.as_ref().is_some_and(|s| !s.is_match(text))
                || !is_error_line(text, &t.error_patterns)
            {
                continue;
            }
            let mut key = normalize(text);
            truncate(&mut key, 500);
            let times = self.errors.entry(key).or_default();
            times.push_back(now);
            if times.len() > count {
                times.pop_front();
            }
            let seen = times.len();
            if seen >= count && !self.flags.contains_key(&Signal::RepeatedError) {
                let mut quoted = text.to_string();
                truncate(&mut quoted, 200);
                let evidence = format!(
                    "\"{quoted}\" seen {seen} times in {}",
                    crate::task::format_duration(window)
                );
                self.raise(Signal::RepeatedError, now, evidence, &mut change);
            }
        }
        change
    }

    /// The visible screen after output has been quiet for `input_debounce`: raises Waiting
    /// when its last lines ask something, clears it when they no longer do.
    pub fn on_screen(&mut self, screen: &str, now: Timestamp, t: &Thresholds) -> Change {
        let mut change = Change::default();
        if !t.waiting || now < add(self.last_output, t.input_debounce) {
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
        match hook {
            Hook::Working => {
                self.active(now);
                self.turn_ended = None;
                self.waiting_acked = false;
                self.clear(Signal::Waiting, &mut change);
                self.clear(Signal::Silence, &mut change);
            }
            Hook::NeedsInput(evidence) | Hook::TurnFailed(evidence) => {
                self.turn_ended = None;
                // After an ack, only a new prompt (which comes after work) raises again.
                if t.waiting && !self.waiting_acked {
                    self.raise_from_hook(evidence, now, &mut change);
                }
            }
            Hook::TurnEnded(last_words) => {
                if t.waiting && !self.flags.contains_key(&Signal::Waiting) {
                    self.turn_ended = Some((now, last_words));
                }
            }
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
                crate::task::format_duration(elapsed(self.last_output, now))
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
                crate::task::format_duration(elapsed(self.last_commit, now))
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
        self.quiet_from = now;
        self.commit_from = now;
        self.waiting_acked = true;
        self.waiting_from_hook = false;
        self.turn_ended = None;
        change
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
        [silence, commits, screen, turn].into_iter().flatten().min()
    }

    /// Whether a screen capture is due now: quiet for `input_debounce`, not yet read.
    pub fn screen_due(&self, now: Timestamp, t: &Thresholds) -> bool {
        t.waiting && !self.screen_checked && add(self.last_output, t.input_debounce) <= now
    }

    /// Like `screen_due`, and counts the capture as made, so it is asked for once per quiet
    /// period (new output makes the next one due).
    pub fn take_screen_due(&mut self, now: Timestamp, t: &Thresholds) -> bool {
        let due = self.screen_due(now, t);
        if due {
            self.screen_checked = true;
        }
        due
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

/// Normalises a line for repeat counting: no ANSI, trimmed, with numbers, hex, timestamps and
/// temp paths masked, so the same error at another time or place compares equal.
pub fn normalize(line: &str) -> String {
    let mut s = strip_ansi(line).trim().to_string();
    let masks = ["<time>", "<time>", "<tmp>", "<hex>", "", "N"];
    for (i, (re, mask)) in NORM_RE.iter().zip(masks).enumerate() {
        s = if i == 4 {
            // Long hex runs (hashes) need a digit, so words like `deadbeef` survive.
            re.replace_all(&s, |c: &regex::Captures| {
                let run = &c[0];
                if run.bytes().all(|b| b.is_ascii_digit()) {
                    "N".to_string()
                } else if run.bytes().any(|b| b.is_ascii_digit()) {
                    "<hex>".to_string()
                } else {
                    run.to_string()
                }
            })
            .into_owned()
        } else {
            re.replace_all(&s, mask).into_owned()
        };
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_error_line(text: &str, patterns: &[Regex]) -> bool {
    // Removing benign phrases only takes matches away: a line no pattern matches as it is
    // (nearly every line) needs no cleaning.
    if !patterns.iter().any(|re| re.is_match(text)) {
        return false;
    }
    let mut cleaned = text.to_string();
    for re in BENIGN_RE.iter() {
        cleaned = re.replace_all(&cleaned, " ").into_owned();
    }
    patterns.iter().any(|re| re.is_match(&cleaned))
}

/// How many non-empty screen lines, from the bottom, may hold a prompt or menu.
const SCREEN_TAIL: usize = 8;

/// The evidence for a question on the screen, if its last lines ask one.
fn question(screen: &str, patterns: &[Regex]) -> Option<String> {
    let lines: Vec<String> = strip_ansi(screen)
        .lines()
        .map(|l| {
            l.trim_matches(|c: char| c.is_whitespace() || "│┃║╭╮╰╯─━═┌┐└┘├┤┬┴┼╔╗╚╝▌▐█|".contains(c))
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(SCREEN_TAIL)..];
    // A prompt still waits only if nothing but chrome follows it, or it heads a menu (a
    // dialog stays on screen until answered). A line prompt that was answered has the
    // answer and more output below it.
    let open = |i: usize| {
        let after = &tail[i + 1..];
        after.iter().all(|l| is_chrome(l))
            || after
                .iter()
                .any(|l| OPTION_RE.iter().any(|re| re.is_match(l)))
    };
    let hit = tail
        .iter()
        .enumerate()
        .find(|(i, l)| patterns.iter().any(|re| re.is_match(l)) && open(*i))
        .map(|(_, l)| l)
        .or_else(|| {
            let (one, two) = (MENU_RE.first()?, MENU_RE.get(1)?);
            tail.windows(2)
                .find(|w| one.is_match(&w[0]) && two.is_match(&w[1]))
                .map(|w| &w[0])
        })
        .or_else(|| {
            let last = tail.iter().rev().find(|l| !is_chrome(l))?;
            is_prose_question(last).then_some(last)
        })?;
    let context = &tail[tail.len().saturating_sub(5)..];
    Some(format!("{hit}\n  {}", context.join("\n  ")))
}

fn is_chrome(line: &str) -> bool {
    !line.chars().any(char::is_alphabetic) || CHROME_RE.iter().any(|re| re.is_match(line))
}

/// A sentence to the user ending in `?`, not a line of code.
fn is_prose_question(line: &str) -> bool {
    let text = line.trim_start_matches(['⏺', '●', '•', '✻', ' ']);
    let body = text.trim_end_matches(['*', '"', ' ']);
    const CODE: &[&str] = &[
        "==", "!=", "?;", "?.", "?)", ";", "{", "}", "=>", "->", "::", "()", "&&", "||", " = ",
    ];
    body.ends_with('?')
        && !text.starts_with("//")
        && text.chars().next().is_some_and(char::is_alphabetic)
        && text.split_whitespace().count() >= 3
        && !CODE.iter().any(|c| text.contains(c))
}

fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    super::completion::strip_ansi(text)
}

fn truncate(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
}

fn add(at: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn sub(at: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    at.checked_sub(d).unwrap_or(Timestamp::MIN)
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn has(w: &Watch, s: Signal) -> bool {
        w.flags().iter().any(|f| f.signal == s)
    }

    fn err(t: &Thresholds, line: &str) -> bool {
        is_error_line(&strip_ansi(line), &t.error_patterns)
    }

    /// With the generic patterns and every agent's own.
    fn asks(screen: &str) -> bool {
        let mut patterns = Thresholds::default().waiting_patterns;
        for (agent, _) in AGENT_WAITING_PATTERNS {
            patterns.extend(agent_waiting_patterns(agent));
        }
        question(screen, &patterns).is_some()
    }

    #[test]
    fn built_in_patterns_all_compile() {
        let t = Thresholds::default();
        assert_eq!(t.error_patterns.len(), ERROR_PATTERNS.len());
        assert_eq!(t.waiting_patterns.len(), WAITING_PATTERNS.len());
        for (agent, patterns) in AGENT_WAITING_PATTERNS {
            assert_eq!(
                agent_waiting_patterns(agent).len(),
                patterns.len(),
                "{agent}"
            );
        }
        assert_eq!(
            agent_waiting_patterns("/opt/bin/codex").len(),
            agent_waiting_patterns("codex").len()
        );
        assert!(agent_waiting_patterns("my-agent").is_empty());
        assert_eq!(BENIGN_RE.len(), BENIGN.len());
        assert_eq!(CHROME_RE.len(), CHROME.len());
        assert_eq!(MENU_RE.len(), 2);
        assert_eq!(NORM_RE.len(), 6);
    }

    #[test]
    fn error_lines_and_look_alikes() {
        let t = Thresholds::default();
        for yes in [
            "error[E0308]: mismatched types",
            "\x1b[1;31merror\x1b[0m: could not compile `x`",
            "fatal: not a git repository",
            "thread 'main' panicked at src/main.rs:2:5:",
            "Traceback (most recent call last):",
            "TypeError: x is not a function",
            "src/a.c:3:1: error: expected ';'",
            "test parse::tests::it ... FAILED",
            "bash: foo: command not found",
        ] {
            assert!(err(&t, yes), "{yes:?} should count");
        }
        for no in [
            r#""is_error": false"#,
            r#"{"type":"result","is_error":false,"error": null,"result":"ok"}"#,
            r#""error": null"#,
            r#""error": {"code": 1}"#,
            r#""errors": []"#,
            "0 errors",
            "Compiled with no errors.",
            "errors: 0",
            "error_count=0",
            r#"{"FAILED": 0}"#,
            "use std::error::Error;",
            "fn main() -> Result<(), Box<dyn Error>> { x?; }",
            "warning: unused variable `x`",
            "test result: ok. 10 passed; 0 failed",
        ] {
            assert!(!err(&t, no), "{no:?} should not count");
        }
    }

    #[test]
    fn normalize_masks_volatile_parts() {
        assert_eq!(
            normalize("error at 12:01:02 in /tmp/x1/a.rs:10"),
            normalize("error at 12:05:09 in /tmp/y2/a.rs:11")
        );
        assert_eq!(
            normalize("\x1b[31m2024-05-01T10:00:00Z panic at 0xdeadbeef commit 3f2a9c1e\x1b[0m "),
            normalize("2025-01-02T11:22:33.5+02:00 panic at 0x1234 commit 9b8c7d6e")
        );
        assert_eq!(
            normalize("/var/folders/ab/cd12/T/.tmpXy/src/a.rs:3:1: error"),
            normalize("/var/folders/ab/cd12/T/.tmpQz/src/a.rs:9:4: error")
        );
        assert_ne!(normalize("error[E0308]: x"), normalize("error[E0599]: x"));
        assert_ne!(
            normalize("error: /tmp/a/x.rs"),
            normalize("error: /tmp/a/y.rs")
        );
    }

    #[test]
    fn repeated_error_needs_the_count_within_the_window() {
        let t = Thresholds::default();
        let e = lines(&["error[E0308]: mismatched types"]);
        let mut w = Watch::new(at(0), true);
        for i in 0..4 {
            assert!(w.on_output(&e, at(i * 140), &t).raised.is_empty());
        }
        let c = w.on_output(&e, at(600), &t);
        assert_eq!(c.raised.len(), 1);
        assert_eq!(c.raised[0].signal, Signal::RepeatedError);
        assert_eq!(
            c.raised[0].evidence,
            r#""error[E0308]: mismatched types" seen 5 times in 10m"#
        );
        // Raised once only.
        assert!(w.on_output(&e, at(610), &t).raised.is_empty());

        // Five spread over 30 minutes: never five within ten.
        let mut w = Watch::new(at(0), true);
        for i in 0..5 {
            assert!(w.on_output(&e, at(i * 450), &t).is_empty());
        }
        assert!(!has(&w, Signal::RepeatedError));
    }

    #[test]
    fn errors_differing_in_volatile_parts_are_the_same() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), true);
        for i in 0..5 {
            let line = format!("error at 12:0{i}:1{i} in /tmp/run{i}/a.rs:{}", 10 + i);
            w.on_output(&[line], at(i * 10), &t);
        }
        assert!(has(&w, Signal::RepeatedError));
        // Distinct errors don't add up.
        let mut w = Watch::new(at(0), true);
        for code in ["E0308", "E0599", "E0425", "E0277", "E0382"] {
            w.on_output(&[format!("error[{code}]: oops")], at(1), &t);
        }
        assert!(!has(&w, Signal::RepeatedError));
    }

    #[test]
    fn benign_error_mentions_never_count() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), true);
        let l = lines(&[r#"{"type":"result","is_error": false}"#, "errors: 0"]);
        for i in 0..50 {
            w.on_output(&l, at(i), &t);
        }
        assert!(!has(&w, Signal::RepeatedError));
    }

    #[test]
    fn committing_agent_is_never_flagged_and_idle_one_is() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), true);
        for s in (0..7200).step_by(30) {
            if s % 300 == 0 && s > 0 {
                w.on_commit(at(s));
            }
            w.on_output(&lines(&["working"]), at(s), &t);
            assert!(w.on_tick(at(s), &t).is_empty(), "at {s}s");
        }
        let mut w = Watch::new(at(0), true);
        w.on_output(&lines(&["x"]), at(850), &t);
        assert!(w.on_tick(at(899), &t).is_empty());
        let c = w.on_tick(at(900), &t);
        assert_eq!(c.raised.len(), 1);
        let f = w
            .flags()
            .into_iter()
            .find(|f| f.signal == Signal::NoCommits)
            .unwrap();
        assert_eq!(f.evidence, "no commit for 15m");
        assert_eq!(f.since, at(900));
        assert!(
            !w.on_tick(at(2000), &t)
                .raised
                .iter()
                .any(|f| f.signal == Signal::NoCommits)
        );
        let c = w.on_commit(at(2000));
        assert_eq!(c.cleared, vec![Signal::NoCommits]);
        assert!(w.on_tick(at(2000 + 899), &t).raised.is_empty());
        assert!(!has(&w, Signal::NoCommits));
        assert_eq!(w.on_tick(at(2900), &t).raised[0].signal, Signal::NoCommits);
    }

    #[test]
    fn no_commits_is_off_outside_a_repository() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), false);
        for s in (0..36_000).step_by(60) {
            w.on_output(&lines(&["x"]), at(s), &t);
            w.on_tick(at(s), &t);
            assert!(!has(&w, Signal::NoCommits));
        }
        let (mut w, t) = (
            Watch::new(at(0), false),
            Thresholds {
                silence: None,
                waiting: false,
                ..Thresholds::default()
            },
        );
        assert_eq!(w.next_wake(&t), None);
        assert!(w.on_tick(at(100_000), &t).is_empty());
    }

    #[test]
    fn slow_progress_is_not_silence_but_quiet_is() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), false);
        for s in (0..3600).step_by(30) {
            w.on_output(&lines(&["   Compiling foo v0.1.0"]), at(s), &t);
            assert!(w.on_tick(at(s + 29), &t).is_empty());
        }
        assert!(w.on_tick(at(3570 + 599), &t).is_empty());
        let c = w.on_tick(at(3570 + 600), &t);
        assert_eq!(c.raised[0].signal, Signal::Silence);
        assert_eq!(c.raised[0].evidence, "no output for 10m");
        let c = w.on_output(&lines(&["back"]), at(5000), &t);
        assert_eq!(c.cleared, vec![Signal::Silence]);
    }

    #[test]
    fn question_waits_for_quiet_output() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), false);
        let screen = "Installing...\nOverwrite config? (y/n) ";
        w.on_output(&lines(&["Overwrite config? (y/n) "]), at(10), &t);
        assert!(!w.screen_due(at(11), &t));
        assert!(w.on_screen(screen, at(11), &t).is_empty());
        assert_eq!(w.next_wake(&t), Some(at(12)));
        assert!(w.screen_due(at(12), &t));
        let c = w.on_screen(screen, at(12), &t);
        assert_eq!(c.raised[0].signal, Signal::Waiting);
        assert!(c.raised[0].evidence.starts_with("Overwrite config? (y/n)"));
        assert!(!w.screen_due(at(20), &t));
        // Waiting for a person: silence would only say the same again.
        assert_eq!(w.next_wake(&t), None);
        assert!(w.on_tick(at(10 + 600), &t).is_empty());
        let c = w.on_output(&lines(&["y"]), at(30), &t);
        assert_eq!(c.cleared, vec![Signal::Waiting]);
        assert!(w.screen_due(at(32), &t));
        // The screen no longer asks: nothing, and Waiting stays clear.
        assert!(
            w.on_screen("Overwrite config? (y/n) y\ndone", at(32), &t)
                .is_empty()
        );
        assert!(!Thresholds::default().waiting_patterns.is_empty());
        let off = Thresholds {
            waiting: false,
            ..Thresholds::default()
        };
        assert!(!w.screen_due(at(40), &off));
        assert!(w.on_screen(screen, at(40), &off).is_empty());
    }

    #[test]
    fn agent_prompts_are_recognised() {
        let claude = "⏺ I'll delete the build dir.\n╭────────────╮\n│ Bash command │\n│   rm -rf build │\n│ Do you want to proceed? │\n│ ❯ 1. Yes │\n│   2. No, and tell Claude what to do differently (esc) │\n╰────────────╯\n";
        let trust = "│ Do you trust the files in this folder? │\n│ /work/x │\n│ ❯ 1. Yes, proceed │\n│   2. No, exit │\n";
        let limit = "Claude usage limit reached.\nWhat do you want to do?\n❯ 1. Stop and wait for limit to reset\n  2. Upgrade your plan\n";
        for screen in [
            claude,
            trust,
            limit,
            "Install deps? [Y/n]",
            "Apply changes? [y/N] ",
            "Continue (yes/no)?",
            "Add src/a.rs to the chat? (Y)es/(N)o/(D)on't ask again [Yes]:",
            "Press Enter to continue",
            "Which option?\n1. Yes\n2. No",
            "> 1. Yes, allow once\n  2. No",
            "⏺ Should I also update the README?\n╭──────╮\n│ >    │\n╰──────╯\n  ? for shortcuts\n",
            "Quick safety check: Is this a project you created or one you trust?\n  1. Yes, I trust this folder\n ❯ 2. No, exit\n Enter to confirm · Esc to cancel",
            "⎿  Interrupted · What should Claude do instead?\n╭────╮\n│ >  │\n╰────╯\n  ? for shortcuts",
            "Allow command?\n  ls -la\n Press enter to confirm or esc to cancel",
            "Apply this change?\n● Yes, allow once\n  Yes, allow always\n  No\nWaiting for user confirmation...",
        ] {
            assert!(asks(screen), "{screen:?}");
        }
        // Agent-specific prompts count only for their agent.
        let interrupted = "⎿  Interrupted · What should Claude do instead?\n  ? for shortcuts";
        let generic = Thresholds::default().waiting_patterns;
        assert!(question(interrupted, &generic).is_none());
        assert!(question(interrupted, &agent_waiting_patterns("claude")).is_some());
        for screen in [
            "fn main() -> Result<(), Box<dyn Error>> { x?; }",
            "let v = parse(input)?",
            "// why is this here?",
            "# what does this do?",
            "* is it fine?",
            "    if a == b ? c : d ?",
            // A question in earlier output, then more output.
            "Should I do it?\nDoing it\nDone.",
            "Overwrite? (y/n) y\ncopied 3 files",
            "Summary:\n1. Fixed the parser\n2. Added tests",
            "ok?",
            "",
        ] {
            assert!(!asks(screen), "{screen:?}");
        }
    }

    #[test]
    fn ack_clears_and_needs_new_evidence() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), true);
        let e = lines(&["fatal: boom"]);
        for _ in 0..5 {
            w.on_output(&e, at(0), &t);
        }
        w.on_tick(at(900), &t);
        w.on_screen("Proceed? (y/n)", at(900), &t);
        let all = [
            Signal::NoCommits,
            Signal::RepeatedError,
            Signal::Waiting,
            Signal::Silence,
        ];
        assert_eq!(w.flags().iter().map(|f| f.signal).collect::<Vec<_>>(), all);
        let c = w.ack(at(1000));
        assert_eq!(c.cleared, all);
        assert!(w.flags().is_empty());
        assert!(w.on_tick(at(1001), &t).is_empty());
        assert!(w.on_screen("Proceed? (y/n)", at(1002), &t).is_empty());
        assert!(w.on_output(&e, at(1003), &t).raised.is_empty());
        // New evidence: a fresh burst, a new quiet period with a question, full periods.
        for _ in 0..4 {
            w.on_output(&e, at(1004), &t);
        }
        assert!(has(&w, Signal::RepeatedError));
        assert!(w.on_tick(at(1004 + 599), &t).raised.is_empty());
        assert_eq!(w.on_tick(at(1604), &t).raised[0].signal, Signal::Silence);
        assert!(w.on_tick(at(1000 + 899), &t).raised.is_empty());
        assert_eq!(w.on_tick(at(1900), &t).raised[0].signal, Signal::NoCommits);
        assert!(w.on_screen("Proceed? (y/n)", at(1901), &t).raised.len() == 1);
    }

    #[test]
    fn an_answered_line_prompt_no_longer_asks() {
        assert!(asks("Working...\nContinue? (y/n)\n"));
        assert!(!asks("Continue? (y/n)\ny\nanswer: y\ncopying files\n"));
        // A dialog with its menu below still asks.
        assert!(asks(
            "Do you want to proceed?\n❯ 1. Yes\n  2. No, and tell Claude what to do differently\n"
        ));
    }

    #[test]
    fn next_wake_and_screen_due() {
        let t = Thresholds::default();
        let mut w = Watch::new(at(0), true);
        assert_eq!(w.next_wake(&t), Some(at(2)));
        assert!(!w.screen_due(at(1), &t));
        assert!(w.screen_due(at(2), &t));
        assert!(w.take_screen_due(at(2), &t));
        assert!(!w.take_screen_due(at(2), &t), "asked for once");
        assert_eq!(w.next_wake(&t), Some(at(600)));
        w.on_screen("$ ", at(2), &t);
        assert!(!w.screen_due(at(3), &t));
        w.on_tick(at(600), &t);
        assert_eq!(w.next_wake(&t), Some(at(900)));
        w.on_tick(at(900), &t);
        assert_eq!(w.next_wake(&t), None);
        w.on_output(&lines(&["x"]), at(950), &t);
        assert_eq!(w.next_wake(&t), Some(at(952)));
        w.on_commit(at(960));
        w.on_screen("$ ", at(960), &t);
        assert_eq!(w.next_wake(&t), Some(at(1550)));
    }

    #[test]
    fn configured_patterns() {
        let e = Thresholds::with_patterns(&["(unclosed".into()], &[]).unwrap_err();
        assert!(e.contains("(unclosed"), "{e}");
        let t = Thresholds::with_patterns(&[], &[]).unwrap();
        assert_eq!(t.error_patterns.len(), ERROR_PATTERNS.len());
        let t = Thresholds::with_patterns(&["^OOPS".into()], &["^READY>".into()]).unwrap();
        assert!(err(&t, "OOPS it broke") && !err(&t, "error: x"));
        assert!(question("READY>", &t.waiting_patterns).is_some());
    }

    #[test]
    fn change_and_serde() {
        assert!(Change::default().is_empty());
        assert!(
            !Change {
                raised: vec![],
                cleared: vec![Signal::Silence]
            }
            .is_empty()
        );
        let json = serde_json::to_string(&Signal::RepeatedError).unwrap();
        assert_eq!(json, r#""repeated-error""#);
    }
}
