//! `firmware_dma::read` on QEMU's own tree and on the hand-written IOMMU fixture.

use std::sync::Arc;

use devmodel::{DeviceInfo, PciAddress, PciIdentity, ProbeError};
use firmware_dma::{FirmwareDma, check_iommu_enabled, read};
use of::DeviceTree;

const QEMU: &[u8] = include_bytes!("../../../../qemu/fixtures/default.dtb");
const IOMMU: &[u8] = include_bytes!("../../of/tests/fixtures/iommu.dtb");

fn tree(blob: &[u8]) -> DeviceTree<'_> {
    DeviceTree::parse(blob).expect("fixture parses")
}

fn pci(dev: u8) -> DeviceInfo {
    DeviceInfo::pci(PciIdentity::new(
        PciAddress::new(0, 0, dev, 0),
        0x1234,
        0x11e8,
    ))
}

fn host_bridge() -> Vec<Arc<DeviceInfo>> {
    vec![Arc::new(DeviceInfo::platform(
        "4010000000.pcie",
        "/pcie@10000000",
    ))]
}

fn platform(path: &str) -> DeviceInfo {
    DeviceInfo::platform(path, path)
}

fn read_platform(dt: &DeviceTree<'_>, path: &str) -> Result<FirmwareDma, String> {
    read(dt, &platform(path), &[], None)
}

#[test]
fn a_pci_function_behind_qemus_smmu_gets_its_stream_doorbell_and_holes() {
    let dt = tree(QEMU);
    // edu at 00:03.0: requester ID 0x18.
    let fw = read(&dt, &pci(3), &host_bridge(), Some(0x18)).unwrap();
    let spec = fw.iommu.expect("behind the SMMU");
    assert_eq!(spec.iommu, "/smmuv3@9050000");
    assert_eq!(spec.ids, [0x18]);
    assert_eq!(
        fw.msi_doorbell.map(|d| d.0),
        Some(0x0808_0000 + 0x1_0040),
        "GITS_TRANSLATER of the ITS"
    );
    assert_eq!(fw.msi_device_id, Some(0x18));
    assert!(fw.coherent, "the host bridge is dma-coherent");
    assert!(
        !fw.holes.is_empty(),
        "the host bridge's memory windows are never DMA targets"
    );
    assert!(fw.memory_regions.is_empty());
    assert!(check_iommu_enabled(&dt, &spec).is_ok());
}

#[test]
fn a_pci_function_needs_its_requester_id_and_a_host_bridge() {
    let dt = tree(QEMU);
    assert!(read(&dt, &pci(3), &host_bridge(), None).is_err());
    assert!(read(&dt, &pci(3), &[], Some(0x18)).is_err());
}

#[test]
fn a_platform_device_without_iommus_uses_direct_dma() {
    let dt = tree(QEMU);
    let fw = read_platform(&dt, "/pl011@9000000").unwrap();
    assert!(fw.iommu.is_none());
    assert!(fw.msi_doorbell.is_none());
}

#[test]
fn several_iommus_entries_on_one_iommu_give_every_id() {
    let dt = tree(IOMMU);
    let fw = read_platform(&dt, "/soc/gpu@100000").unwrap();
    let spec = fw.iommu.unwrap();
    assert_eq!(spec.iommu, "/iommu@1000000");
    assert_eq!(spec.ids, [0x10, 0x11]);
}

#[test]
fn an_iommu_whose_specifiers_the_core_cannot_hold_is_an_error_naming_it() {
    let dt = tree(IOMMU);
    let e = read_platform(&dt, "/soc/display@200000").unwrap_err();
    assert!(
        e.contains("/iommu@2000000: #iommu-cells: 2 cells where 1 is expected")
            && e.contains("/soc/display@200000: iommus"),
        "{e}"
    );
}

#[test]
fn entries_naming_different_iommus_are_refused() {
    let dt = tree(IOMMU);
    let e = read_platform(&dt, "/soc/camera@300000").unwrap_err();
    assert!(e.contains("entries name different IOMMUs"), "{e}");
}

#[test]
fn an_msi_parent_that_is_an_its_gives_the_doorbell_and_deviceid() {
    let dt = tree(IOMMU);
    let fw = read_platform(&dt, "/soc/net@500000").unwrap();
    assert_eq!(fw.msi_doorbell.map(|d| d.0), Some(0x0500_0000 + 0x1_0040));
    assert_eq!(fw.msi_device_id, Some(0x30));
    // A GICv2m frame is not an ITS: no doorbell this kernel can use.
    let fw = read_platform(&dt, "/soc/legacy-msi@600000").unwrap();
    assert!(fw.msi_doorbell.is_none());
}

#[test]
fn a_disabled_iommu_defers_for_good_with_the_reason() {
    let dt = tree(IOMMU);
    // `camera` is itself disabled, but its IOMMU is not: use a spec naming a disabled node.
    let spec = iommu::FwSpec {
        iommu: "/soc/camera@300000".into(),
        ids: vec![1],
    };
    match check_iommu_enabled(&dt, &spec) {
        Err(ProbeError::Defer(r)) => {
            assert!(
                r.to_string().contains("is disabled: device left blocked"),
                "{r}"
            )
        }
        other => panic!("{other:?}"),
    }
}
