//! In-kernel tests that run inside QEMU.
//!
//! Tests are ordinary functions declared with [`ktests!`] anywhere in the kernel or a driver.
//! Each one leaves a [`KTest`] record in the `.ktest` linker section, so the kernel's runner finds
//! every test without a registry and without nightly features. One kernel image holds all tests;
//! the `ktest=<filter>` boot argument selects which run.
//!
//! A test returns [`Result`]: `Ok(())` passes, [`kassert!`] and friends return a failure naming
//! the file and line, [`skip!`] skips with a reason. A panic also fails the test (and ends the run,
//! since the kernel cannot unwind).
//!
//! The serial protocol the runner prints (and `cargo xtask test` parses) is:
//! ```text
//! KTEST START total=<n> filter=<filters>
//! KTEST RUN <name>
//! KTEST PASS <name> us=<microseconds>
//! KTEST FAIL <name> at <file>:<line>: <message>
//! KTEST SKIP <name>: <reason>
//! KTEST END pass=<n> fail=<n> skip=<n>
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;

/// One test record.
#[derive(Debug)]
#[repr(C)]
pub struct KTest {
    /// Full name: `<module path>::<function>`.
    pub name: &'static str,
    /// The test.
    pub run: fn() -> Result,
    /// Manual tests (a deliberate failure, a fault) run only when a filter names them exactly.
    pub manual: bool,
}

/// Why a test did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An assertion failed.
    Fail {
        file: &'static str,
        line: u32,
        message: String,
    },
    /// The test does not apply to this machine (e.g. a device is absent).
    Skip(String),
}

/// What a test returns.
pub type Result = core::result::Result<(), Outcome>;

/// True when `pattern` (with `*` matching any run of characters) matches all of `name`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// True when `test` is selected by `filters`. A filter without `*` also selects every test whose
/// name starts with it followed by `::` (a module prefix). Manual tests need an exact name.
pub fn selected(test: &KTest, filters: &[impl AsRef<str>]) -> bool {
    filters.iter().any(|f| {
        let f = f.as_ref();
        if test.manual {
            return f == test.name;
        }
        glob_match(f, test.name)
            || (!f.contains('*')
                && test.name.len() > f.len() + 2
                && test.name.starts_with(f)
                && test.name[f.len()..].starts_with("::"))
    })
}

/// Declares in-kernel tests. Each function must return [`Result`].
///
/// ```ignore
/// ktest::ktests! {
///     fn timer_interrupt_arrives() -> ktest::Result { ktest::kassert!(fired()); Ok(()) }
///     #[manual]
///     fn deliberate_failure() -> ktest::Result { ktest::kfail!("as asked") }
/// }
/// ```
#[macro_export]
macro_rules! ktests {
    () => {};
    ($(#[doc = $d:literal])* #[manual] $(#[$m:meta])* fn $name:ident() -> $ret:ty $body:block $($rest:tt)*) => {
        $crate::__ktest_one!(true, $(#[doc = $d])* $(#[$m])* fn $name() -> $ret $body);
        $crate::ktests!($($rest)*);
    };
    ($(#[$m:meta])* fn $name:ident() -> $ret:ty $body:block $($rest:tt)*) => {
        $crate::__ktest_one!(false, $(#[$m])* fn $name() -> $ret $body);
        $crate::ktests!($($rest)*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ktest_one {
    ($manual:expr, $(#[$m:meta])* fn $name:ident() -> $ret:ty $body:block) => {
        $(#[$m])*
        pub fn $name() -> $ret $body

        const _: () = {
            #[used]
            #[unsafe(link_section = ".ktest")]
            static RECORD: $crate::KTest = $crate::KTest {
                name: concat!(module_path!(), "::", stringify!($name)),
                run: $name,
                manual: $manual,
            };
        };
    };
}

/// Fails the test unless the condition holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr $(,)?) => {
        if !$cond {
            return Err($crate::Outcome::Fail {
                file: file!(),
                line: line!(),
                message: ::alloc::format!("assertion failed: {}", stringify!($cond)),
            });
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Outcome::Fail {
                file: file!(),
                line: line!(),
                message: ::alloc::format!($($arg)+),
            });
        }
    };
}

/// Fails the test unless the two values are equal.
#[macro_export]
macro_rules! kassert_eq {
    ($a:expr, $b:expr $(,)?) => {
        match (&$a, &$b) {
            (a, b) => {
                if a != b {
                    return Err($crate::Outcome::Fail {
                        file: file!(),
                        line: line!(),
                        message: ::alloc::format!(
                            "{} == {} failed: {:?} != {:?}", stringify!($a), stringify!($b), a, b
                        ),
                    });
                }
            }
        }
    };
    ($a:expr, $b:expr, $($arg:tt)+) => {
        match (&$a, &$b) {
            (a, b) => {
                if a != b {
                    return Err($crate::Outcome::Fail {
                        file: file!(),
                        line: line!(),
                        message: ::alloc::format!(
                            "{:?} != {:?}: {}", a, b, ::alloc::format!($($arg)+)
                        ),
                    });
                }
            }
        }
    };
}

/// Fails the test with a message.
#[macro_export]
macro_rules! kfail {
    ($($arg:tt)+) => {
        return Err($crate::Outcome::Fail { file: file!(), line: line!(), message: ::alloc::format!($($arg)+) })
    };
}

/// Skips the test with a reason.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)+) => {
        return Err($crate::Outcome::Skip(::alloc::format!($($arg)+)))
    };
}

/// Turns any `Result<T, E: Debug>` into a test failure at the call site: `ktry!(expr)`.
#[macro_export]
macro_rules! ktry {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                return Err($crate::Outcome::Fail {
                    file: file!(),
                    line: line!(),
                    message: ::alloc::format!("{} failed: {:?}", stringify!($e), err),
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &'static str, manual: bool) -> KTest {
        KTest {
            name,
            run: || Ok(()),
            manual,
        }
    }

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob_match("*", "a::b"));
        assert!(glob_match("smmuv3::*", "smmuv3::ktests::x"));
        assert!(glob_match("*fault*", "smmuv3::ktests::translation_fault"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("smmuv3::*", "dma::x"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn selection_by_prefix_glob_and_exact_name() {
        let x = t("smmuv3::ktests::evtq_decodes", false);
        assert!(selected(&x, &["smmuv3"]));
        assert!(selected(&x, &["smmuv3::ktests"]));
        assert!(
            !selected(&x, &["smmu"]),
            "a prefix must end at a path separator"
        );
        assert!(selected(&x, &["dma::*", "*evtq*"]));
        assert!(!selected(&x, &["dma::*"]));
    }

    #[test]
    fn manual_tests_need_their_exact_name() {
        let m = t("kernel::ktests::deliberate_failure", true);
        assert!(!selected(&m, &["*"]));
        assert!(!selected(&m, &["kernel"]));
        assert!(selected(&m, &["kernel::ktests::deliberate_failure"]));
    }

    fn failing() -> Result {
        kassert_eq!(1 + 1, 3);
        Ok(())
    }

    #[test]
    fn assertions_report_file_line_and_values() {
        match failing() {
            Err(Outcome::Fail { file, message, .. }) => {
                assert!(file.ends_with("lib.rs"));
                assert_eq!(message, "1 + 1 == 3 failed: 2 != 3");
            }
            other => panic!("{other:?}"),
        }
    }
}
