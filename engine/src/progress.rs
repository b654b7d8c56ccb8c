//! Showing a sync's progress: a bar per stream on a terminal (records, rate,
//! ETA from the server's count), log lines otherwise.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;

/// Receives progress events from the sync engine.
pub trait Progress: Send + Sync {
    /// A partition reported the server's count of its rows.
    fn expect(&self, stream: &str, rows: u64);
    /// A page of `records` was committed.
    fn committed(&self, stream: &str, records: u64);
    /// The stream ended with `verdict`.
    fn finished(&self, stream: &str, verdict: &str);
}

/// No output.
pub struct Silent;

impl Progress for Silent {
    fn expect(&self, _: &str, _: u64) {}
    fn committed(&self, _: &str, _: u64) {}
    fn finished(&self, _: &str, _: &str) {}
}

/// `tracing` lines (shown with `CONNECTOR_HOST_LOG=info`): for logs and pipes.
#[derive(Default)]
pub struct LogLines {
    totals: Mutex<HashMap<String, (u64, u64)>>,
}

impl Progress for LogLines {
    fn expect(&self, stream: &str, rows: u64) {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.entry(stream.to_string()).or_default().1 += rows;
    }

    fn committed(&self, stream: &str, records: u64) {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let entry = t.entry(stream.to_string()).or_default();
        entry.0 += records;
        tracing::info!(target: "progress", stream, records = entry.0, server_total = entry.1, "page committed");
    }

    fn finished(&self, stream: &str, verdict: &str) {
        tracing::info!(target: "progress", stream, verdict, "stream finished");
    }
}

/// One bar per stream on a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Bars {
    fn bar(&self, stream: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(stream.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(0));
                let style = ProgressStyle::with_template(
                    "{prefix:<22} [{bar:30}] {pos:>9}/{len:<9} {rate:>10} ETA {eta:<4} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                )
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(stream.to_string());
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn expect(&self, stream: &str, rows: u64) {
        self.bar(stream).inc_length(rows);
    }

    fn committed(&self, stream: &str, records: u64) {
        self.bar(stream).inc(records);
    }

    fn finished(&self, stream: &str, verdict: &str) {
        self.bar(stream).finish_with_message(verdict.to_string());
    }
}
