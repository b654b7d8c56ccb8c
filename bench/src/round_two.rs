//! The rows of performance round two (issue #16):
//! - the storage floor: what a full sync stored, written again into a fresh
//!   store from memory (`store-floor`: no HTTP, no wasm);
//! - the full sync with the host on one core and on two, the harness (and
//!   so the emulator) pinned to the last core (`taskset`);
//! - a WAN-like emulator (`--wan-devices`): added round-trip time, the
//!   handshakes' round trips on every new connection, server time per row;
//!   ours against pysnc tuned.

use crate::{remove_sqlite_files, Bench, Measurement, Row, Sample};
use anyhow::{bail, Context as _, Result};
use std::path::PathBuf;
use std::process::Command;

impl Bench<'_> {
    /// Where the storage floor writes.
    fn floor_database(&self) -> PathBuf {
        self.dir.join("floor.db")
    }

    /// Removes what the storage floor wrote.
    pub(crate) fn remove_floor(&self) -> Result<()> {
        remove_sqlite_files(&self.floor_database())
    }

    /// How to measure the storage floor, from the database the last full
    /// sync left.
    pub(crate) fn storage_floor_measurement(&self) -> Measurement<'_> {
        Measurement {
            what: "storage floor: the same records into the store from memory".into(),
            prepare: Box::new(|| self.remove_floor()),
            command: Box::new(|| {
                let mut cmd = Command::new(self.args.bin_dir.join("store-floor"));
                cmd.arg("--from")
                    .arg(self.database())
                    .arg("--database")
                    .arg(self.floor_database());
                cmd
            }),
            records: Box::new(floor_written),
        }
    }

    /// The full sync with the host on CPU 0 alone, then on every CPU, while
    /// this process (the emulator's threads included) keeps to the last CPU.
    pub(crate) fn host_on_cores(&self) -> Result<Vec<Row>> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            bail!("--cores needs at least 2 CPUs; this machine has {cpus}");
        }
        let last = cpus - 1;
        let _pinned = PinnedHarness::to(&last.to_string(), &format!("0-{last}"))?;
        let config = self.config()?;
        let mut rows = Vec::new();
        for (cores, what) in [
            (
                "0".to_string(),
                format!("host on CPU 0, emulator on CPU {last}"),
            ),
            (
                format!("0-{last}"),
                format!("host on CPUs 0-{last}, emulator on CPU {last}"),
            ),
        ] {
            rows.push(self.measure(
                &what,
                self.args.runs,
                || self.remove_database(),
                || {
                    let sync = self.host_sync(&config, true);
                    let mut cmd = Command::new("taskset");
                    cmd.args(["-c", &cores])
                        .arg(sync.get_program())
                        .args(sync.get_args());
                    for (k, v) in sync.get_envs() {
                        if let Some(v) = v {
                            cmd.env(k, v);
                        }
                    }
                    cmd
                },
                |_| self.records(),
            )?);
        }
        Ok(rows)
    }
}

/// What `store-floor` printed: the records it wrote, and the writing's own
/// figures in `sample` (peak RSS stays the whole process's, the records
/// held in memory included).
fn floor_written(stdout: &str, sample: &mut Sample) -> Result<u64> {
    let written: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("store-floor printed {stdout:?}"))?;
    let figure = |name: &str| {
        written[name]
            .as_f64()
            .with_context(|| format!("store-floor printed no {name}: {stdout:?}"))
    };
    sample.wall_s = figure("write_wall_s")?;
    sample.cpu_s = figure("write_cpu_s")?;
    sample.system_s = figure("write_system_s")?;
    Ok(figure("records")? as u64)
}

/// Every thread of this process kept to some CPUs until dropped.
struct PinnedHarness {
    restore: String,
}

impl PinnedHarness {
    /// Pins every thread of this process to `cpus`; `restore` afterwards.
    fn to(cpus: &str, restore: &str) -> Result<PinnedHarness> {
        set_affinity(cpus)?;
        Ok(PinnedHarness {
            restore: restore.to_string(),
        })
    }
}

impl Drop for PinnedHarness {
    fn drop(&mut self) {
        if let Err(e) = set_affinity(&self.restore) {
            eprintln!("could not give the harness its CPUs back: {e:#}");
        }
    }
}

/// `taskset -a -p -c CPUS PID`: every thread of this process.
fn set_affinity(cpus: &str) -> Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .output()
        .context("running taskset (util-linux)")?;
    if !out.status.success() {
        bail!(
            "taskset -c {cpus} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
