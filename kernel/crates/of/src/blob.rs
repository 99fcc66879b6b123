//! Validation of a flattened device tree before the `fdt` crate sees it.
//!
//! `fdt` 0.1.5 trusts its input: it slices blocks by header offsets, `expect`s NUL-terminated
//! UTF-8 names, indexes a 64-entry parent stack and asserts on tokens. Every one of those is
//! checked here first, by walking the whole structure block with bounds checks, so no blob can
//! reach a panic inside `fdt`. The walk is linear in the blob size.
//!
//! Refused although the format allows it: `FDT_NOP` (fdt 0.1.5 stops or asserts on it in several
//! places) and versions below 17 (no `size_dt_struct`). dtc emits neither, and neither does QEMU
//! for the tree it generates; but QEMU edits a tree given with `-dtb` through libfdt, which
//! turns the nodes it replaces (the memory node, `/psci`) into `FDT_NOP` tokens.
//! [`without_nops`] makes a compacted copy of such a blob, which [`crate::DeviceTree::parse`]
//! then takes.

use alloc::vec::Vec;

use crate::MAX_DEPTH;
use crate::error::{BlobProblem, Block, DtError};

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// One node as the validator saw it, in pre-order.
#[derive(Debug)]
pub(crate) struct RawNode<'a> {
    /// The name with unit address (`""` for the root).
    pub name: &'a str,
    /// Index of the parent in the pre-order list.
    pub parent: Option<usize>,
    /// Offset of its `FDT_BEGIN_NODE` token in the blob.
    pub offset: usize,
}

/// A validated blob: exactly `totalsize` bytes, and its nodes in pre-order.
pub(crate) struct Validated<'a> {
    pub blob: &'a [u8],
    pub nodes: Vec<RawNode<'a>>,
    pub reservations: Vec<(u64, u64)>,
}

fn err(offset: usize, problem: BlobProblem) -> DtError {
    DtError::Blob { offset, problem }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Names end up in log lines (paths and property names are in every [`DtError`]), and the log is
/// read one line per event: a control character (a newline, an escape sequence) is refused
/// anywhere in a node or property name. The specification allows far fewer characters still.
fn has_control(name: &str) -> bool {
    name.chars().any(char::is_control)
}

/// One NUL-terminated piece of the strings block.
#[derive(Clone, Copy)]
enum Piece {
    NotUtf8,
    /// UTF-8, with the block offset of its last control character, if any.
    Text {
        last_control: Option<usize>,
    },
}

/// Property names: the strings block cut at every NUL, each piece checked once, so a name lookup
/// is a binary search rather than a scan (a hostile blob can have many names).
struct Strings<'a> {
    block: &'a [u8],
    /// Offsets of the NUL bytes, ascending.
    nuls: Vec<usize>,
    /// Per piece (the bytes before `nuls[i]`).
    pieces: Vec<Piece>,
}

impl<'a> Strings<'a> {
    fn new(block: &'a [u8]) -> Self {
        let nuls: Vec<usize> = block
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| (b == 0).then_some(i))
            .collect();
        let mut start = 0;
        let pieces = nuls
            .iter()
            .map(|&end| {
                let piece = match core::str::from_utf8(&block[start..end]) {
                    Err(_) => Piece::NotUtf8,
                    Ok(s) => Piece::Text {
                        last_control: s
                            .char_indices()
                            .rfind(|(_, c)| c.is_control())
                            .map(|(i, _)| start + i),
                    },
                };
                start = end + 1;
                piece
            })
            .collect();
        Self {
            block,
            nuls,
            pieces,
        }
    }

    fn check(&self, nameoff: u32, at: usize) -> Result<(), DtError> {
        let off = nameoff as usize;
        if off >= self.block.len() {
            return Err(err(at, BlobProblem::NameOffset(nameoff)));
        }
        // The first NUL at or after `off`.
        let piece = self.nuls.partition_point(|&n| n < off);
        let Some(&end) = self.nuls.get(piece) else {
            return Err(err(at, BlobProblem::StringUnterminated(nameoff)));
        };
        let Some(Piece::Text { last_control }) = self.pieces.get(piece).copied() else {
            return Err(err(at, BlobProblem::StringNotUtf8(nameoff)));
        };
        // A suffix of valid UTF-8 is valid exactly when it does not start on a continuation byte.
        if off != end && self.block[off] & 0xc0 == 0x80 {
            return Err(err(at, BlobProblem::StringNotUtf8(nameoff)));
        }
        if last_control.is_some_and(|c| c >= off) {
            return Err(err(at, BlobProblem::StringControl(nameoff)));
        }
        Ok(())
    }
}

/// Checks the header, the reservation block and the whole structure block.
pub(crate) fn validate(data: &[u8]) -> Result<Validated<'_>, DtError> {
    check(data, None)
}

/// [`validate`]; with `nops`, `FDT_NOP` tokens are accepted and their offsets in the structure
/// block collected there instead of being an error.
fn check<'a>(data: &'a [u8], nops: Option<&mut Vec<usize>>) -> Result<Validated<'a>, DtError> {
    if data.len() < HEADER_LEN {
        return Err(err(0, BlobProblem::TooSmall(data.len())));
    }
    let h = |i: usize| be32(data, i * 4).unwrap_or(0);
    let (magic, total, off_struct, off_strings, off_rsv) = (h(0), h(1), h(2), h(3), h(4));
    let (version, last_comp, size_strings, size_struct) = (h(5), h(6), h(8), h(9));
    if magic != MAGIC {
        return Err(err(0, BlobProblem::BadMagic(magic)));
    }
    if (total as usize) > data.len() || (total as usize) < HEADER_LEN {
        return Err(err(
            4,
            BlobProblem::TotalSize {
                total,
                available: data.len(),
            },
        ));
    }
    if version < 17 || last_comp > 17 {
        return Err(err(
            20,
            BlobProblem::Version {
                version,
                last_compatible: last_comp,
            },
        ));
    }
    let blob = &data[..total as usize];
    let block = |which: Block, hdr_at: usize, off: u32, size: u32| {
        let end = u64::from(off) + u64::from(size);
        if (off as usize) < HEADER_LEN || end > u64::from(total) {
            Err(err(
                hdr_at,
                BlobProblem::BlockOutside {
                    block: which,
                    offset: off,
                    size,
                },
            ))
        } else {
            Ok(&blob[off as usize..end as usize])
        }
    };
    let structure = block(Block::Structure, 8, off_struct, size_struct)?;
    let strings = block(Block::Strings, 12, off_strings, size_strings)?;
    if !off_struct.is_multiple_of(4) {
        return Err(err(8, BlobProblem::Misaligned(Block::Structure)));
    }
    let reservations = check_reservations(blob, off_rsv)?;
    let nodes = walk(structure, off_struct as usize, &Strings::new(strings), nops)?;
    Ok(Validated {
        blob,
        nodes,
        reservations,
    })
}

/// A copy of `data` without its `FDT_NOP` tokens, or `None` when it has none (then `data` can be
/// parsed as it is). The copy is a version-17 blob laid out header, reservation block, structure
/// block, strings block, without padding; everything else is as in `data`.
///
/// The blob is checked exactly as [`crate::DeviceTree::parse`] checks it (so every other defect
/// gives the same error), and the copy is made only when that succeeds. If the memory for the
/// copy cannot be had, the error is the one `parse` gives for the first `FDT_NOP`.
pub fn without_nops(data: &[u8]) -> Result<Option<Vec<u8>>, DtError> {
    let mut nops = Vec::new();
    let v = check(data, Some(&mut nops))?;
    let Some(&first) = nops.first() else {
        return Ok(None);
    };
    let blob = v.blob;
    // `check` read the header and bounded every block with it.
    let h = |i: usize| be32(blob, i * 4).unwrap_or(0);
    let (off_struct, off_strings, boot_cpu) = (h(2) as usize, h(3) as usize, h(7));
    let (size_strings, size_struct) = (h(8) as usize, h(9) as usize);
    let structure = &blob[off_struct..off_struct + size_struct];
    let strings = &blob[off_strings..off_strings + size_strings];
    let reservations = (v.reservations.len() + 1) * 16;
    let new_struct = size_struct - 4 * nops.len();
    // The reservation block right after the header, 8-byte aligned; the structure block after it
    // is then 4-byte aligned as required.
    let rsv_at = HEADER_LEN.next_multiple_of(8);
    let struct_at = rsv_at + reservations;
    let strings_at = struct_at + new_struct;
    let total = strings_at + size_strings;
    let nop_error = || err(off_struct + first, BlobProblem::Nop);
    let total32 = u32::try_from(total).map_err(|_| nop_error())?;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| nop_error())?;
    let header = [
        MAGIC,
        total32,
        struct_at as u32,
        strings_at as u32,
        rsv_at as u32,
        17,
        16,
        boot_cpu,
        size_strings as u32,
        new_struct as u32,
    ];
    for word in header {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.resize(rsv_at, 0);
    for &(address, size) in &v.reservations {
        out.extend_from_slice(&address.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
    }
    out.extend_from_slice(&[0; 16]);
    let mut from = 0;
    for &nop in &nops {
        out.extend_from_slice(&structure[from..nop]);
        from = nop + 4;
    }
    out.extend_from_slice(&structure[from..]);
    out.extend_from_slice(strings);
    Ok(Some(out))
}

/// The `/memreserve/` entries (address, size), up to the all-zero terminator.
fn check_reservations(blob: &[u8], off: u32) -> Result<Vec<(u64, u64)>, DtError> {
    let start = off as usize;
    if start < HEADER_LEN || start > blob.len() {
        return Err(err(
            16,
            BlobProblem::BlockOutside {
                block: Block::Reservations,
                offset: off,
                size: 0,
            },
        ));
    }
    if !start.is_multiple_of(8) {
        return Err(err(16, BlobProblem::Misaligned(Block::Reservations)));
    }
    let mut found = Vec::new();
    for e in blob[start..].chunks_exact(16) {
        if e.iter().all(|&b| b == 0) {
            return Ok(found);
        }
        let word = |i: usize| {
            u64::from_be_bytes([
                e[i],
                e[i + 1],
                e[i + 2],
                e[i + 3],
                e[i + 4],
                e[i + 5],
                e[i + 6],
                e[i + 7],
            ])
        };
        found.push((word(0), word(8)));
    }
    Err(err(start, BlobProblem::ReservationsUnterminated))
}

fn walk<'a>(
    s: &'a [u8],
    base: usize,
    strings: &Strings<'_>,
    mut nops: Option<&mut Vec<usize>>,
) -> Result<Vec<RawNode<'a>>, DtError> {
    let mut nodes: Vec<RawNode<'a>> = Vec::new();
    // Open nodes, innermost last.
    let mut open: Vec<usize> = Vec::new();
    let mut in_props = false;
    let mut pos = 0usize;
    loop {
        let at = base + pos;
        let token = be32(s, pos).ok_or_else(|| err(at, BlobProblem::Truncated))?;
        match token {
            BEGIN_NODE => {
                let name_start = pos + 4;
                let rest = s.get(name_start..).unwrap_or_default();
                let len = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| err(at, BlobProblem::NameUnterminated))?;
                let name = core::str::from_utf8(&rest[..len])
                    .map_err(|_| err(at, BlobProblem::NameNotUtf8))?;
                let parent = open.last().copied();
                if parent.is_none() && !nodes.is_empty() {
                    return Err(err(at, BlobProblem::SecondRoot));
                }
                let name_ok = match parent {
                    None => name.is_empty(),
                    Some(_) => !name.is_empty() && !name.contains('/') && !has_control(name),
                };
                if !name_ok {
                    return Err(err(at, BlobProblem::BadNodeName(name.into())));
                }
                if open.len() >= MAX_DEPTH {
                    return Err(err(at, BlobProblem::TooDeep));
                }
                open.push(nodes.len());
                nodes.push(RawNode {
                    name,
                    parent,
                    offset: at,
                });
                in_props = true;
                pos = align4(name_start + len + 1);
            }
            END_NODE => {
                open.pop().ok_or_else(|| err(at, BlobProblem::Unbalanced))?;
                in_props = false;
                pos += 4;
            }
            PROP => {
                if open.is_empty() {
                    return Err(err(at, BlobProblem::PropertyOutsideNode));
                }
                if !in_props {
                    return Err(err(at, BlobProblem::PropertyAfterChild));
                }
                let len = be32(s, pos + 4).ok_or_else(|| err(at, BlobProblem::Truncated))?;
                let nameoff = be32(s, pos + 8).ok_or_else(|| err(at, BlobProblem::Truncated))?;
                let value_end = (pos + 12)
                    .checked_add(len as usize)
                    .filter(|&e| e <= s.len())
                    .ok_or_else(|| err(at, BlobProblem::PropertyTooLong(len)))?;
                strings.check(nameoff, at)?;
                pos = align4(value_end);
            }
            NOP => match nops.as_deref_mut() {
                Some(found) => {
                    found.push(pos);
                    pos += 4;
                }
                None => return Err(err(at, BlobProblem::Nop)),
            },
            END => {
                if !open.is_empty() {
                    return Err(err(at, BlobProblem::BadEnd));
                }
                if nodes.is_empty() {
                    return Err(err(at, BlobProblem::NoRoot));
                }
                return Ok(nodes);
            }
            other => return Err(err(at, BlobProblem::Token(other))),
        }
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_names_are_found_by_offset() {
        let s = Strings::new(b"reg\0compatible\0\xc3\xa9t\0\xff\0tail");
        assert!(s.check(0, 0).is_ok());
        assert!(s.check(2, 0).is_ok(), "a suffix of a name is a name");
        assert!(s.check(3, 0).is_ok(), "the empty name");
        assert!(s.check(4, 0).is_ok());
        assert!(s.check(15, 0).is_ok());
        let c = Strings::new(b"a\nb\0ok\0");
        assert_eq!(c.check(0, 0), Err(err(0, BlobProblem::StringControl(0))));
        assert!(
            c.check(2, 0).is_ok(),
            "the suffix after the newline is clean"
        );
        assert!(c.check(4, 0).is_ok());
        assert_eq!(
            s.check(16, 0),
            Err(err(0, BlobProblem::StringNotUtf8(16))),
            "inside a two-byte character"
        );
        assert_eq!(s.check(19, 0), Err(err(0, BlobProblem::StringNotUtf8(19))));
        assert_eq!(
            s.check(21, 0),
            Err(err(0, BlobProblem::StringUnterminated(21)))
        );
        assert_eq!(s.check(99, 0), Err(err(0, BlobProblem::NameOffset(99))));
    }

    #[test]
    fn alignment_rounds_up_to_words() {
        assert_eq!((align4(0), align4(1), align4(4), align4(5)), (0, 4, 4, 8));
    }
}
