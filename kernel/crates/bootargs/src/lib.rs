//! Boot arguments: `/chosen/bootargs` (QEMU `-append`) parsed into [`BootArgs`].
//!
//! Words are separated by whitespace; each is `key=value` or a bare `key`. Every key the kernel
//! understands is listed in [`KEYS`]; anything else is reported as a [`Problem`] rather than
//! silently ignored, and so is a value that does not parse. A bad word never stops the boot: the
//! setting keeps its default.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The normal boot log.
    Info,
    /// Driver detail.
    Debug,
    /// Everything.
    Trace,
}

/// Every key the kernel understands, with the value it takes and what it does.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "ktest",
        "<filter>[,<filter>...]",
        "run in-kernel tests whose names match (`*` globs), then exit",
    ),
    (
        "loglevel",
        "error|warn|info|debug|trace",
        "console log verbosity (default info)",
    ),
    (
        "iommu.passthrough",
        "0|1",
        "default domain type: 1 = identity (bypass), 0 = translated (default)",
    ),
    (
        "iommu.strict",
        "0|1",
        "1 = invalidate the IOTLB on every unmap (default), 0 = batched flush queue",
    ),
    (
        "iommu.identity",
        "<device>[,<device>...]",
        "give these devices an identity domain (e.g. 0000:00:03.0)",
    ),
    (
        "dma.debug",
        "0|1",
        "check every DMA unmap against the map it undoes (default 1)",
    ),
    (
        "bench",
        "<case>[,<case>...]|all",
        "run benchmarks and print BENCH lines instead of the main job",
    ),
    (
        "profile",
        "<period-us>",
        "sample the interrupted PC every period (guest time) and print PROFILE lines at exit",
    ),
    (
        "devmodel.register_last",
        "<driver>[,<driver>...]",
        "register these drivers after all others (probe-order tests)",
    ),
    (
        "devmodel.skip",
        "<driver>[,<driver>...]",
        "do not register these drivers at all (tests of what waits on them)",
    ),
    (
        "edu.managed",
        "<device>[,<device>...]",
        "bind these edu functions to the driver that manages its own IOMMU domain",
    ),
    (
        "edu.dma_bits",
        "<n>",
        "DMA mask edu's driver sets (default 28; match QEMU's `-device edu,dma_mask=...`)",
    ),
    (
        "fault",
        "<what>",
        "inject a fault for tests (see docs/robustness.md)",
    ),
];

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootArgs {
    /// `ktest=`: test-name filters; empty = normal boot.
    pub ktest: Vec<String>,
    /// `loglevel=`.
    pub loglevel: LogLevel,
    /// `iommu.passthrough=`: `None` = not given (the kernel's default applies).
    pub iommu_passthrough: Option<bool>,
    /// `iommu.strict=`: `None` = not given.
    pub iommu_strict: Option<bool>,
    /// `iommu.identity=`: devices that get an identity domain.
    pub iommu_identity: Vec<String>,
    /// `dma.debug=`.
    pub dma_debug: bool,
    /// `bench=`: benchmark cases; empty = no benchmarks.
    pub bench: Vec<String>,
    /// `profile=`: sampling period in microseconds of guest time.
    pub profile_us: Option<u64>,
    /// `devmodel.register_last=`: drivers registered after every other driver.
    pub register_last: Vec<String>,
    /// `devmodel.skip=`: drivers not registered.
    pub skip_drivers: Vec<String>,
    /// `edu.managed=`: edu functions bound to the self-managing (driver_managed_dma) driver.
    pub edu_managed: Vec<String>,
    /// `edu.dma_bits=`: the DMA mask edu's driver sets.
    pub edu_dma_bits: Option<u32>,
    /// `fault=`: fault injection for tests.
    pub fault: Option<String>,
}

impl Default for BootArgs {
    fn default() -> Self {
        Self {
            ktest: Vec::new(),
            loglevel: LogLevel::Info,
            iommu_passthrough: None,
            iommu_strict: None,
            iommu_identity: Vec::new(),
            dma_debug: true,
            bench: Vec::new(),
            profile_us: None,
            register_last: Vec::new(),
            skip_drivers: Vec::new(),
            edu_managed: Vec::new(),
            edu_dma_bits: None,
            fault: None,
        }
    }
}

/// Something wrong with one word of the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A key no part of the kernel knows.
    UnknownKey(String),
    /// A known key with a value that does not parse.
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    /// A key that needs a value was given without one.
    MissingValue { key: String, expected: &'static str },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownKey(k) => write!(f, "unknown boot argument `{k}` (ignored)"),
            Problem::BadValue {
                key,
                value,
                expected,
            } => {
                write!(
                    f,
                    "boot argument `{key}={value}`: expected {expected} (ignored)"
                )
            }
            Problem::MissingValue { key, expected } => {
                write!(
                    f,
                    "boot argument `{key}` needs a value: {expected} (ignored)"
                )
            }
        }
    }
}

fn expected(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or("a value", |(_, v, _)| *v)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "0" | "off" | "n" | "no" | "false" => Some(false),
        "1" | "on" | "y" | "yes" | "true" => Some(true),
        _ => None,
    }
}

fn parse_level(v: &str) -> Option<LogLevel> {
    Some(match v {
        "error" | "3" => LogLevel::Error,
        "warn" | "4" => LogLevel::Warn,
        "info" | "6" => LogLevel::Info,
        "debug" | "7" => LogLevel::Debug,
        "trace" | "8" => LogLevel::Trace,
        _ => return None,
    })
}

fn parse_list(v: &str) -> Option<Vec<String>> {
    let items: Vec<String> = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(ToString::to_string)
        .collect();
    if items.is_empty() { None } else { Some(items) }
}

/// Parses a command line. Problems are returned next to the result, never fatal.
pub fn parse(cmdline: &str) -> (BootArgs, Vec<Problem>) {
    let mut args = BootArgs::default();
    let mut problems = Vec::new();
    for word in cmdline.split_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        if !KEYS.iter().any(|(k, _, _)| *k == key) {
            problems.push(Problem::UnknownKey(word.to_string()));
            continue;
        }
        let Some(value) = value else {
            problems.push(Problem::MissingValue {
                key: key.to_string(),
                expected: expected(key),
            });
            continue;
        };
        let ok = match key {
            "ktest" => parse_list(value).map(|l| args.ktest = l).is_some(),
            "loglevel" => parse_level(value).map(|l| args.loglevel = l).is_some(),
            "iommu.passthrough" => parse_bool(value)
                .map(|b| args.iommu_passthrough = Some(b))
                .is_some(),
            "iommu.strict" => parse_bool(value)
                .map(|b| args.iommu_strict = Some(b))
                .is_some(),
            "iommu.identity" => parse_list(value).map(|l| args.iommu_identity = l).is_some(),
            "dma.debug" => parse_bool(value).map(|b| args.dma_debug = b).is_some(),
            "bench" => parse_list(value).map(|l| args.bench = l).is_some(),
            "devmodel.register_last" => parse_list(value).map(|l| args.register_last = l).is_some(),
            "profile" => value
                .parse::<u64>()
                .ok()
                .filter(|p| *p > 0)
                .map(|p| args.profile_us = Some(p))
                .is_some(),
            "devmodel.skip" => parse_list(value).map(|l| args.skip_drivers = l).is_some(),
            "edu.managed" => parse_list(value).map(|l| args.edu_managed = l).is_some(),
            "edu.dma_bits" => value
                .parse::<u32>()
                .ok()
                .filter(|b| (12..=64).contains(b))
                .map(|b| args.edu_dma_bits = Some(b))
                .is_some(),
            "fault" => {
                args.fault = Some(value.to_string());
                !value.is_empty()
            }
            _ => unreachable!("every key in KEYS has a parser"),
        };
        if !ok {
            problems.push(Problem::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                expected: expected(key),
            });
        }
    }
    (args, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_command_line_gives_defaults() {
        let (a, p) = parse("");
        assert_eq!(a, BootArgs::default());
        assert!(p.is_empty());
    }

    #[test]
    fn known_keys_are_parsed_into_typed_fields() {
        let (a, p) = parse(
            "ktest=smmuv3::*,dma::x loglevel=debug iommu.passthrough=1 iommu.strict=0 \
             iommu.identity=0000:00:03.0,0000:00:04.0 dma.debug=off bench=all fault=cmdq_illegal",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(a.ktest, ["smmuv3::*", "dma::x"]);
        assert_eq!(a.loglevel, LogLevel::Debug);
        assert_eq!(a.iommu_passthrough, Some(true));
        assert_eq!(a.iommu_strict, Some(false));
        assert_eq!(a.iommu_identity, ["0000:00:03.0", "0000:00:04.0"]);
        assert!(!a.dma_debug);
        assert_eq!(a.bench, ["all"]);
        assert_eq!(a.fault.as_deref(), Some("cmdq_illegal"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported_not_ignored() {
        let (a, p) = parse("console=ttyAMA0 iommu.strict=maybe loglevel iommu.passthrough=1");
        assert_eq!(a.iommu_passthrough, Some(true), "good words still apply");
        assert_eq!(a.iommu_strict, None, "a bad value keeps the default");
        assert_eq!(
            p,
            [
                Problem::UnknownKey("console=ttyAMA0".into()),
                Problem::BadValue {
                    key: "iommu.strict".into(),
                    value: "maybe".into(),
                    expected: "0|1"
                },
                Problem::MissingValue {
                    key: "loglevel".into(),
                    expected: "error|warn|info|debug|trace"
                },
            ]
        );
        assert_eq!(
            p[0].to_string(),
            "unknown boot argument `console=ttyAMA0` (ignored)"
        );
    }

    #[test]
    fn edu_mask_bits_are_range_checked() {
        assert_eq!(parse("edu.dma_bits=40").0.edu_dma_bits, Some(40));
        assert!(matches!(
            parse("edu.dma_bits=99").1[0],
            Problem::BadValue { .. }
        ));
    }

    #[test]
    fn empty_list_is_a_bad_value() {
        let (_, p) = parse("ktest=,");
        assert!(matches!(p[0], Problem::BadValue { .. }));
    }

    #[test]
    fn every_key_has_a_parser() {
        for (k, _, _) in KEYS {
            let (_, p) = parse(&alloc::format!("{k}=1"));
            assert!(
                !p.iter().any(|x| matches!(x, Problem::UnknownKey(_))),
                "{k}"
            );
        }
    }
}
