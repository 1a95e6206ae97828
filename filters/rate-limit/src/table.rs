//! The bounded slot table in a shared key-value store with compare-and-swap.
//!
//! Envoy's shared data is process-wide (every worker's VM sees it), has a CAS
//! token per key, and can never delete a key. So the filter never creates a
//! key per client: it uses a fixed number of keys, the *slots*
//! (`<table>.slot.<i>`, `i < slots`), all created when the filter is
//! configured, plus one *overflow* key per (rule, plan).
//!
//! A bucket key hashes to one slot. The slot stores the owner's 64-bit
//! fingerprint (a second, independent hash of the key) and its TATs:
//!
//! ```text
//! byte 0      version (1)
//! byte 1      n = number of TATs (0 = empty slot)
//! bytes 2-9   owner fingerprint, u64 little-endian
//! then 8 x 8  TATs, u64 little-endian nanoseconds since the Unix epoch;
//!             the first n are used, the rest are zero
//! ```
//!
//! Every value is 74 bytes whatever it holds, so once the slots exist the
//! table's memory never changes.
//!
//! The bucket key starts with its limit set's *identity* (a hash of the
//! rule's own definition, see `engine`), so two rules, or two filter
//! instances sharing one table, never own each other's slots.
//!
//! - The owner's fingerprint matches: its bucket is used.
//! - Another key owns the slot and its bucket is **idle**: every TAT is at
//!   least `min_idle` in the past, i.e. the bucket has been full (the same as
//!   a fresh one) for at least `min_idle`. The newcomer takes the slot over.
//!   The previous owner loses nothing: should it come back, a full bucket is
//!   what it would have had.
//! - Another key owns the slot and its bucket is **active** (not yet full, or
//!   full for less than `min_idle`): the slot is left alone, and the
//!   newcomer is counted in its limit set's overflow bucket, shared by every
//!   key that met an active owner. So a flood of new keys can neither reset
//!   nor drain an active client's bucket, nor take the slot of a light client
//!   that pauses for less than `min_idle`; at worst new keys share the
//!   overflow bucket.
//!
//! Every update is a CAS on one key: read value + token, decide, write with
//! the token; a mismatch means another worker wrote in between, so the
//! request is decided again from the fresh value, up to the retry budget.
//! All limits of a key live in its one slot, so a request is checked and
//! counted against all of them in one atomic write.

use crate::config::MAX_LIMITS_PER_SET;
use crate::gcra::{decide, is_idle, LimitSpec, LimitStatus, Verdict};

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    Ok,
    /// The key changed since the token was read.
    CasMismatch,
    /// The store failed.
    Error,
}

/// The store failed to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreError;

/// A process-wide key-value store with compare-and-swap tokens (Envoy shared
/// data in the adapter; [`MemoryStore`] in tests).
pub trait SharedStore {
    /// The value and its CAS token; `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's token is still `cas` (`cas == 0`: write
    /// unconditionally).
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> SetResult;
}

const VERSION: u8 = 1;
const HEADER: usize = 10;

/// Bytes of every slot value: the header and room for the most TATs a limit
/// set may have. Every value has this size (unused TATs are zero), so a
/// slot's memory never changes after it is created.
pub const SLOT_VALUE_LEN: usize = HEADER + 8 * MAX_LIMITS_PER_SET;

/// The value of an empty slot.
pub fn empty_slot() -> Vec<u8> {
    encode(0, &[])
}

/// Encodes a slot value (at most [`MAX_LIMITS_PER_SET`] TATs are kept).
pub fn encode(fingerprint: u64, tats: &[u64]) -> Vec<u8> {
    let tats = tats
        .get(..tats.len().min(MAX_LIMITS_PER_SET))
        .unwrap_or(&[]);
    let mut out = Vec::with_capacity(SLOT_VALUE_LEN);
    out.push(VERSION);
    out.push(u8::try_from(tats.len()).unwrap_or(0));
    out.extend_from_slice(&fingerprint.to_le_bytes());
    for t in tats {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out.resize(SLOT_VALUE_LEN, 0);
    out
}

/// Decodes a slot value; anything malformed reads as an empty slot.
pub fn decode(bytes: &[u8]) -> (u64, Vec<u64>) {
    let parsed = (|| {
        if *bytes.first()? != VERSION {
            return None;
        }
        let n = usize::from(*bytes.get(1)?);
        if bytes.len() != SLOT_VALUE_LEN || n > MAX_LIMITS_PER_SET {
            return None;
        }
        let fp = u64::from_le_bytes(bytes.get(2..HEADER)?.try_into().ok()?);
        let mut tats = Vec::with_capacity(n);
        for chunk in bytes.get(HEADER..HEADER + 8 * n)?.chunks_exact(8) {
            tats.push(u64::from_le_bytes(chunk.try_into().ok()?));
        }
        Some((fp, tats))
    })();
    parsed.unwrap_or((0, Vec::new()))
}

/// Where one bucket key lives (the keys borrowed, not copied per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// `<table>.slot.<i>`.
    pub slot_key: &'a str,
    /// The rule and plan's overflow key.
    pub overflow_key: &'a str,
    /// The key's fingerprint (never 0, which marks an empty slot).
    pub fingerprint: u64,
    /// The overflow bucket's owner fingerprint.
    pub overflow_fingerprint: u64,
}

/// How the bucket was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trace {
    /// The slot was empty or idle and taken for this key.
    pub took_over: bool,
    /// The slot had an active other owner: the overflow bucket was used.
    pub overflow: bool,
    /// CAS conflicts met (each followed by a retry).
    pub conflicts: u32,
    /// The slot key did not exist and had to be created.
    pub created: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Allowed {
        status: Vec<LimitStatus>,
        trace: Trace,
    },
    Limited {
        retry_after: u64,
        status: Vec<LimitStatus>,
        trace: Trace,
    },
    /// The store failed or conflicts exceeded the retry budget.
    Failed { reason: FailReason, trace: Trace },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    Store,
    RetriesExhausted,
}

/// Checks (and on success counts) one request against `specs` for the
/// bucket key described by `target`, at `now` (ns since the epoch).
/// `retries` is how many CAS conflicts may be retried; `min_idle` (ns) how
/// long another key's bucket must have been full before its slot may be
/// taken over.
pub fn check<S: SharedStore + ?Sized>(
    store: &mut S,
    target: &Target<'_>,
    specs: &[LimitSpec],
    now: u64,
    retries: u32,
    min_idle: u64,
) -> Checked {
    let mut trace = Trace::default();
    let mut in_overflow = false;
    let mut missing_repairs = 0u32;
    loop {
        let (key, owner) = if in_overflow {
            (target.overflow_key, target.overflow_fingerprint)
        } else {
            (target.slot_key, target.fingerprint)
        };
        let (bytes, cas) = match store.get(key) {
            Err(StoreError) => {
                return Checked::Failed {
                    reason: FailReason::Store,
                    trace,
                }
            }
            Ok(Some(v)) => v,
            Ok(None) => {
                // Slots are created at configuration; should one be missing,
                // create it empty (an unconditional write of an empty value)
                // and decide again with a real CAS token.
                missing_repairs += 1;
                trace.created = true;
                if missing_repairs > 2 || store.set(key, &empty_slot(), 0) == SetResult::Error {
                    return Checked::Failed {
                        reason: FailReason::Store,
                        trace,
                    };
                }
                continue;
            }
        };
        let (fp, stored) = decode(&bytes);
        let tats: Vec<u64> = if fp == owner && stored.len() == specs.len() {
            stored
        } else if in_overflow {
            // The overflow key is named after its limit set's identity, so
            // only that set writes it; anything else in it (garbage, a value
            // of an older version) starts fresh.
            Vec::new()
        } else if fp == 0 || is_idle(&stored, now, min_idle) {
            // Empty, or idle for long enough: take the slot, start fresh.
            if fp != owner {
                trace.took_over = true;
            }
            Vec::new()
        } else {
            // An active bucket of another key is never touched, whatever
            // its limits: the key would have to collide in 64 bits to match
            // the owner with another limit set.
            in_overflow = true;
            trace.overflow = true;
            continue;
        };
        match decide(specs, &tats, now) {
            Verdict::Limited {
                retry_after,
                status,
            } => {
                return Checked::Limited {
                    retry_after,
                    status,
                    trace,
                }
            }
            Verdict::Allowed { new_tats, status } => {
                match store.set(key, &encode(owner, &new_tats), cas) {
                    SetResult::Ok => return Checked::Allowed { status, trace },
                    SetResult::Error => {
                        return Checked::Failed {
                            reason: FailReason::Store,
                            trace,
                        }
                    }
                    SetResult::CasMismatch => {
                        trace.conflicts += 1;
                        trace.took_over = false;
                        if trace.conflicts > retries {
                            return Checked::Failed {
                                reason: FailReason::RetriesExhausted,
                                trace,
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Creates every key that does not exist yet, as an empty slot. Existing
/// keys (live buckets, e.g. across a configuration reload) are left alone.
/// Returns how many keys were created.
pub fn ensure_keys<S: SharedStore + ?Sized>(
    store: &mut S,
    keys: impl IntoIterator<Item = String>,
) -> Result<u32, StoreError> {
    let mut created = 0;
    let empty = empty_slot();
    for key in keys {
        if store.get(&key)?.is_none() {
            if store.set(&key, &empty, 0) == SetResult::Error {
                return Err(StoreError);
            }
            created += 1;
        }
    }
    Ok(created)
}

/// In-memory [`SharedStore`] with Envoy's semantics (tokens start at 1 and
/// change on every write; `cas == 0` writes unconditionally), for tests and
/// for documenting the contract.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub map: std::collections::HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Fail every read / write (store failure tests).
    pub fail_get: bool,
    pub fail_set: bool,
    pub sets: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn bump(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        self.next_cas
    }

    /// Bytes held: keys + values (the quantity the slot bound limits).
    pub fn bytes(&self) -> usize {
        self.map.iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        if self.fail_get {
            return Err(StoreError);
        }
        Ok(self.map.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> SetResult {
        if self.fail_set {
            return SetResult::Error;
        }
        if let Some((_, current)) = self.map.get(key) {
            if cas != 0 && cas != *current {
                return SetResult::CasMismatch;
            }
        }
        let token = self.bump();
        self.sets += 1;
        self.map.insert(key.to_string(), (value.to_vec(), token));
        SetResult::Ok
    }
}

/// A store that lets "another worker" act between every read and the next
/// write, to inject CAS conflicts: `interfere` runs before each write and may
/// change the inner store (which invalidates the token the writer holds).
pub struct InterleavedStore<F: FnMut(&mut MemoryStore)> {
    pub inner: MemoryStore,
    pub interfere: F,
}

impl<F: FnMut(&mut MemoryStore)> SharedStore for InterleavedStore<F> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> SetResult {
        (self.interfere)(&mut self.inner);
        self.inner.set(key, value, cas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::NANOS;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: u64 = 1_700_000_000 * NANOS;

    fn target(slot: u32, fp: u64) -> Target<'static> {
        Target {
            // A few keys per test: leaked to keep the helper simple.
            slot_key: Box::leak(format!("t.slot.{slot}").into_boxed_str()),
            overflow_key: "t.overflow.1",
            fingerprint: fp,
            overflow_fingerprint: 99,
        }
    }

    fn specs(burst: u64) -> Vec<LimitSpec> {
        // burst per hour: no refill during a test.
        vec![LimitSpec::new("h", burst, 3600, burst)]
    }

    fn store_with_slots(n: u32) -> MemoryStore {
        let mut s = MemoryStore::new();
        let keys: Vec<String> = (0..n)
            .map(|i| format!("t.slot.{i}"))
            .chain(["t.overflow.1".to_string()])
            .collect();
        assert_eq!(ensure_keys(&mut s, keys.clone()).unwrap(), n + 1);
        assert_eq!(ensure_keys(&mut s, keys).unwrap(), 0);
        s
    }

    fn is_allowed(c: &Checked) -> bool {
        matches!(c, Checked::Allowed { .. })
    }

    #[test]
    fn encoding_round_trips_and_garbage_is_empty() {
        let v = encode(7, &[1, 2, 3]);
        assert_eq!(v.len(), SLOT_VALUE_LEN);
        assert_eq!(empty_slot().len(), SLOT_VALUE_LEN);
        assert_eq!(decode(&v), (7, vec![1, 2, 3]));
        assert_eq!(decode(&empty_slot()), (0, vec![]));
        assert_eq!(decode(b""), (0, vec![]));
        assert_eq!(decode(&[1, 2, 0]), (0, vec![]));
        assert_eq!(decode(&[9; 18]), (0, vec![]));
        let mut nine = encode(1, &[1; 8]);
        nine[1] = 9;
        assert_eq!(decode(&nine), (0, vec![]));
        assert_eq!(decode(&encode(1, &[1; 8])), (1, vec![1; 8]));
    }

    #[test]
    fn exactly_burst_pass() {
        let mut s = store_with_slots(4);
        let sp = specs(5);
        let t = target(1, 42);
        let passed = (0..20)
            .filter(|_| is_allowed(&check(&mut s, &t, &sp, T0, 8, 0)))
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn idle_occupant_is_taken_over_active_one_is_not() {
        let mut s = store_with_slots(1);
        let sp = specs(3);
        let victim = target(0, 1);
        let flood = target(0, 2);
        // The victim uses 2 of 3.
        assert!(is_allowed(&check(&mut s, &victim, &sp, T0, 8, 0)));
        assert!(is_allowed(&check(&mut s, &victim, &sp, T0, 8, 0)));
        // A newcomer in the same slot cannot reset or drain it: overflow.
        for _ in 0..3 {
            match check(&mut s, &flood, &sp, T0, 8, 0) {
                Checked::Allowed { trace, .. } => assert!(trace.overflow),
                c => panic!("{c:?}"),
            }
        }
        match check(&mut s, &flood, &sp, T0, 8, 0) {
            Checked::Limited { trace, .. } => assert!(trace.overflow),
            c => panic!("{c:?}"),
        }
        // The victim kept its state: exactly one more passes.
        assert!(is_allowed(&check(&mut s, &victim, &sp, T0, 8, 0)));
        assert!(!is_allowed(&check(&mut s, &victim, &sp, T0, 8, 0)));
        // Once the victim's bucket is full again (3 hours later), a newcomer
        // may take the slot.
        let later = T0 + 3 * 3600 * NANOS;
        match check(&mut s, &flood, &sp, later, 8, 0) {
            Checked::Allowed { trace, .. } => {
                assert!(trace.took_over);
                assert!(!trace.overflow);
            }
            c => panic!("{c:?}"),
        }
        // The victim now meets an active owner: it goes to overflow.
        match check(&mut s, &victim, &sp, later, 8, 0) {
            Checked::Allowed { trace, .. } => assert!(trace.overflow),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn flood_of_random_keys_keeps_memory_bounded_and_the_active_client() {
        const SLOTS: u32 = 256;
        let mut s = store_with_slots(SLOTS);
        let bytes_before = s.bytes();
        let sp = specs(5);
        let victim = target(17, 0xdead);
        for _ in 0..3 {
            assert!(is_allowed(&check(&mut s, &victim, &sp, T0, 8, 0)));
        }
        let mut overflowed = 0;
        for k in 0..100_000u64 {
            let fp = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let t = target(u32::try_from(fp % u64::from(SLOTS)).unwrap(), fp);
            match check(&mut s, &t, &sp, T0 + k, 8, 0) {
                Checked::Allowed { trace, .. } | Checked::Limited { trace, .. } => {
                    if trace.overflow {
                        overflowed += 1;
                    }
                }
                c => panic!("{c:?}"),
            }
        }
        assert!(overflowed > 90_000, "{overflowed}");
        // No key was added and no value grew: the bytes held are exactly
        // what the table held before the flood.
        assert_eq!(s.map.len(), SLOTS as usize + 1);
        assert!(s.map.values().all(|(v, _)| v.len() == SLOT_VALUE_LEN));
        assert_eq!(s.bytes(), bytes_before);
        // The victim still has exactly 2 left.
        assert!(is_allowed(&check(&mut s, &victim, &sp, T0 + 200_000, 8, 0)));
        assert!(is_allowed(&check(&mut s, &victim, &sp, T0 + 200_000, 8, 0)));
        assert!(!is_allowed(&check(
            &mut s,
            &victim,
            &sp,
            T0 + 200_000,
            8,
            0
        )));
    }

    #[test]
    fn cas_conflicts_are_retried_and_counted_exactly() {
        // Another worker admits one request for the same key before each of
        // our first two writes: our decision must be made again from its
        // value, so the total admitted never exceeds the burst.
        let t = target(0, 5);
        let sp = specs(3);
        let mut inner = MemoryStore::new();
        ensure_keys(
            &mut inner,
            ["t.slot.0".to_string(), "t.overflow.1".to_string()],
        )
        .unwrap();
        let mut budget = 2;
        let (t2, sp2) = (t.clone(), sp.clone());
        let mut s = InterleavedStore {
            inner,
            interfere: move |inner: &mut MemoryStore| {
                if budget > 0 {
                    budget -= 1;
                    assert!(is_allowed(&check(inner, &t2, &sp2, T0, 0, 0)));
                }
            },
        };
        match check(&mut s, &t, &sp, T0, 8, 0) {
            Checked::Allowed { trace, status } => {
                assert_eq!(trace.conflicts, 2);
                assert_eq!(status[0].remaining, 0);
            }
            c => panic!("{c:?}"),
        }
        assert!(!is_allowed(&check(&mut s, &t, &sp, T0, 8, 0)));
    }

    #[test]
    fn retry_budget_exhaustion_fails() {
        let t = target(0, 5);
        let sp = specs(3);
        let mut inner = MemoryStore::new();
        ensure_keys(&mut inner, ["t.slot.0".to_string()]).unwrap();
        let mut s = InterleavedStore {
            inner,
            // Someone writes the slot before every one of our writes.
            interfere: |inner: &mut MemoryStore| {
                let _ = inner.set("t.slot.0", &empty_slot(), 0);
            },
        };
        match check(&mut s, &t, &sp, T0, 4, 0) {
            Checked::Failed { reason, trace } => {
                assert_eq!(reason, FailReason::RetriesExhausted);
                assert_eq!(trace.conflicts, 5);
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn store_failures_fail() {
        let t = target(0, 5);
        let sp = specs(3);
        let mut s = store_with_slots(1);
        s.fail_get = true;
        assert!(matches!(
            check(&mut s, &t, &sp, T0, 4, 0),
            Checked::Failed {
                reason: FailReason::Store,
                ..
            }
        ));
        s.fail_get = false;
        s.fail_set = true;
        assert!(matches!(
            check(&mut s, &t, &sp, T0, 4, 0),
            Checked::Failed {
                reason: FailReason::Store,
                ..
            }
        ));
        assert!(ensure_keys(&mut s, ["new".to_string()]).is_err());
    }

    #[test]
    fn missing_slot_is_created_then_used() {
        let t = target(3, 5);
        let sp = specs(2);
        let mut s = MemoryStore::new();
        match check(&mut s, &t, &sp, T0, 4, 0) {
            Checked::Allowed { trace, .. } => assert!(trace.created),
            c => panic!("{c:?}"),
        }
        assert!(is_allowed(&check(&mut s, &t, &sp, T0, 4, 0)));
        assert!(!is_allowed(&check(&mut s, &t, &sp, T0, 4, 0)));
    }

    #[test]
    fn an_active_slot_with_another_limit_count_is_never_reset() {
        // Two limit sets that (by a 64-bit collision, or an older version's
        // keys) meet the same owner fingerprint: neither resets the other's
        // active bucket; the newcomer uses its overflow bucket.
        let t = target(0, 5);
        let mut s = store_with_slots(1);
        assert!(is_allowed(&check(&mut s, &t, &specs(1), T0, 4, 0)));
        let two = vec![
            LimitSpec::new("a", 2, 3600, 2),
            LimitSpec::new("b", 2, 3600, 2),
        ];
        for _ in 0..2 {
            match check(&mut s, &t, &two, T0, 4, 0) {
                Checked::Allowed { trace, .. } => assert!(trace.overflow),
                c => panic!("{c:?}"),
            }
        }
        assert!(!is_allowed(&check(&mut s, &t, &two, T0, 4, 0)));
        // The one-limit bucket was not touched: still drained.
        assert!(!is_allowed(&check(&mut s, &t, &specs(1), T0, 4, 0)));
        // Once idle, the slot may be reused by either.
        let later = T0 + 3601 * NANOS;
        match check(&mut s, &t, &two, later, 4, 0) {
            Checked::Allowed { trace, .. } => assert!(!trace.overflow),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn a_light_client_keeps_its_slot_for_min_idle_after_its_bucket_is_full() {
        const MIN_IDLE: u64 = 60 * NANOS;
        let mut s = store_with_slots(1);
        // 1000 per hour: a request's TAT is 3.6 s ahead.
        let sp = vec![LimitSpec::new("h", 1000, 3600, 1000)];
        let light = target(0, 1);
        let flood = |k: u64| target(0, 100 + 2 * k);
        assert!(is_allowed(&check(&mut s, &light, &sp, T0, 8, MIN_IDLE)));
        // Idle for 10 s (its bucket is full again after 3.6 s) while flood
        // keys hit the slot: they go to the overflow bucket.
        for k in 0..50 {
            let at = T0 + 4 * NANOS + k * 100_000_000;
            match check(&mut s, &flood(k), &sp, at, 8, MIN_IDLE) {
                Checked::Allowed { trace, .. } | Checked::Limited { trace, .. } => {
                    assert!(trace.overflow && !trace.took_over)
                }
                c => panic!("{c:?}"),
            }
        }
        // Back after 10 s: its own slot, its own bucket.
        match check(&mut s, &light, &sp, T0 + 10 * NANOS, 8, MIN_IDLE) {
            Checked::Allowed { trace, status } => {
                assert!(!trace.overflow && !trace.took_over);
                assert_eq!(status[0].remaining, 999);
            }
            c => panic!("{c:?}"),
        }
        // Without the minimum age, the first flood key after 3.6 s takes it.
        let mut s = store_with_slots(1);
        assert!(is_allowed(&check(&mut s, &light, &sp, T0, 8, 0)));
        match check(&mut s, &flood(0), &sp, T0 + 4 * NANOS, 8, 0) {
            Checked::Allowed { trace, .. } => assert!(trace.took_over),
            c => panic!("{c:?}"),
        }
        // With it, the slot frees once the bucket has been full for
        // MIN_IDLE: at 3.6 s + 60 s.
        let mut s = store_with_slots(1);
        assert!(is_allowed(&check(&mut s, &light, &sp, T0, 8, MIN_IDLE)));
        match check(&mut s, &flood(0), &sp, T0 + 63 * NANOS, 8, MIN_IDLE) {
            Checked::Allowed { trace, .. } => assert!(trace.overflow),
            c => panic!("{c:?}"),
        }
        match check(&mut s, &flood(1), &sp, T0 + 64 * NANOS, 8, MIN_IDLE) {
            Checked::Allowed { trace, .. } => assert!(trace.took_over),
            c => panic!("{c:?}"),
        }
    }
}
