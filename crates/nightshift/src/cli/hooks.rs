//! `nightshift hooks AGENT [--install]`: the hooks an agent CLI needs in its own user
//! settings, for agents that cannot take them per run (Gemini CLI).

use crate::out::outln;

use super::exit;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HookAgent {
    /// Gemini CLI: `~/.gemini/settings.json`
    Gemini,
}

#[derive(Debug, clap::Args)]
pub struct HooksArgs {
    /// The agent CLI
    pub agent: HookAgent,
    /// Add them to the agent's user settings (kept as they are otherwise); without it, print
    /// them
    #[arg(long)]
    pub install: bool,
}

pub(super) fn hooks(args: &HooksArgs) -> anyhow::Result<i32> {
    match args.agent {
        HookAgent::Gemini if args.install => {
            let file = crate::claude_state::install_gemini_hooks(&[])
                .map_err(|e| anyhow::anyhow!("cannot add the hooks: {e}"))?;
            outln!(
                "added nightshift's hooks to {} (they do nothing outside a nightshift run)",
                file.display()
            )?;
        }
        HookAgent::Gemini => {
            let snippet = crate::hook::gemini::user_settings();
            outln!(
                "# Add to ~/.gemini/settings.json (or run `nightshift hooks gemini --install`):\n{}",
                serde_json::to_string_pretty(&snippet)?
            )?;
        }
    }
    Ok(exit::SUCCESS)
}
