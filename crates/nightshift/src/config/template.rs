//! The `config.toml` that `nightshift init` writes.

/// The `config.toml` that `nightshift init` writes: every setting, commented.
pub const TEMPLATE: &str = r#"# nightshift configuration. Every setting is optional; the values shown are the defaults.
# A running daemon reloads this file when it changes (or on SIGHUP); a file that does not
# load is not taken, and `nightshift ls` says why.

# TIME LIMIT. An attempt that runs longer than this is stopped (its task fails, or is tried
# again if it has attempts left), so a hung agent never holds a slot all night. "off" for
# no limit. A task's own `timeout:` overrides it (`timeout: off` too).
# timeout = "4h"

# This host's name in a fleet (several hosts on one queue). Default: the machine's host
# name. NIGHTSHIFT_HOST overrides it. Letters, digits, ".", "_" and "-".
# host = "build-1"

# What this host offers. A task with `requires: [gpu]` starts only on a host with all the
# labels it requires; others leave it queued for a host that has them.
# labels = ["gpu", "macos"]

# How many agents may run at once.
# max_agents = 2

# The agent profile used when a task does not name one.
# default_agent = "claude"

# Where tasks without `workdir:` run. `nightshift add` fills in the current directory.
# workdir = "/home/me/src/project"

# Attempts per task when the task does not set `max_attempts:`. An attempt fails when the
# agent exits without signalling done, times out, or its session vanishes.
# max_attempts = 1

# The tmux server agents run on: a name (tmux -L) or a socket path (tmux -S). By default
# each home has its own, named after the home's path (`nightshift doctor` shows it), so two
# homes never share one by accident. Homes that do share a server leave each other's
# sessions alone. Attach with `nightshift attach ID`.
# tmux_socket = "nightshift"

# An output line starting with this marker means the agent is done. Agents can also run
# `nightshift done [--fail] [--summary TEXT]`.
# done_marker = "NIGHTSHIFT_DONE"

# How long an agent may keep running after it signalled done before its session is closed.
# grace_period = "10s"

# A hand-dropped task file is picked up once its writer closed it, or once it has been
# unchanged this long. `mv` into queue/ and `nightshift add` are picked up at once.
# settle = "1s"

# Safety-net rescan of the queue and of tmux, for missed file events.
# rescan_interval = "30s"
# The most each attempt's transcript keeps (its start and its latest output).
# transcript_limit = "50MB"

# logs/daemon.log is rotated at this size, keeping this many older files (daemon.log.1 is
# the newest). Set NIGHTSHIFT_LOG (e.g. "debug", "nightshift=debug") for more detail.
# log_max_size = "10MB"
# log_files = 5

# Size of agent panes.
# pane_width = 200
# pane_height = 50

# A task in a git repository runs in its own worktree on branch nightshift/<id>.
# isolation = "worktree"        # or "none": in the workdir itself, one task at a time there
# keep_worktrees = "failure"    # keep finished tasks' worktrees: "always", "failure", "never"
# worktree_pool = 2             # warm worktrees checked out ahead per repository (0: none);
#                               # each costs a full checkout of disk
# uncommitted = "commit"        # work left uncommitted at done: "commit" (WIP) or "flag"
# setup_timeout = "10m"         # for each `setup:` command of a task
# verify_timeout = "10m"        # for each `verify:` command (acceptance checks)
# verify_rounds = 2             # failed checks go back to the agent this often, then it fails
# preamble = "..."              # put before every prompt; "" for none

# Landing the work: at done, once the acceptance checks passed, push the task's branch
# (nightshift/<id>) to the remote of its repository. With `pr`, also open a draft pull
# request (GitHub, with `gh`) or merge request (GitLab, with `glab`) whose body is the run
# report. A failed push or a missing CLI is a reason in the report; the task is still done
# and the work stays on its branch and in its worktree. A profile ([agents.NAME]) or a task
# (`push:`, `pr:`, `remote:`) overrides these.
# push = false
# pr = false                    # pushes too
# remote = "origin"

# Where the queue lives. Without a url, in this home (a single host; no database needed).
# With one, in a PostgreSQL database that a fleet of hosts shares. NIGHTSHIFT_STORE_URL
# overrides the url. A password in the url is never shown (`***`); better keep it out of
# this file and use password_file.
# [store]
# url = "postgres://nightshift@db.example/nightshift?sslmode=require"
#                               # sslmode: disable, prefer or require; TLS always verifies the certificate
#                               # or libpq's form: "host=db.example dbname=nightshift user=nightshift"
# lease = "30s"                 # a host's claim on a running task lapses after this without renewal (at least 2s)
# password_file = "/home/me/.config/nightshift/db-password"  # its trimmed content; mode 600 (relative: to this file)
# ca_file = "/home/me/.config/nightshift/db-ca.pem"  # a private CA (or the server's self-signed certificate), trusted instead of the web's

# When a running agent needs a person. Each signal raises a flag (shown first by
# `nightshift ls` and listed by `nightshift attention`); it clears when the agent makes
# progress again, or by hand with `nightshift ack ID`. Durations take "off".
# [attention]
# no_commits = "15m"            # no new commit in the workdir (off when it is not a git repo)
# repeated_errors = 5           # the same error line this many times (0 = off) ...
# repeated_error_window = "10m" # ... within this window
# silence = "10m"               # no output at all while the agent runs
# retrying = "5m"               # the agent CLI keeps retrying its API (5xx, 429) this long
# waiting = true                # a question or a choice on the screen, nothing printed since
# input_debounce = "2s"         # how long output must be quiet before the screen is read
# error_patterns = []           # regexes for error lines (empty: built-in)
# waiting_patterns = []         # regexes for question lines (empty: built-in)
# renotify = "off"              # e.g. "1h": remind while a flag stays up
#
# What a flag does: "notify" (the default for the heuristics: they never kill an agent),
# "stop" (stop the agent, fail the task, keep the transcript) or "restart" (another attempt).
# timeout defaults to "stop", died (the agent exited without done) to "restart".
# [attention.policy]
# silence = "restart"
# repeated-error = "stop"
# timeout = "notify"

# Usage and rate limits. When an agent shows that it hit its plan's usage limit or the API's
# rate limit, its task is marked limited, new tasks for the same agent wait (other agents go
# on), and a person is told once. At the reset time it printed, plus the margin, the
# limited agents are typed `continue` and the hold lifts; without a reset time the wait
# starts at first_wait and doubles for each limit in a row. `nightshift resume-limited`
# lifts it now.
# [limits]
# enabled = true
# margin = "1m"
# first_wait = "5m"
# max_wait = "1h"
# continue = "continue"

# Notifications: as many [[notify]] entries as you like. Events: attention, cleared, done,
# failed, drained, held, limited, report (default: attention, done, failed, held, limited,
# report). Each message says what happened, to which task, why, and the command to attach.
# [[notify]]
# kind = "desktop"                        # notify-send on Linux, osascript on macOS
#
# [[notify]]
# kind = "webhook"
# url = "https://ntfy.sh/my-nightshift"   # any http(s) URL
# preset = "ntfy"                         # "json" (default), "ntfy" or "slack"
# events = ["attention", "failed", "drained"]
#
# [[notify]]
# kind = "command"                        # run directly, never through a shell
# command = ["/home/me/bin/page-me"]      # gets NIGHTSHIFT_NOTIFY_EVENT, _TASK, _TITLE, _BODY, _ATTACH, _JSON, _FILE
# min_interval = "5s"                     # at most one message per interval per channel

# The night report (`nightshift report` by hand): each day at `at`, the daemon writes the
# page into reports/ and sends a `report` event: desktop shows the headline and the page's
# path; command and webhook get the text summary as the body and the page as FILE / "file".
# [report]
# at = "07:30"                            # unset: no report is sent
# timezone = "Europe/Paris"               # default: the system's
# window = "12h"                          # how far back it looks

# Agent profiles. Built in: claude, codex, aider, gemini, test. Override or add your own.
# `command` is an argv template, never run through a shell. Placeholders:
#   {prompt}       the prompt as one argument
#   {prompt_file}  a file holding the prompt
#   {task_id} {workdir} {nightshift}
#   {hook_settings} a per-run file for the agent: Claude Code's settings with nightshift's
#                   hooks; for Gemini CLI, a --policy file that lets `nightshift done` run
#   {run_dir}      the run's folder (where `nightshift done` writes; for a sandbox)
# Without {prompt} or {prompt_file}, the prompt is appended as the last argument.
#
# [agents.claude]
# command = ["claude", "--settings", "{hook_settings}", "--permission-mode=acceptEdits", "--", "{prompt}"]
#
# A profile can change [attention] for its runs (a task's front matter can again):
# [agents.claude.attention]
# silence = "20m"
# waiting_patterns = ['(?i)^continue the migration\?']
#
# [agents.mine]
# command = ["my-agent", "--task-file", "{prompt_file}"]
# env = { MY_AGENT_MODE = "unattended" }
"#;
