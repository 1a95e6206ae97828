//! What the logic needs from the host besides headers: randomness and time.

use std::cell::Cell;

/// A source of random bytes (the adapter backs it with WASI `random_get`).
pub trait RandomSource {
    fn fill(&mut self, buf: &mut [u8]);

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// A random non-zero u64 (span ids and trace ids must not be zero).
    fn next_nonzero_u64(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }
}

/// Wall-clock time.
pub trait Clock {
    /// Nanoseconds since the Unix epoch.
    fn now_unix_nanos(&self) -> u64;

    fn now_unix_millis(&self) -> u64 {
        self.now_unix_nanos() / 1_000_000
    }
}

/// One request's "now": `clock` is read the first time the time is asked
/// for, and that instant is answered from then on. A request whose decision
/// never needs the time never reads the clock (a host call in the adapter),
/// and one that asks several times sees one instant.
pub struct OnceClock<'a> {
    clock: &'a dyn Clock,
    nanos: Cell<Option<u64>>,
}

impl<'a> OnceClock<'a> {
    pub fn new(clock: &'a dyn Clock) -> OnceClock<'a> {
        OnceClock {
            clock,
            nanos: Cell::new(None),
        }
    }

    /// Whether the clock was read.
    pub fn was_read(&self) -> bool {
        self.nanos.get().is_some()
    }
}

impl Clock for OnceClock<'_> {
    fn now_unix_nanos(&self) -> u64 {
        match self.nanos.get() {
            Some(n) => n,
            None => {
                let n = self.clock.now_unix_nanos();
                self.nanos.set(Some(n));
                n
            }
        }
    }
}

/// A deterministic generator for tests and benchmarks (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl RandomSource for SplitMix64 {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(bytes.iter()) {
                *d = *s;
            }
        }
    }
}

/// A clock fixed at one instant (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_unix_nanos(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Counts its reads; each read is one nanosecond later.
    struct Counting(Cell<u64>);

    impl Clock for Counting {
        fn now_unix_nanos(&self) -> u64 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
    }

    #[test]
    fn once_clock_reads_at_most_once() {
        let c = Counting(Cell::new(0));
        let once = OnceClock::new(&c);
        assert!(!once.was_read());
        assert_eq!(c.0.get(), 0);
        assert_eq!(once.now_unix_nanos(), 1);
        assert_eq!(once.now_unix_millis(), 0);
        assert_eq!(once.now_unix_nanos(), 1);
        assert!(once.was_read());
        assert_eq!(c.0.get(), 1);
    }
}
