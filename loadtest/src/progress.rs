//! The progress bar on stderr while load runs (indicatif; hidden when stderr is not a
//! terminal or with `--quiet`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Stop;
use crate::record::Counts;

/// A progress bar for one phase.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    stop: Stop,
}

impl Progress {
    /// A bar for a run that ends at `stop`; `label` names the phase.
    pub fn new(label: &str, stop: Stop, quiet: bool) -> Progress {
        let len = match stop {
            Stop::Waves(n) => n,
            Stop::After(d) => d.as_millis() as u64,
        };
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        let template = match stop {
            Stop::Waves(_) => "{prefix} [{bar:30}] {pos}/{len} waves {msg}",
            Stop::After(_) => "{prefix} [{bar:30}] {elapsed} {msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        Progress { bar, stop }
    }

    /// Shows `counts` after `elapsed`.
    pub fn update(&self, counts: Counts, elapsed: Duration) {
        let done = counts.ok + counts.errors;
        let position = match self.stop {
            Stop::Waves(_) => done,
            Stop::After(_) => elapsed.as_millis() as u64,
        };
        self.bar.set_position(position);
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{:.0}/s, {} answered, {} errors",
            rate, counts.ok, counts.errors
        ));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
