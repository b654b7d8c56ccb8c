//! Log lines to the host (the contract's `log` import).
//!
//! Use the macros: [`debug!`](macro@crate::debug), [`info!`](macro@crate::info),
//! [`warn!`](macro@crate::warn), [`error!`](macro@crate::error). A host keeps
//! warnings in the run report. Natively (in tests) the lines are kept in a
//! per-thread buffer that [`take`] returns. A connector has no secrets, so
//! none can be logged; still, never log a response body wholesale.

pub use crate::bindings::exposure::connector::log::Level;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sends one line to the host (natively: keeps it for [`take`]).
pub fn emit(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::exposure::connector::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    CAPTURED.with(|c| c.borrow_mut().push((level, message.to_string())));
}

/// Natively: the lines this thread emitted since the last call. In a
/// component: always empty (the lines went to the host).
pub fn take() -> Vec<(Level, String)> {
    #[cfg(target_arch = "wasm32")]
    return Vec::new();
    #[cfg(not(target_arch = "wasm32"))]
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Logs at debug level, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, &format!($($arg)*)) };
}

/// Logs at info level, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs a warning for the operator, `format!`-style; hosts put warnings in
/// the run report.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Logs at error level, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, &format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_captured_natively() {
        crate::warn!("audit {} is not readable", "x");
        crate::info!("done");
        let lines = super::take();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            (super::Level::Warn, "audit x is not readable".into())
        );
        assert!(super::take().is_empty());
    }
}
