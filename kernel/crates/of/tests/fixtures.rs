//! The committed `.dtb` fixtures are the compiled `.dts` sources next to them. Checked only
//! where dtc is installed; `cargo test` itself never needs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn every_dtb_is_its_dts_compiled() {
    if Command::new("dtc").arg("--version").output().is_err() {
        eprintln!("dtc not installed: fixture freshness not checked");
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("of-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let dts = entry.unwrap().path();
        if dts.extension().and_then(|e| e.to_str()) != Some("dts") {
            continue;
        }
        let dtb = dts.with_extension("dtb");
        let fresh = out_dir.join(dtb.file_name().unwrap());
        let status = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&fresh)
            .arg(&dts)
            .status()
            .unwrap();
        assert!(status.success(), "dtc failed on {}", dts.display());
        assert_eq!(
            std::fs::read(&fresh).unwrap(),
            std::fs::read(&dtb).unwrap_or_default(),
            "{} is stale: dtc -q -I dts -O dtb -o {} {}",
            dtb.display(),
            dtb.display(),
            dts.display()
        );
        checked += 1;
    }
    std::fs::remove_dir_all(&out_dir).ok();
    assert!(checked >= 6, "only {checked} fixtures found");
}
