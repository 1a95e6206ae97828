//! GCRA (generic cell rate algorithm), the token bucket written as one
//! timestamp per limit: the *theoretical arrival time* (TAT).
//!
//! A limit of `rate` per `period` with `burst` B has emission interval
//! `T = period / rate`. A request at `now` passes when
//! `max(TAT, now) - now <= (B - 1) * T`; passing moves TAT to
//! `max(TAT, now) + T`. Nothing refills on a timer: the state is read and
//! advanced with the clock at request time only, so every worker computing
//! from the same stored TAT reaches the same answer.
//!
//! Several limits are decided together: the request passes only when every
//! limit allows it, and only then are all TATs advanced. A rejected request
//! consumes nothing from any limit.

/// Nanoseconds per second.
pub const NANOS: u64 = 1_000_000_000;

/// One compiled limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    /// Shown in `RateLimit-Policy`.
    pub name: String,
    /// Emission interval T in nanoseconds (at least 1).
    pub interval: u64,
    /// B.
    pub burst: u64,
}

impl LimitSpec {
    /// `rate` per `period_secs`, burst `burst` (all at least 1).
    pub fn new(name: &str, rate: u64, period_secs: u64, burst: u64) -> LimitSpec {
        let period = u128::from(period_secs) * u128::from(NANOS);
        let interval = (period / u128::from(rate.max(1))).max(1);
        LimitSpec {
            name: name.to_string(),
            interval: u64::try_from(interval).unwrap_or(u64::MAX),
            burst: burst.max(1),
        }
    }

    /// `(B - 1) * T`: how far TAT may run ahead of now and still pass.
    fn tolerance(&self) -> u128 {
        u128::from(self.burst - 1) * u128::from(self.interval)
    }

    /// `B * T`: the time a completely drained bucket needs to be full again.
    pub fn capacity(&self) -> u128 {
        u128::from(self.burst) * u128::from(self.interval)
    }
}

/// What a limit looks like to the client after this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    /// The burst B (most requests that may pass at once).
    pub limit: u64,
    /// Requests that would still pass right now.
    pub remaining: u64,
    /// Whole seconds (rounded up) until the bucket is full again.
    pub reset: u64,
    /// Whole seconds (rounded up) for the bucket to fill from empty: `B * T`.
    pub window: u64,
}

/// The decision for one request over a set of limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every limit allows: store `new_tats`.
    Allowed {
        new_tats: Vec<u64>,
        status: Vec<LimitStatus>,
    },
    /// At least one limit refuses; nothing is to be stored.
    Limited {
        /// Whole seconds (rounded up, at least 1) until this request would pass.
        retry_after: u64,
        status: Vec<LimitStatus>,
    },
}

/// Rounds nanoseconds up to whole seconds.
pub fn ceil_secs(nanos: u128) -> u64 {
    let s = nanos.div_ceil(u128::from(NANOS));
    u64::try_from(s).unwrap_or(u64::MAX)
}

/// Decides a request at `now` (ns) given the stored TATs (missing = fresh).
pub fn decide(specs: &[LimitSpec], tats: &[u64], now: u64) -> Verdict {
    let mut limited_wait: Option<u128> = None;
    let mut starts = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let tat = tats.get(i).copied().unwrap_or(0).max(now);
        let ahead = u128::from(tat - now);
        if ahead > spec.tolerance() {
            let wait = ahead - spec.tolerance();
            limited_wait = Some(limited_wait.map_or(wait, |w| w.max(wait)));
        }
        starts.push(tat);
    }
    let status_at = |spec: &LimitSpec, ahead: u128| LimitStatus {
        limit: spec.burst,
        remaining: u64::try_from(spec.capacity().saturating_sub(ahead) / u128::from(spec.interval))
            .unwrap_or(u64::MAX),
        reset: ceil_secs(ahead),
        window: ceil_secs(spec.capacity()),
    };
    match limited_wait {
        Some(wait) => Verdict::Limited {
            retry_after: ceil_secs(wait).max(1),
            status: specs
                .iter()
                .zip(&starts)
                .map(|(spec, tat)| status_at(spec, u128::from(tat - now)))
                .collect(),
        },
        None => {
            let mut new_tats = Vec::with_capacity(specs.len());
            let mut status = Vec::with_capacity(specs.len());
            for (spec, tat) in specs.iter().zip(&starts) {
                let new = tat.saturating_add(spec.interval);
                new_tats.push(new);
                status.push(status_at(spec, u128::from(new - now)));
            }
            Verdict::Allowed { new_tats, status }
        }
    }
}

/// The status the client should see first: the fewest remaining requests,
/// then the longest reset.
pub fn most_restrictive(status: &[LimitStatus]) -> Option<LimitStatus> {
    status
        .iter()
        .copied()
        .min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset.cmp(&a.reset)))
}

/// True when every bucket has been full again (TAT not after now) for at
/// least `min_idle` ns: its state is the same as a fresh bucket's, and has
/// been for that long.
pub fn is_idle(tats: &[u64], now: u64, min_idle: u64) -> bool {
    tats.iter().all(|t| t.saturating_add(min_idle) <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: u64 = 1_700_000_000 * NANOS;

    fn run(specs: &[LimitSpec], tats: &mut Vec<u64>, now: u64) -> Verdict {
        let v = decide(specs, tats, now);
        if let Verdict::Allowed { new_tats, .. } = &v {
            *tats = new_tats.clone();
        }
        v
    }

    fn allowed(v: &Verdict) -> bool {
        matches!(v, Verdict::Allowed { .. })
    }

    #[test]
    fn burst_passes_then_exactly_rate_refills() {
        // 60 per minute, burst 5: T = 1 s.
        let specs = [LimitSpec::new("m", 60, 60, 5)];
        let mut tats = vec![];
        for i in 0..5 {
            let v = run(&specs, &mut tats, T0);
            match v {
                Verdict::Allowed { status, .. } => {
                    assert_eq!(status[0].remaining, 4 - i);
                    assert_eq!(status[0].limit, 5);
                    assert_eq!(status[0].reset, i + 1);
                }
                _ => panic!("request {i} refused"),
            }
        }
        match run(&specs, &mut tats, T0) {
            Verdict::Limited {
                retry_after,
                status,
            } => {
                assert_eq!(retry_after, 1);
                assert_eq!(status[0].remaining, 0);
                assert_eq!(status[0].reset, 5);
            }
            v => panic!("{v:?}"),
        }
        // Just before one interval: still refused; at one interval: one passes.
        assert!(!allowed(&run(&specs, &mut tats, T0 + NANOS - 1)));
        assert!(allowed(&run(&specs, &mut tats, T0 + NANOS)));
        assert!(!allowed(&run(&specs, &mut tats, T0 + NANOS)));
        // After the reset time the whole burst is back.
        let later = T0 + 10 * NANOS;
        for _ in 0..5 {
            assert!(allowed(&run(&specs, &mut tats, later)));
        }
        assert!(!allowed(&run(&specs, &mut tats, later)));
    }

    #[test]
    fn long_run_rate_is_exact() {
        // 10 per second, burst 1: over 100 s with a request every 10 ms,
        // exactly 1000 (+ the first) pass.
        let specs = [LimitSpec::new("s", 10, 1, 1)];
        let mut tats = vec![];
        let mut passed = 0;
        for i in 0..=10_000u64 {
            if allowed(&run(&specs, &mut tats, T0 + i * 10_000_000)) {
                passed += 1;
            }
        }
        assert_eq!(passed, 1001);
    }

    #[test]
    fn retry_after_is_when_the_next_request_passes() {
        // 1 per 10 seconds via 6 per minute, burst 2.
        let specs = [LimitSpec::new("x", 6, 60, 2)];
        let mut tats = vec![];
        assert!(allowed(&run(&specs, &mut tats, T0)));
        assert!(allowed(&run(&specs, &mut tats, T0)));
        let t = T0 + 3 * NANOS + 500_000_000;
        let retry = match run(&specs, &mut tats, t) {
            Verdict::Limited { retry_after, .. } => retry_after,
            v => panic!("{v:?}"),
        };
        assert_eq!(retry, 7); // 6.5 s rounded up
        assert!(!allowed(&run(&specs, &mut tats, t + (retry - 1) * NANOS)));
        assert!(allowed(&run(&specs, &mut tats, t + retry * NANOS)));
    }

    #[test]
    fn all_limits_must_allow_and_refusal_consumes_nothing() {
        // Per second: 2 (burst 2); per hour: 3 (burst 3).
        let specs = [
            LimitSpec::new("s", 2, 1, 2),
            LimitSpec::new("h", 3, 3600, 3),
        ];
        let mut tats = vec![];
        assert!(allowed(&run(&specs, &mut tats, T0)));
        assert!(allowed(&run(&specs, &mut tats, T0)));
        let before = tats.clone();
        // The per-second limit refuses: the hourly budget must not move.
        match run(&specs, &mut tats, T0) {
            Verdict::Limited {
                retry_after,
                status,
            } => {
                assert_eq!(retry_after, 1);
                assert_eq!(status[0].remaining, 0);
                assert_eq!(status[1].remaining, 1);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(tats, before);
        // One second later the third passes, then the hour limit refuses.
        assert!(allowed(&run(&specs, &mut tats, T0 + NANOS)));
        match run(&specs, &mut tats, T0 + 2 * NANOS) {
            Verdict::Limited {
                retry_after,
                status,
            } => {
                assert_eq!(status[0].remaining, 2);
                assert_eq!(status[1].remaining, 0);
                assert!(retry_after > 1000, "{retry_after}");
                assert_eq!(most_restrictive(&status).unwrap().limit, 3);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn idle_means_full() {
        let specs = [LimitSpec::new("m", 1, 1, 1)];
        let mut tats = vec![];
        assert!(allowed(&run(&specs, &mut tats, T0)));
        assert!(!is_idle(&tats, T0, 0));
        assert!(!is_idle(&tats, T0 + NANOS - 1, 0));
        assert!(is_idle(&tats, T0 + NANOS, 0));
        assert!(is_idle(&[], T0, 0));
        // Full again, but not yet for `min_idle`.
        assert!(!is_idle(&tats, T0 + NANOS, 60 * NANOS));
        assert!(!is_idle(&tats, T0 + 61 * NANOS - 1, 60 * NANOS));
        assert!(is_idle(&tats, T0 + 61 * NANOS, 60 * NANOS));
        assert!(!is_idle(&[u64::MAX], u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let specs = [LimitSpec::new("big", 1, 86_400, 1_000_000_000)];
        let v = decide(&specs, &[u64::MAX - 5], u64::MAX - 10);
        assert!(allowed(&v));
        let v = decide(&specs, &[], 0);
        assert!(allowed(&v));
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(0), 0);
        let tiny = LimitSpec::new("t", 1_000_000_000, 1, 1);
        assert_eq!(tiny.interval, 1);
    }
}
