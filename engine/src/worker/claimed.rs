//! Reading one claimed partition: as `sync` reads a partition, with every
//! page fenced by the lease and a heartbeat renewing it; then recording the
//! partition's end (and, for the last partition of a stream, finishing the
//! stream).

use super::{Served, WorkerOptions};
use crate::store::deployment::PartitionEnd;
use crate::store::lease::Lease;
use crate::store::{ReadMode, Store, StoreError};
use crate::sync::partition::{read_partition, FENCED};
use crate::sync::{blocking, embed_field, PartitionReport, PartitionTask};
use connector_sandbox::stop::StopSignal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads the partition `lease` holds to its end (or until stopped, or the
/// lease is lost) and records how it ended.
pub(super) async fn read(served: &Served, options: &WorkerOptions, lease: &Lease) {
    let Some(stream) = served
        .job
        .info
        .streams
        .iter()
        .find(|s| s.name == lease.stream)
    else {
        // Workers of the deployment run different components for it.
        let report = PartitionReport {
            index: lease.partition,
            workers: vec![options.id.clone()],
            error_kind: Some("config".into()),
            error: Some(format!(
                "worker {} serves {} with a component that has no stream `{}`; give every worker the same connection files and component",
                options.id, lease.connection, lease.stream
            )),
            ..Default::default()
        };
        end(served, lease, &report, PartitionEnd::Failed, None).await;
        return;
    };
    // This partition's stop: the worker's, or the lease lost.
    let stop = Arc::new(StopSignal::default());
    let heartbeat = tokio::spawn(heartbeat(
        served.store.clone(),
        lease.clone(),
        served.lease,
        stop.clone(),
        options.stop.clone(),
    ));
    let mut job = (*served.job).clone();
    job.options.stop = stop;
    let task = PartitionTask {
        stream: stream.clone(),
        watermark: match &lease.mode {
            ReadMode::Incremental { watermark } => Some(watermark.clone()),
            ReadMode::Full => None,
        },
        deletions_since: lease.deletions_since.clone(),
        embed_field: embed_field(stream),
        generation: lease.generation,
        index: lease.partition,
        count: lease.partitions,
        cursor: lease.cursor.clone(),
        lease: Some(lease.clone()),
    };
    let mut report = read_partition(&job, served.run_shared(lease.run), task).await;
    heartbeat.abort();
    report.workers = vec![options.id.clone()];
    let how = match report.error_kind.as_deref() {
        None if report.complete => PartitionEnd::Complete,
        Some(FENCED) => {
            tracing::warn!(
                connection = %lease.connection, stream = %lease.stream, partition = lease.partition,
                "{}", report.error.as_deref().unwrap_or_default()
            );
            return;
        }
        Some("stopped") => PartitionEnd::Released,
        _ => PartitionEnd::Failed,
    };
    end(served, lease, &report, how, stream.updated_field.clone()).await;
}

/// Records the partition's end under the fence; after its last page,
/// finishes the stream if it was the last partition.
async fn end(
    served: &Served,
    lease: &Lease,
    report: &PartitionReport,
    how: PartitionEnd,
    updated_field: Option<String>,
) {
    let text = serde_json::to_string(report).unwrap_or_else(|_| "{}".into());
    let held = lease.clone();
    let ended = blocking(&served.store, move |s| {
        s.end_partition(&held, &text, how)?;
        if how == PartitionEnd::Complete {
            s.finish_run_stream(&held, updated_field.as_deref())?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = ended {
        let fenced = matches!(
            e.downcast_ref::<StoreError>(),
            Some(StoreError::Fenced { .. })
        );
        // Lost: the worker that holds it now reports on it. Otherwise the
        // lease expires and another worker takes the partition over.
        tracing::warn!(
            connection = %lease.connection, stream = %lease.stream, partition = lease.partition,
            fenced, "the partition's end was not recorded: {e:#}"
        );
    }
}

/// Renews `lease` every third of its length until aborted; triggers
/// `partition` when the lease is lost or `worker` stops.
async fn heartbeat(
    store: Arc<Mutex<Store>>,
    lease: Lease,
    length: Duration,
    partition: Arc<StopSignal>,
    worker: Arc<StopSignal>,
) {
    loop {
        if worker.sleep(length / 3).await {
            partition.trigger();
            return;
        }
        let held = lease.clone();
        match blocking(&store, move |s| s.renew_lease(&held, length)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    connection = %lease.connection, stream = %lease.stream, partition = lease.partition,
                    "the lease was lost (expired or taken over); the partition stops, and no page of it is written any more"
                );
                partition.trigger();
                return;
            }
            // The database may be back before the lease expires; the fence
            // keeps a page from being written under a lost one.
            Err(e) => tracing::warn!("renewing a lease failed: {e:#}"),
        }
    }
}
