//! The store first: its calls run on threads of the process's own
//! scheduling priority, and the host's async runtime runs a step below.
//!
//! A sync is a pipeline whose last stage is serial. Component instances
//! read and convert pages on the async runtime's threads, in parallel; one
//! writer at a time commits them to the database. When every core is busy
//! (two cores shared by the components, TLS, the writer and, in the bench,
//! the emulator), the writer waited for a core behind work that was not on
//! the critical path, and the whole pipeline waited with it. So store calls
//! run on the store's own threads ([`start_store_threads`]), and the host
//! lowers each thread of its async runtime by [`RUNTIME_NICE_STEP`]
//! ([`lower_this_thread`], from tokio's `on_thread_start`): the writer gets
//! a core whenever it has a page, and the components take what is left.
//! Measured in BENCHMARKS.md, "The writer first".
//!
//! Two facts of Linux shape this module. A thread's nice value is its own
//! and a new thread inherits its creator's. And an unprivileged thread may
//! raise its nice value but never lower it again. So the threads that must
//! keep the process's priority are started before any thread is lowered,
//! by the host's main thread; tokio's blocking pool cannot serve, because
//! it starts its threads from whichever thread asks, a lowered one.
//!
//! ```no_run
//! connector_engine::priority::start_store_threads();
//! let runtime = tokio::runtime::Builder::new_multi_thread()
//!     .enable_all()
//!     .on_thread_start(connector_engine::priority::lower_this_thread)
//!     .build()
//!     .unwrap();
//! ```
//!
//! Elsewhere than on Linux a nice value is the whole process's, so nothing
//! is lowered and the store's threads only replace tokio's blocking pool.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// How many steps of nice value the host's async runtime runs below the
/// process. Side by side at 1M devices on two busy cores, a step of 10 took
/// 8.8 % off a full sync's wall time and 19 took 9.8 % (BENCHMARKS.md, "The
/// writer first"); 10 keeps most of the gain and leaves the host's
/// components a tenth of a core's share, not a seventieth, against other
/// processes at the normal priority.
pub const RUNTIME_NICE_STEP: i32 = 10;

/// The largest nice value there is (the lowest priority).
#[cfg(target_os = "linux")]
const LOWEST_NICE: i32 = 19;

/// A store call waiting for a thread.
type Job = Box<dyn FnOnce() + Send>;

/// Where store calls are queued; the threads are started with it.
static STORE_THREADS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Starts the store's threads, at the calling thread's priority. Once per
/// process; later calls do nothing. The host calls it from its main thread
/// before it starts the async runtime. If it did not, the first store call
/// starts them, from whichever thread makes it.
pub fn start_store_threads() {
    store_threads();
}

/// The queue of the store's threads, starting them on the first call.
fn store_threads() -> &'static mpsc::Sender<Job> {
    STORE_THREADS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..thread_count() {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("store-{index}"))
                .spawn(move || run_jobs(&receiver))
                .expect("the operating system refused to start a thread for the store");
        }
        sender
    })
}

/// How many store threads a process has: calls on different databases (a
/// worker's connections, the console's keepers) run at once, and a call
/// may wait for PostgreSQL or for another process's SQLite lock. Twice the
/// cores, at least 8; an idle thread costs a few pages of stack.
fn thread_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).max(8)
}

/// A store thread's life: run queued calls one after another. A call that
/// panics drops its result's sender, so its caller gets
/// [`StoreCallPanicked`]; the thread goes on with the next call.
fn run_jobs(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else {
            return;
        };
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// Starts `call` on a store thread at once; the returned future gives its
/// result. The call runs to its end whether or not the future is awaited or
/// dropped, like a task of tokio's blocking pool.
pub(crate) fn on_store_thread<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> StoreCall<T> {
    let (result, receiver) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = result.send(call());
    });
    if let Err(mpsc::SendError(job)) = store_threads().send(job) {
        // The threads never end, so this does not happen; were they gone,
        // running the call here would still be correct, only not first.
        job();
    }
    StoreCall(receiver)
}

/// A store call under way on a store thread: a future of its result.
pub(crate) struct StoreCall<T>(oneshot::Receiver<T>);

impl<T> Future for StoreCall<T> {
    type Output = Result<T, StoreCallPanicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map_err(|_| StoreCallPanicked)
    }
}

/// A store call panicked: a bug of the host (its message is on stderr).
#[derive(Debug, thiserror::Error)]
#[error("a store call panicked (a bug of the host; its message is in the host's log)")]
pub struct StoreCallPanicked;

/// Lowers the calling thread's priority by [`RUNTIME_NICE_STEP`] (to at
/// most nice 19). The host calls it as each thread of its async runtime
/// starts. On Linux only, where a thread's nice value is its own; a thread
/// that cannot be lowered stays as it is (logged at `debug`).
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    if let Err(e) = lower_by(RUNTIME_NICE_STEP) {
        tracing::debug!("a runtime thread keeps its priority: {e}");
    }
}

/// Adds `step` to the calling thread's nice value.
#[cfg(target_os = "linux")]
fn lower_by(step: i32) -> rustix::io::Result<()> {
    let me = Some(rustix::thread::gettid());
    let nice = rustix::process::getpriority_process(me)?;
    rustix::process::setpriority_process(me, (nice + step).min(LOWEST_NICE))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    fn nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn a_store_call_from_a_lowered_thread_runs_at_the_process_priority() {
        // Started from this (the test harness's, not lowered) thread: the
        // host starts them from its main thread.
        start_store_threads();
        let base = nice();
        let lowered = (base + RUNTIME_NICE_STEP).min(LOWEST_NICE);
        assert!(
            lowered > base,
            "the tests run at nice {base}: nothing to lower"
        );
        let (own, spawned, store) = std::thread::spawn(|| {
            lower_this_thread();
            let spawned = std::thread::spawn(nice).join().unwrap();
            let store = futures::executor::block_on(on_store_thread(nice)).unwrap();
            (nice(), spawned, store)
        })
        .join()
        .unwrap();
        assert_eq!(own, lowered, "lower_this_thread did not lower its thread");
        // Why the store has threads of its own: a thread started by a
        // lowered one (as tokio's blocking pool starts them) is lowered too.
        assert_eq!(
            spawned, lowered,
            "a thread did not inherit its creator's nice value"
        );
        assert_eq!(store, base, "a store call ran below the process's priority");
    }

    #[test]
    fn a_store_call_that_panics_fails_its_caller_and_the_threads_go_on() {
        for _ in 0..=thread_count() {
            let call = on_store_thread(|| -> u32 { panic!("a store call's bug") });
            assert!(matches!(
                futures::executor::block_on(call),
                Err(StoreCallPanicked)
            ));
        }
        assert_eq!(
            futures::executor::block_on(on_store_thread(|| 7)).unwrap(),
            7
        );
    }
}
