//! Progress reporting for the terminal: an indicatif bar on a TTY, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::ingest::Progress;

/// A progress bar on stderr when it is a terminal; otherwise a line every 10 %.
pub struct TermProgress {
    bar: Option<ProgressBar>,
    label: String,
    total: AtomicU64,
    done: AtomicU64,
    last_decile: Mutex<u64>,
}

impl TermProgress {
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:40.cyan/blue}] {pos}/{len} {per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label.to_owned());
            bar
        });
        Self {
            bar,
            label: label.to_owned(),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_decile: Mutex::new(0),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TermProgress {
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let total = self.total.load(Ordering::Relaxed).max(1);
        let decile = done * 10 / total;
        if let Ok(mut last) = self.last_decile.lock()
            && decile > *last
        {
            *last = decile;
            eprintln!("{}: {done}/{total}", self.label);
        }
    }

    fn message(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}
