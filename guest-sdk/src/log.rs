//! Lines in the host's log, tagged by the host with the plugin's name.
//!
//! The macros take `format!` arguments:
//!
//! ```
//! use pilot_plugin_sdk::log;
//!
//! let (process, rss_mib) = ("api", 612);
//! log::warn!("`{process}` uses {rss_mib} MiB");
//! log::write(log::Level::Debug, "plain text works too");
//! ```
//!
//! The host rate-limits plugin logs, so a flood loses lines rather than slowing the host. Outside a
//! component (in a plugin's native unit tests) the lines go to standard error.

/// How important a log line is.
pub use crate::__private::bindings::pilot::plugin::host::LogLevel as Level;

/// Writes `message` to the host's log at `level`.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__private::bindings::pilot::plugin::host::log(level, message);
    // Outside a component (a plugin's native unit tests) there is no host: print instead.
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pilot_log_trace {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pilot_log_debug {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pilot_log_info {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pilot_log_warn {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pilot_log_error {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+)) };
}

/// Logs a very detailed line: `log::trace!("polled {url}")`.
#[doc(inline)]
pub use crate::__pilot_log_trace as trace;

/// Logs a line for debugging: `log::debug!("state {state:?}")`.
#[doc(inline)]
pub use crate::__pilot_log_debug as debug;

/// Logs a line of normal operation: `log::info!("watching {n} processes")`.
#[doc(inline)]
pub use crate::__pilot_log_info as info;

/// Logs that something is off: `log::warn!("`{name}` uses {mib} MiB")`.
#[doc(inline)]
pub use crate::__pilot_log_warn as warn;

/// Logs that something failed: `log::error!("cannot write `{path}`: {e}")`.
#[doc(inline)]
pub use crate::__pilot_log_error as error;
