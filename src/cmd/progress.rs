//! Progress bars: shown on a terminal, off under `--json`, `-q` or a pipe.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::GlobalArgs;

/// A byte-count progress bar that may be hidden.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `total` bytes labelled `label`; hidden unless stderr is a
    /// terminal and neither `--json` nor `-q` was given.
    pub fn bytes(g: &GlobalArgs, total: u64, label: &str) -> Self {
        Self::new(g, Some(total), label)
    }

    /// A spinner with the bytes done and the rate, for a stream whose size
    /// is unknown (stdin).
    pub fn stream(g: &GlobalArgs, label: &str) -> Self {
        Self::new(g, None, label)
    }

    fn new(g: &GlobalArgs, total: Option<u64>, label: &str) -> Self {
        let show = !g.quiet && !g.json && std::io::stderr().is_terminal();
        let bar = if show {
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        // Rates are decimal (MB/s) everywhere obd prints one.
        let template = match total {
            Some(_) => {
                "{msg:>10} [{bar:40}] {decimal_bytes}/{decimal_total_bytes} \
                 {decimal_bytes_per_sec} eta {eta}"
            }
            None => "{msg:>10} {spinner} {decimal_bytes} {decimal_bytes_per_sec} {elapsed}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        if total.is_none() {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bar.set_message(label.to_string());
        Progress { bar }
    }

    /// Adds `n` bytes.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Sets the total.
    pub fn set_total(&self, n: u64) {
        self.bar.set_length(n);
    }

    /// Sets the bytes done.
    pub fn set(&self, n: u64) {
        self.bar.set_position(n);
    }

    /// A callback for the library.
    pub fn callback(&self) -> impl Fn(u64) + Sync + '_ {
        move |n| self.bar.inc(n)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
