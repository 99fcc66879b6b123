//! The serial console and the `log` backend.
//!
//! Lines look like `[    0.012345] <subsystem> <device>: <message>`: the timestamp is guest time
//! since the machine started (CNTVCT), the `<subsystem> <device>` part is the log record's target
//! (`kapi::logging::DevLog`) or, for a plain module path, its crate name.

use core::fmt::{self, Write};

use kapi::sync::IrqLock;
use pl011::Pl011;

static UART: spin::Once<Pl011> = spin::Once::new();
static LOCK: IrqLock<()> = IrqLock::new(());

/// Starts the console on the PL011 at `region`.
pub fn init(uart: Pl011) {
    UART.call_once(|| uart);
}

struct Raw;

impl Write for Raw {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(u) = UART.get() {
            u.write_str(s);
        }
        Ok(())
    }
}

/// Writes formatted text under the console lock (whole lines never interleave).
pub fn print(args: fmt::Arguments<'_>) {
    let _g = LOCK.lock();
    let _ = Raw.write_fmt(args);
}

/// A writer that bypasses the console lock: for fault dumps and panics, where the lock may be
/// held by the code that crashed.
pub struct Emergency;

impl Write for Emergency {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Raw.write_str(s)
    }
}

/// Waits until the UART has sent everything.
pub fn flush() {
    if let Some(u) = UART.get() {
        u.flush();
    }
}

/// Prints a line to the console with no prefix (the `KTEST`/`BENCH` protocol lines).
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `    0.012345`: seconds since the machine started, as the log prefix shows them.
pub struct Timestamp(u64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0 / 1000;
        write!(f, "{:5}.{:06}", us / 1_000_000, us % 1_000_000)
    }
}

/// Now, for a log prefix.
pub fn timestamp() -> Timestamp {
    Timestamp(kapi::time::ticks_to_ns(kapi::time::ticks()))
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = record.target();
        // A module path (`smmuv3::cmdq`) names its crate; anything else is already
        // `<subsystem>` or `<subsystem> <device>`.
        let subsystem = if target.contains("::") {
            target.split("::").next().unwrap_or(target)
        } else {
            target
        };
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        let args = record.args();
        print(format_args!(
            "[{}] {subsystem}: {level}{args}\n",
            timestamp()
        ));
    }

    fn flush(&self) {
        flush();
    }
}

static LOGGER: Logger = Logger;

/// Installs the `log` backend at `level`.
pub fn init_logger(level: bootargs::LogLevel) {
    let filter = match level {
        bootargs::LogLevel::Error => log::LevelFilter::Error,
        bootargs::LogLevel::Warn => log::LevelFilter::Warn,
        bootargs::LogLevel::Info => log::LevelFilter::Info,
        bootargs::LogLevel::Debug => log::LevelFilter::Debug,
        bootargs::LogLevel::Trace => log::LevelFilter::Trace,
    };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}
