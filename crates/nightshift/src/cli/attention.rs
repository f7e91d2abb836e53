//! `nightshift attention` and `nightshift ack`: who needs a person, and "I looked".

use crate::client::ack_task;
use crate::home::{Home, TaskState};
use crate::out::outln;
use crate::status;
use crate::term_text::clean_line;
use crate::tmux::Tmux;

use super::ls::signal_name;
use super::{exit, load_config};

#[derive(Debug, clap::Args)]
pub struct AttentionArgs {
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
}

pub(super) fn list(home: &Home, args: AttentionArgs) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    let flagged: Vec<status::TaskView> = status::collect_active(home, &config)?
        .into_iter()
        .filter(|t| t.state == TaskState::Running && !t.attention.is_empty())
        .collect();
    if args.json {
        outln!("{}", crate::term_text::to_json(&flagged)?)?;
        return Ok(exit::SUCCESS);
    }
    if flagged.is_empty() {
        outln!("no task needs attention")?;
        return Ok(exit::SUCCESS);
    }
    let tmux = Tmux::new(&config.tmux_socket);
    for t in &flagged {
        // Ids, titles and the agent's screen lines: cleaned for the terminal.
        let id = clean_line(&t.id, true);
        outln!("{id}  {}", clean_line(&t.title, true))?;
        for flag in &t.attention {
            let age = nightshift_core::duration::format(status::age(flag.since));
            outln!("  ⚑ {} for {age}", signal_name(flag.signal))?;
            for line in flag.evidence.lines() {
                outln!("      {}", clean_line(line, true))?;
            }
        }
        let session = t
            .last
            .as_ref()
            .and_then(|l| l.session.clone())
            .unwrap_or_else(|| crate::tmux::session_name(&t.id));
        match t.host.as_deref().filter(|h| *h != config.host) {
            // On another host of the fleet: how to reach its terminal there.
            Some(host) => {
                let how = crate::client::remote_attach(home, host, &session)?;
                for line in how.lines() {
                    outln!("  {}", clean_line(line.trim(), true))?;
                }
            }
            None => outln!(
                "  attach: {}   (or {} attach -t {})",
                crate::client::hint::command(home, &format!("attach {id}")),
                clean_line(&tmux.display_prefix(), true),
                clean_line(&session, true)
            )?,
        }
        outln!(
            "  then:   {}   once it is back on track",
            crate::client::hint::command(home, &format!("ack {id}"))
        )?;
        outln!()?;
    }
    Ok(exit::SUCCESS)
}

/// Records that a person looked: the daemon clears the flags, and raises them again only on
/// new evidence.
pub(super) fn ack(home: &Home, id: &str) -> anyhow::Result<i32> {
    outln!("{}", ack_task(home, id)?)?;
    Ok(exit::SUCCESS)
}
