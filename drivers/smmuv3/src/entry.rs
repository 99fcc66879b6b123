//! Rewriting a live STE or CD while the device behind it may be doing DMA.
//!
//! The SMMU reads a 64-byte entry as eight 64-bit words, each single-copy atomic, in no defined
//! order, and may cache any of them until told otherwise (IHI 0070 §3.21.3 "Configuration
//! structures and configuration invalidation completion": "any single field within an aligned
//! 64-bit span of a structure can be altered without first making the structure invalid").
//! So between two *sync points* — barrier, CFGI_STE / CFGI_CD, CMD_SYNC, wait — the SMMU may
//! assemble an entry from any version of each word written since the previous sync point. An
//! update is correct when every such mix behaves like the old entry, the new entry, or a quiet
//! entry that lets nothing through (STE: abort; CD: V = 0).
//!
//! Whether a mix is harmless depends on which bits the SMMU *uses* in a given configuration
//! ([`Entry::used_bits`]: an abort STE uses only V and Config; a bypass STE also its attribute
//! overrides; a stage-1 STE the CD pointer and fetch attributes; a valid CD everything). From
//! that, [`write_entry`] picks one of three sequences (the same analysis as Linux's
//! `arm_smmu_write_entry`):
//!
//! 1. **Unchanged** — no used bit differs: write the words that differ (bits nobody reads), one
//!    sync if anything was written.
//! 2. **Hitless** — the used bits differ in exactly one word, the *critical* word:
//!    (a) write every other word, changing only bits the current configuration ignores, sync;
//!    (b) write the critical word (one atomic store switches old → new), sync;
//!    (c) write the remaining bits the new configuration ignores, sync.
//!    Steps with nothing to write issue no sync. Making an entry valid is this case: everything
//!    but word 0 first, then word 0 with V last.
//! 3. **Break before make** — the used bits differ in two or more words, which no single store
//!    can switch: (a) write the quiet word 0 (STE abort, CD V = 0), sync; (b) write words 1..7,
//!    sync; (c) write the new word 0, sync.
//!
//! The caller's [`EntrySync::sync`] must include the invalidation for the entry (CFGI_STE for an
//! STE, CFGI_CD for a CD) followed by CMD_SYNC and waiting for it: the SMMU caches entries
//! (§3.21), QEMU included, and only a completed invalidation guarantees it re-reads memory.
//! TLB entries created through the old configuration are not this module's business: after a
//! CD changes its TTB0 or ASID, the caller invalidates the old ASID.

use crate::cd::{CD0, Cd};
use crate::ste::{STE0, STE1, STE2, Ste};

/// Words in an STE or CD.
pub const ENTRY_WORDS: usize = 8;

/// A configuration structure the SMMU reads word by word.
pub trait Entry: Copy {
    /// Builds an entry from its words.
    fn from_words(words: [u64; ENTRY_WORDS]) -> Self;
    /// The words, word 0 first.
    fn to_words(&self) -> [u64; ENTRY_WORDS];
    /// For each word, the bits the SMMU interprets when the entry holds this value. Must depend
    /// only on used bits (so entries that agree on their used bits have the same used bits).
    fn used_bits(&self) -> [u64; ENTRY_WORDS];
    /// Word 0 of the quiet entry used as the intermediate state of a break-before-make update:
    /// with it in place, no other word is used and no transaction gets through.
    fn quiet_word0() -> u64;
    /// True when the entry is quiet (lets nothing through): see [`Self::quiet_word0`].
    fn is_quiet(&self) -> bool;
}

/// Where the writer's stores and sync points go: the live entry in memory, and the command
/// queue. Implemented by the driver; tests use `fake::RecordingSync` (feature `fakes`).
pub trait EntrySync {
    /// Stores `value` into word `word` (0..8) of the entry, as one single-copy-atomic 64-bit
    /// store (never two halves, never a byte copy).
    fn write(&mut self, word: usize, value: u64);
    /// Makes every store so far visible to the SMMU and discards what it cached of the entry:
    /// a barrier (the SMMU must observe the stores before the command), CFGI_STE or CFGI_CD for
    /// the entry, CMD_SYNC, and waiting for the sync to complete.
    fn sync(&mut self);
}

/// Which sequence [`write_entry`] used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// Old and new agree on every used bit.
    Unchanged,
    /// One word switched the configuration atomically.
    Hitless,
    /// The entry went through the quiet state.
    BreakBeforeMake,
}

/// Rewrites the live entry holding `current` so that it holds `target`, never letting the SMMU
/// see anything but `current`, `target` or the quiet entry. Returns the sequence used.
pub fn write_entry<E: Entry>(current: &E, target: &E, out: &mut impl EntrySync) -> UpdateKind {
    let mut live = current.to_words();
    let target_words = target.to_words();
    let cur_used = current.used_bits();
    let tgt_used = target.used_bits();

    // What each word can become without changing anything the SMMU uses now.
    let mut staged = [0; ENTRY_WORDS];
    let mut critical = 0usize;
    let mut critical_count = 0;
    for i in 0..ENTRY_WORDS {
        staged[i] = (live[i] & cur_used[i]) | (target_words[i] & !cur_used[i]);
        if staged[i] & tgt_used[i] != target_words[i] & tgt_used[i] {
            critical = i;
            critical_count += 1;
        }
    }

    match critical_count {
        0 => {
            set_words(out, &mut live, &target_words, 0..ENTRY_WORDS);
            UpdateKind::Unchanged
        }
        1 => {
            // The critical word keeps its current value while the others are prepared.
            staged[critical] = live[critical];
            set_words(out, &mut live, &staged, 0..ENTRY_WORDS);
            set_words(out, &mut live, &target_words, critical..critical + 1);
            set_words(out, &mut live, &target_words, 0..ENTRY_WORDS);
            UpdateKind::Hitless
        }
        _ => {
            let mut quiet = live;
            quiet[0] = E::quiet_word0();
            set_words(out, &mut live, &quiet, 0..1);
            set_words(out, &mut live, &target_words, 1..ENTRY_WORDS);
            // Word 0 (with V / Config) last: the SMMU must not use the new configuration before
            // the other words are visible.
            set_words(out, &mut live, &target_words, 0..1);
            UpdateKind::BreakBeforeMake
        }
    }
}

/// Writes the words of `range` where `live` differs from `want`, then syncs if anything was
/// written.
fn set_words(
    out: &mut impl EntrySync,
    live: &mut [u64; ENTRY_WORDS],
    want: &[u64; ENTRY_WORDS],
    range: core::ops::Range<usize>,
) {
    let mut changed = false;
    for i in range {
        if live[i] != want[i] {
            out.write(i, want[i]);
            live[i] = want[i];
            changed = true;
        }
    }
    if changed {
        out.sync();
    }
}

fn mask<R: tock_registers::RegisterLongName>(field: tock_registers::fields::Field<u64, R>) -> u64 {
    field.mask << field.shift
}

impl Entry for Ste {
    fn from_words(words: [u64; ENTRY_WORDS]) -> Self {
        Ste::from_words(words)
    }

    fn to_words(&self) -> [u64; ENTRY_WORDS] {
        *self.words()
    }

    /// Used bits per configuration (§5.2): V always; Config when valid; for bypass the
    /// attribute overrides; for stage 1 the CD pointer and format, the CD fetch attributes, ATS,
    /// regime, stall disable, the permission overrides and S2VMID (it tags stage-1 TLB entries);
    /// for anything this kernel does not build (stage 2, nested, reserved) every bit.
    fn used_bits(&self) -> [u64; ENTRY_WORDS] {
        let words = self.words();
        let mut used = [0; ENTRY_WORDS];
        used[0] = mask(STE0::V);
        if words[0] & used[0] == 0 {
            return used;
        }
        used[0] |= mask(STE0::Config);
        let overrides = mask(STE1::NSCFG) | mask(STE1::PRIVCFG) | mask(STE1::INSTCFG);
        match STE0::Config.read_as_enum(words[0]) {
            Some(STE0::Config::Value::Abort) => {}
            Some(STE0::Config::Value::Bypass) => {
                used[1] = overrides
                    | mask(STE1::MEMATTR)
                    | mask(STE1::MTCFG)
                    | mask(STE1::ALLOCCFG)
                    | mask(STE1::SHCFG);
            }
            Some(STE0::Config::Value::S1Trans) => {
                used[0] |= mask(STE0::S1Fmt) | mask(STE0::S1ContextPtr) | mask(STE0::S1CDMax);
                used[1] = overrides
                    | mask(STE1::S1DSS)
                    | mask(STE1::S1CIR)
                    | mask(STE1::S1COR)
                    | mask(STE1::S1CSH)
                    | mask(STE1::S1STALLD)
                    | mask(STE1::EATS)
                    | mask(STE1::STRW);
                // Substreams bypassing stage 1 take the bypass attributes.
                if STE1::S1DSS.read_as_enum(words[1]) == Some(STE1::S1DSS::Value::Bypass) {
                    used[1] |= mask(STE1::SHCFG);
                }
                used[2] = mask(STE2::S2VMID);
            }
            _ => used = [u64::MAX; ENTRY_WORDS],
        }
        used
    }

    /// V = 1, Config = abort: unlike V = 0, aborts without a C_BAD_STE event per transaction.
    fn quiet_word0() -> u64 {
        (STE0::V::SET + STE0::Config::Abort).value
    }

    fn is_quiet(&self) -> bool {
        self.words()[0] & (mask(STE0::V) | mask(STE0::Config)) == Self::quiet_word0()
    }
}

impl Entry for Cd {
    fn from_words(words: [u64; ENTRY_WORDS]) -> Self {
        Cd::from_words(words)
    }

    fn to_words(&self) -> [u64; ENTRY_WORDS] {
        *self.words()
    }

    /// A CD with V = 0 uses only V; a valid CD is used whole (§5.4: this kernel does not rely
    /// on EPD0 making the TTB0 fields ignored).
    fn used_bits(&self) -> [u64; ENTRY_WORDS] {
        if self.is_valid() {
            [u64::MAX; ENTRY_WORDS]
        } else {
            let mut used = [0; ENTRY_WORDS];
            used[0] = mask(CD0::V);
            used
        }
    }

    /// V = 0: stage-1 traffic through the CD is terminated (there is no "abort" CD).
    fn quiet_word0() -> u64 {
        0
    }

    fn is_quiet(&self) -> bool {
        !self.is_valid()
    }
}

/// A recording [`EntrySync`] and the observability check, for tests here and in the driver.
#[cfg(any(test, feature = "fakes"))]
pub mod fake {
    use alloc::vec::Vec;

    use super::{ENTRY_WORDS, Entry, EntrySync, UpdateKind, write_entry};

    /// One step of an update.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Op {
        /// A 64-bit store to a word.
        Write { word: usize, value: u64 },
        /// A sync point.
        Sync,
    }

    /// Applies the writes to an in-memory entry and records every step.
    #[derive(Clone, Debug)]
    pub struct RecordingSync {
        /// The entry as the writes left it.
        pub memory: [u64; ENTRY_WORDS],
        /// Every write and sync, in order.
        pub ops: Vec<Op>,
    }

    impl RecordingSync {
        /// Starts from `initial`.
        pub fn new(initial: [u64; ENTRY_WORDS]) -> Self {
            Self {
                memory: initial,
                ops: Vec::new(),
            }
        }

        /// Number of sync points issued.
        pub fn syncs(&self) -> usize {
            self.ops.iter().filter(|op| **op == Op::Sync).count()
        }

        /// Every entry the SMMU could assemble, starting from `initial`: within each interval
        /// between sync points, any combination of the values each word held in that interval.
        pub fn observable(&self, initial: [u64; ENTRY_WORDS]) -> Vec<[u64; ENTRY_WORDS]> {
            let mut states = Vec::new();
            let mut current = initial;
            let mut versions: Vec<Vec<u64>> = current.iter().map(|w| alloc::vec![*w]).collect();
            for op in &self.ops {
                match *op {
                    Op::Write { word, value } => {
                        current[word] = value;
                        versions[word].push(value);
                    }
                    Op::Sync => {
                        combine(&versions, &mut states);
                        versions = current.iter().map(|w| alloc::vec![*w]).collect();
                    }
                }
            }
            combine(&versions, &mut states);
            states
        }
    }

    fn combine(versions: &[Vec<u64>], out: &mut Vec<[u64; ENTRY_WORDS]>) {
        let mut index = [0usize; ENTRY_WORDS];
        loop {
            let mut entry = [0; ENTRY_WORDS];
            for w in 0..ENTRY_WORDS {
                entry[w] = versions[w][index[w]];
            }
            out.push(entry);
            // Odometer over the per-word version lists.
            let mut w = 0;
            loop {
                if w == ENTRY_WORDS {
                    return;
                }
                index[w] += 1;
                if index[w] < versions[w].len() {
                    break;
                }
                index[w] = 0;
                w += 1;
            }
        }
    }

    impl EntrySync for RecordingSync {
        fn write(&mut self, word: usize, value: u64) {
            assert!(word < ENTRY_WORDS, "entry word {word} out of range");
            self.memory[word] = value;
            self.ops.push(Op::Write { word, value });
        }

        fn sync(&mut self) {
            self.ops.push(Op::Sync);
        }
    }

    /// True when `seen` behaves like `reference`: they agree on the bits `seen` uses (and thus
    /// use the same bits).
    pub fn behaves_like<E: Entry>(seen: &E, reference: &E) -> bool {
        let used = seen.used_bits();
        let a = seen.to_words();
        let b = reference.to_words();
        (0..ENTRY_WORDS).all(|i| a[i] & used[i] == b[i] & used[i]) && used == reference.used_bits()
    }

    /// Runs [`write_entry`] from `from` to `to` and checks it: the entry ends equal to `to`,
    /// every observable state behaves like `from`, like `to`, or is quiet. Returns the sequence
    /// kind and the number of syncs; panics with the offending state otherwise.
    pub fn check_transition<E: Entry + core::fmt::Debug>(from: &E, to: &E) -> (UpdateKind, usize) {
        let mut rec = RecordingSync::new(from.to_words());
        let kind = write_entry(from, to, &mut rec);
        assert_eq!(
            rec.memory,
            to.to_words(),
            "entry does not end as the target"
        );
        assert_eq!(
            rec.ops.last().copied().unwrap_or(Op::Sync),
            Op::Sync,
            "writes after the last sync"
        );
        for words in rec.observable(from.to_words()) {
            let seen = E::from_words(words);
            assert!(
                behaves_like(&seen, from) || behaves_like(&seen, to) || seen.is_quiet(),
                "observable state {seen:?} is neither {from:?}, {to:?} nor quiet; ops {:?}",
                rec.ops
            );
        }
        (kind, rec.syncs())
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Op, RecordingSync, check_transition};
    use super::*;
    use crate::cd::Stage1;
    use crate::features::Oas;
    use crate::{Asid, PhysAddr};

    const CD_A: PhysAddr = PhysAddr(0x4100_0000);
    const CD_B: PhysAddr = PhysAddr(0x4100_0040);

    fn s1(cd: PhysAddr) -> Ste {
        Ste::stage1(cd, true).unwrap()
    }

    #[test]
    fn smmuv3_entry_ste_abort_to_bypass_is_hitless_in_two_syncs() {
        assert_eq!(
            check_transition(&Ste::abort(), &Ste::bypass()),
            (UpdateKind::Hitless, 2)
        );
        // Word 1 (SHCFG) first, then word 0 switches Config.
        let mut rec = RecordingSync::new(*Ste::abort().words());
        write_entry(&Ste::abort(), &Ste::bypass(), &mut rec);
        assert_eq!(
            rec.ops,
            [
                Op::Write {
                    word: 1,
                    value: 1 << 44
                },
                Op::Sync,
                Op::Write {
                    word: 0,
                    value: 0x9
                },
                Op::Sync
            ]
        );
    }

    #[test]
    fn smmuv3_entry_ste_abort_to_s1_is_hitless_in_two_syncs() {
        assert_eq!(
            check_transition(&Ste::abort(), &s1(CD_A)),
            (UpdateKind::Hitless, 2)
        );
        // Word 1 first while Config still says abort; then word 0, CD pointer and Config at once.
        let mut rec = RecordingSync::new(*Ste::abort().words());
        write_entry(&Ste::abort(), &s1(CD_A), &mut rec);
        let target = *s1(CD_A).words();
        assert_eq!(
            rec.ops,
            [
                Op::Write {
                    word: 1,
                    value: target[1]
                },
                Op::Sync,
                Op::Write {
                    word: 0,
                    value: target[0]
                },
                Op::Sync
            ]
        );
    }

    #[test]
    fn smmuv3_entry_ste_s1_to_abort_is_hitless_in_two_syncs() {
        assert_eq!(
            check_transition(&s1(CD_A), &Ste::abort()),
            (UpdateKind::Hitless, 2)
        );
        // Abort first, then the now-unused words are cleared.
        let mut rec = RecordingSync::new(*s1(CD_A).words());
        write_entry(&s1(CD_A), &Ste::abort(), &mut rec);
        assert_eq!(rec.ops[0], Op::Write { word: 0, value: 1 });
        assert_eq!(rec.ops[1], Op::Sync);
    }

    #[test]
    fn smmuv3_entry_ste_s1_cd_change_is_one_store_one_sync() {
        assert_eq!(
            check_transition(&s1(CD_A), &s1(CD_B)),
            (UpdateKind::Hitless, 1)
        );
        let mut rec = RecordingSync::new(*s1(CD_A).words());
        write_entry(&s1(CD_A), &s1(CD_B), &mut rec);
        assert_eq!(
            rec.ops,
            [
                Op::Write {
                    word: 0,
                    value: s1(CD_B).words()[0]
                },
                Op::Sync
            ]
        );
    }

    #[test]
    fn smmuv3_entry_ste_bypass_to_s1_is_hitless_in_three_syncs() {
        // SHCFG stays until Config changed, then is cleared.
        assert_eq!(
            check_transition(&Ste::bypass(), &s1(CD_A)),
            (UpdateKind::Hitless, 3)
        );
        assert_eq!(
            check_transition(&s1(CD_A), &Ste::bypass()),
            (UpdateKind::Hitless, 3)
        );
    }

    #[test]
    fn smmuv3_entry_ste_bypass_to_abort_is_hitless_in_two_syncs() {
        assert_eq!(
            check_transition(&Ste::bypass(), &Ste::abort()),
            (UpdateKind::Hitless, 2)
        );
    }

    #[test]
    fn smmuv3_entry_ste_from_invalid_writes_word0_last() {
        assert_eq!(
            check_transition(&Ste::invalid(), &Ste::abort()),
            (UpdateKind::Hitless, 1)
        );
        assert_eq!(
            check_transition(&Ste::invalid(), &Ste::bypass()),
            (UpdateKind::Hitless, 2)
        );
        let mut rec = RecordingSync::new([0; 8]);
        write_entry(&Ste::invalid(), &s1(CD_A), &mut rec);
        assert_eq!(rec.syncs(), 2);
        // The last store before the last sync is word 0 with V = 1.
        assert_eq!(
            rec.ops[rec.ops.len() - 2],
            Op::Write {
                word: 0,
                value: s1(CD_A).words()[0]
            }
        );
        assert!(
            rec.ops[..rec.ops.len() - 2]
                .iter()
                .all(|op| !matches!(op, Op::Write { word: 0, .. }))
        );
    }

    #[test]
    fn smmuv3_entry_ste_same_entry_writes_nothing() {
        assert_eq!(
            check_transition(&s1(CD_A), &s1(CD_A)),
            (UpdateKind::Unchanged, 0)
        );
    }

    #[test]
    fn smmuv3_entry_ste_unused_bits_change_without_a_config_change() {
        // An abort STE with junk in word 1 (unused): cleaning it needs no hitless dance.
        let dirty = Ste::from_words([1, 0xdead, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check_transition(&dirty, &Ste::abort()),
            (UpdateKind::Unchanged, 1)
        );
    }

    #[test]
    fn smmuv3_entry_ste_two_used_words_go_through_abort() {
        // Same config, new CD and a different regime: words 0 and 1 both matter.
        let mut words = *s1(CD_B).words();
        words[1] |= 2 << 30; // STRW = EL2
        let el2 = Ste::from_words(words);
        assert_eq!(
            check_transition(&s1(CD_A), &el2),
            (UpdateKind::BreakBeforeMake, 3)
        );
        let mut rec = RecordingSync::new(*s1(CD_A).words());
        write_entry(&s1(CD_A), &el2, &mut rec);
        // The intermediate state is abort (V = 1, Config = 0), not V = 0.
        assert_eq!(rec.ops[0], Op::Write { word: 0, value: 1 });
        assert_eq!(rec.ops[1], Op::Sync);
    }

    #[test]
    fn smmuv3_entry_ste_unknown_configs_are_fully_used() {
        let s2 = Ste::from_words([0b1101, 0, 0x1234, 0x4000_0000, 0, 0, 0, 0]);
        assert_eq!(s2.used_bits(), [u64::MAX; 8]);
        assert_eq!(
            check_transition(&s2, &s1(CD_A)),
            (UpdateKind::BreakBeforeMake, 3)
        );
    }

    fn cd(asid: u16, ttb0: u64) -> Cd {
        Cd::stage1(&Stage1 {
            asid: Asid(asid),
            ttb0: PhysAddr(ttb0),
            ias_bits: 48,
            oas: Oas::Bits44,
            coherent_walk: true,
        })
        .unwrap()
    }

    #[test]
    fn smmuv3_entry_cd_install_writes_v_last() {
        assert_eq!(
            check_transition(&Cd::invalid(), &cd(1, 0x4080_0000)),
            (UpdateKind::Hitless, 2)
        );
        let mut rec = RecordingSync::new([0; 8]);
        write_entry(&Cd::invalid(), &cd(1, 0x4080_0000), &mut rec);
        assert_eq!(
            rec.ops,
            [
                Op::Write {
                    word: 1,
                    value: 0x4080_0000
                },
                Op::Write {
                    word: 3,
                    value: crate::cd::MAIR
                },
                Op::Sync,
                Op::Write {
                    word: 0,
                    value: cd(1, 0x4080_0000).words()[0]
                },
                Op::Sync
            ]
        );
    }

    #[test]
    fn smmuv3_entry_cd_single_word_changes_are_hitless() {
        assert_eq!(
            check_transition(&cd(1, 0x4080_0000), &cd(2, 0x4080_0000)),
            (UpdateKind::Hitless, 1)
        );
        assert_eq!(
            check_transition(&cd(1, 0x4080_0000), &cd(1, 0x4090_0000)),
            (UpdateKind::Hitless, 1)
        );
    }

    #[test]
    fn smmuv3_entry_cd_asid_and_table_change_breaks_first() {
        assert_eq!(
            check_transition(&cd(1, 0x4080_0000), &cd(2, 0x4090_0000)),
            (UpdateKind::BreakBeforeMake, 3)
        );
        let mut rec = RecordingSync::new(*cd(1, 0x4080_0000).words());
        write_entry(&cd(1, 0x4080_0000), &cd(2, 0x4090_0000), &mut rec);
        assert_eq!(rec.ops[0], Op::Write { word: 0, value: 0 });
    }

    #[test]
    fn smmuv3_entry_cd_remove_clears_v_first() {
        assert_eq!(
            check_transition(&cd(1, 0x4080_0000), &Cd::invalid()),
            (UpdateKind::Hitless, 2)
        );
        let mut rec = RecordingSync::new(*cd(1, 0x4080_0000).words());
        write_entry(&cd(1, 0x4080_0000), &Cd::invalid(), &mut rec);
        assert_eq!(rec.ops[0], Op::Write { word: 0, value: 0 });
    }

    #[test]
    fn smmuv3_entry_checker_catches_a_torn_update() {
        // Writing an S1 STE over bypass in plain word order (word 0 first, one sync at the end)
        // lets the SMMU combine the new Config with the old word 1: the checker must see it.
        let from = Ste::bypass();
        let to = s1(CD_A);
        let mut rec = RecordingSync::new(*from.words());
        for (i, w) in to.words().iter().enumerate() {
            rec.write(i, *w);
        }
        rec.sync();
        let torn = rec.observable(*from.words()).into_iter().any(|w| {
            let seen = Ste::from_words(w);
            !(fake::behaves_like(&seen, &from) || fake::behaves_like(&seen, &to) || seen.is_quiet())
        });
        assert!(torn);
    }

    /// xorshift64: deterministic pseudo-random words without a dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_ste(state: &mut u64) -> Ste {
        let mut words = [0u64; 8];
        for w in &mut words {
            // Sparse junk, so that pairs often share words.
            *w = if next(state).is_multiple_of(3) {
                next(state)
            } else {
                0
            };
        }
        let config = match next(state) % 5 {
            0 => return Ste::from_words(words.map(|w| w & !1)), // V = 0
            1 => 0b000,
            2 => 0b100,
            3 => 0b101,
            _ => 0b110,
        };
        words[0] = (words[0] & !0xf) | (config << 1) | 1;
        Ste::from_words(words)
    }

    fn random_cd(state: &mut u64) -> Cd {
        let mut words = [0u64; 8];
        for w in &mut words {
            *w = if next(state).is_multiple_of(3) {
                next(state)
            } else {
                0
            };
        }
        Cd::from_words(words)
    }

    #[test]
    fn smmuv3_entry_random_transitions_are_safe() {
        let mut state = 0x2545_f491_4f6c_dd1d;
        let mut kinds = alloc::vec::Vec::new();
        for _ in 0..2000 {
            let (from, to) = (random_ste(&mut state), random_ste(&mut state));
            let (kind, syncs) = check_transition(&from, &to);
            assert!(syncs <= 3);
            kinds.push(kind);
            let (from, to) = (random_cd(&mut state), random_cd(&mut state));
            let (kind, syncs) = check_transition(&from, &to);
            assert!(syncs <= 3);
            kinds.push(kind);
        }
        for kind in [
            UpdateKind::Unchanged,
            UpdateKind::Hitless,
            UpdateKind::BreakBeforeMake,
        ] {
            assert!(kinds.contains(&kind), "no random case took {kind:?}");
        }
    }

    #[test]
    fn smmuv3_entry_every_pair_of_kernel_stes_is_safe() {
        let all = [
            Ste::invalid(),
            Ste::abort(),
            Ste::bypass(),
            s1(CD_A),
            s1(CD_B),
        ];
        for from in &all {
            for to in &all {
                let (_, syncs) = check_transition(from, to);
                assert!(syncs <= 3, "{from:?} -> {to:?} took {syncs} syncs");
            }
        }
    }
}
