//! Host test helpers: a serialising guard over the fake platform and a capturing logger.

extern crate std;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kapi::platform::fake::FakePlatform;

/// Tests that allocate frames hold this, so the fake platform's frame counter is theirs alone.
pub(crate) type Serial = std::sync::MutexGuard<'static, ()>;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs the fake platform and the capturing logger, and serialises the test.
pub(crate) fn serial() -> (Serial, &'static FakePlatform) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    LOGGER_INSTALLED.call_once(|| {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Debug);
    });
    LINES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    (guard, kapi::platform::fake::install())
}

struct Capture;
static LOGGER: Capture = Capture;
static LOGGER_INSTALLED: std::sync::Once = std::sync::Once::new();
static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        // As the kernel's console prints them, without the timestamp.
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        let line = format!("{}: {level}{}", record.target(), record.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}
