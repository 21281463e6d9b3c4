//! How long work shows itself. On a terminal: one live line (spinner, elapsed time, k/N
//! where there is an N, the current step) redrawn in place, with finished steps printed
//! above it. Anywhere else (CI logs, `| cat`, a file): plain lines, one per step, with the
//! elapsed time and no control codes. Colour follows the same rule, and `NO_COLOR` turns
//! it off everywhere.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Whether output may redraw lines and use colour: both streams on a terminal (so
/// `sysext-test … | cat` is plain even though stderr still is one) and a terminal that can.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
        && std::io::stdout().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Whether to colour output: never with `NO_COLOR` set (no-color.org), never off a
/// terminal.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && interactive()
}

/// A long piece of work's progress on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// Starts showing `what`: at once on a terminal (the line ticks while nothing is
    /// said), as its first plain line elsewhere.
    pub fn start(what: &str) -> Progress {
        let started = Instant::now();
        if !interactive() {
            eprintln!("{what}");
            return Progress { bar: None, started };
        }
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix}{wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar: Some(bar),
            started,
        }
    }

    /// A step: the live line's message on a terminal, a plain line elsewhere. A step that
    /// begins `[k/N]` sets the live line's count.
    pub fn step(&self, text: &str) {
        match &self.bar {
            Some(bar) => {
                if let Some((count, rest)) = split_count(text) {
                    bar.set_prefix(format!("{count} "));
                    bar.set_message(rest.to_string());
                } else {
                    bar.set_message(text.trim().to_string());
                }
            }
            None => eprintln!("{:>6.1}s {text}", self.started.elapsed().as_secs_f64()),
        }
    }

    /// A line that stays (a finished case, a note), above the live line.
    pub fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{:>6.1}s {text}", self.started.elapsed().as_secs_f64()),
        }
    }

    /// Clears the live line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `[3/12] rest` → (`[3/12]`, `rest`).
fn split_count(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(']')?;
    let inner = text.strip_prefix('[')?.get(..end - 1)?;
    let (k, n) = inner.split_once('/')?;
    (k.parse::<usize>().is_ok() && n.parse::<usize>().is_ok())
        .then(|| (&text[..=end], text[end + 1..].trim_start()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_count_prefix_is_split_off() {
        assert_eq!(
            super::split_count("[3/12] vm::x ..."),
            Some(("[3/12]", "vm::x ..."))
        );
        assert_eq!(super::split_count("  baked it"), None);
        assert_eq!(super::split_count("[a/b] x"), None);
    }
}
