//! Workers sharing the syncs of many connections through PostgreSQL
//! (`--workers 1,2,4 --postgres URL`): the same connections synced one
//! after another by `sync` (no leases), then by 1, 2, 4 … `worker --once`
//! processes at once. On a 2-core machine the point is the ratio and the
//! leases' overhead, not the scale.

use crate::postgres::{empty, live_records, PASSWORD_VAR};
use crate::{timed, Bench, Row, Sample};
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::process::Command;

impl Bench<'_> {
    /// The rows of the workers' benchmark over `connections` connections of
    /// this emulator, stored in the PostgreSQL database `url`.
    pub(crate) fn workers(&self, url: &str, connections: usize) -> Result<Vec<Row>> {
        let password = std::env::var(PASSWORD_VAR)
            .with_context(|| format!("--postgres needs the password in {PASSWORD_VAR}"))?;
        let dir = self.deployment(url, connections)?;
        let files: Vec<PathBuf> = (1..=connections)
            .map(|i| dir.join(format!("conn-{i}.toml")))
            .collect();
        let mut rows = Vec::new();
        let one_after_another = || {
            files
                .iter()
                .map(|file| {
                    let mut cmd = self.host_sync(file, true);
                    cmd.env(PASSWORD_VAR, &password);
                    cmd
                })
                .collect::<Vec<_>>()
        };
        rows.push(self.processes(
            &format!("{connections} connections, `sync` one after another"),
            url,
            &password,
            false,
            one_after_another,
        )?);
        for &count in &self.args.workers {
            let workers = || {
                (0..count)
                    .map(|n| {
                        let mut cmd = Command::new(self.args.bin_dir.join("connector-host"));
                        cmd.args(["worker", "--once", "--id", &format!("w{n}"), "--config-dir"])
                            .arg(&dir)
                            .env("BENCH_PASSWORD", crate::PASSWORD)
                            .env(PASSWORD_VAR, &password);
                        cmd
                    })
                    .collect::<Vec<_>>()
            };
            rows.push(self.processes(
                &format!("{connections} connections, {count} worker(s)"),
                url,
                &password,
                true,
                workers,
            )?);
        }
        Ok(rows)
    }

    /// `connections` connection files (`conn-1`…) of this emulator stored in `url`.
    fn deployment(&self, url: &str, connections: usize) -> Result<PathBuf> {
        let dir = self.dir.join("deployment");
        std::fs::create_dir_all(&dir)?;
        for i in 1..=connections {
            let database = format!(
                "name = \"conn-{i}\"\ndatabase = {url:?}\ndatabase_password_env = \"{PASSWORD_VAR}\""
            );
            let written = self.config_into(&format!("conn-{i}.toml"), &database)?;
            std::fs::rename(&written, dir.join(format!("conn-{i}.toml")))?;
        }
        Ok(dir)
    }

    /// Measures `commands` (at once when `together`, else one after
    /// another) `--runs` times from an empty database: wall time until the
    /// last ends, CPU summed, the largest RSS.
    fn processes(
        &self,
        what: &str,
        url: &str,
        password: &str,
        together: bool,
        commands: impl Fn() -> Vec<Command>,
    ) -> Result<Row> {
        let mut samples = Vec::new();
        let mut requests = 0;
        for _ in 0..self.args.runs {
            empty(url, password)?;
            let before = self.requests();
            let started = std::time::Instant::now();
            let each: Vec<Sample> = if together {
                let handles: Vec<_> = commands()
                    .into_iter()
                    .map(|mut cmd| std::thread::spawn(move || timed(&mut cmd).map(|(s, _)| s)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a measuring thread"))
                    .collect::<Result<_>>()?
            } else {
                commands()
                    .into_iter()
                    .map(|mut cmd| timed(&mut cmd).map(|(s, _)| s))
                    .collect::<Result<_>>()?
            };
            samples.push(Sample {
                wall_s: started.elapsed().as_secs_f64(),
                cpu_s: each.iter().map(|s| s.cpu_s).sum(),
                system_s: each.iter().map(|s| s.system_s).sum(),
                max_rss_mib: each.iter().map(|s| s.max_rss_mib).fold(0.0, f64::max),
            });
            requests = self.requests() - before;
        }
        let records = live_records(url, password)?;
        Ok(self.row(what, &samples, records, requests))
    }
}
