//! The table at the end of a full `bench` run: every figure of the table, its target
//! and the verdict, in a form the README can quote.

use crate::out::outln;

struct Figure {
    name: String,
    value: String,
    target: String,
    /// `None`: not measured in this run (the value says why), or no verdict to give.
    ok: Option<bool>,
}

#[derive(Default)]
pub(super) struct Summary {
    figures: Vec<Figure>,
}

impl Summary {
    pub(super) fn add(&mut self, name: &str, value: String, target: &str, ok: Option<bool>) {
        self.figures.push(Figure {
            name: name.to_string(),
            value,
            target: target.to_string(),
            ok,
        });
    }

    /// A figure that was not measured, with why (and how to get it).
    pub(super) fn skipped(&mut self, name: &str, why: &str, target: &str) {
        self.add(name, why.to_string(), target, None);
    }

    /// A Markdown table, so it can be pasted as it is.
    pub(super) fn print(&self) -> std::io::Result<()> {
        outln!("summary (targets from issue 16; figures from this run):")?;
        outln!()?;
        outln!("| figure | value | target | verdict |")?;
        outln!("| --- | --- | --- | --- |")?;
        for f in &self.figures {
            let verdict = match f.ok {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "—",
            };
            outln!("| {} | {} | {} | {verdict} |", f.name, f.value, f.target)?;
        }
        Ok(())
    }
}
