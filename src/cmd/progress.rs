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
        let show = !g.quiet && !g.json && std::io::stderr().is_terminal();
        let bar = if show {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Progress { bar }
    }

    /// Adds `n` bytes.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
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
