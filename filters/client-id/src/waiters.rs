//! Requests paused until a JWKS fetch of their issuer is over (pure; the
//! adapter pauses and resumes them). One fetch per issuer is in flight at a
//! time; the requests that need its keys wait here and are decided again
//! when it answers, when it is found lost, or at the latest after
//! [`Waiters::max_wait_ms`].

/// One paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter<T> {
    /// The HTTP context to resume.
    pub context_id: u32,
    /// The issuer whose keys it waits for.
    pub issuer: usize,
    /// When it started waiting (ms since the epoch).
    pub since_ms: u64,
    /// What is needed to decide it again (headers, peer certificate).
    pub request: T,
}

/// The paused requests of one worker.
#[derive(Debug, Clone)]
pub struct Waiters<T> {
    list: Vec<Waiter<T>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters { list: Vec::new() }
    }
}

impl<T> Waiters<T> {
    pub fn add(&mut self, waiter: Waiter<T>) {
        self.list.push(waiter);
    }

    /// The request went away (its context is gone): forget it.
    pub fn remove_context(&mut self, context_id: u32) {
        self.list.retain(|w| w.context_id != context_id);
    }

    /// The waiters of `issuer` (its fetch is over), in arrival order.
    pub fn take_issuer(&mut self, issuer: usize) -> Vec<Waiter<T>> {
        self.take(|w| w.issuer == issuer)
    }

    /// The waiters that have waited `max_wait_ms` or longer at `now_ms`.
    pub fn take_expired(&mut self, now_ms: u64, max_wait_ms: u64) -> Vec<Waiter<T>> {
        self.take(|w| now_ms >= w.since_ms.saturating_add(max_wait_ms))
    }

    /// The issuers someone waits for, each once, in order.
    pub fn issuers(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self.list.iter().map(|w| w.issuer).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Longest a request may wait: two fetch timeouts of the slowest issuer
    /// plus 1.5 s; then it is decided with the keys there are (503 when
    /// there are none).
    pub fn max_wait_ms(fetch_timeouts_ms: impl IntoIterator<Item = u64>) -> u64 {
        fetch_timeouts_ms
            .into_iter()
            .max()
            .unwrap_or(0)
            .saturating_mul(2)
            .saturating_add(1500)
    }

    fn take(&mut self, ready: impl Fn(&Waiter<T>) -> bool) -> Vec<Waiter<T>> {
        let (out, keep): (Vec<Waiter<T>>, Vec<Waiter<T>>) = self.list.drain(..).partition(ready);
        self.list = keep;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn w(context_id: u32, issuer: usize, since_ms: u64) -> Waiter<&'static str> {
        Waiter {
            context_id,
            issuer,
            since_ms,
            request: "r",
        }
    }

    #[test]
    fn a_fetch_wakes_exactly_its_issuers_waiters_in_order() {
        let mut ws = Waiters::default();
        ws.add(w(1, 0, 10));
        ws.add(w(2, 1, 11));
        ws.add(w(3, 0, 12));
        assert_eq!(ws.issuers(), vec![0, 1]);
        let woken: Vec<u32> = ws.take_issuer(0).iter().map(|x| x.context_id).collect();
        assert_eq!(woken, vec![1, 3]);
        assert_eq!(ws.len(), 1);
        assert!(ws.take_issuer(0).is_empty());
        assert_eq!(ws.issuers(), vec![1]);
    }

    #[test]
    fn a_request_that_went_away_is_never_woken() {
        let mut ws = Waiters::default();
        ws.add(w(1, 0, 10));
        ws.add(w(2, 0, 10));
        ws.remove_context(1);
        let woken: Vec<u32> = ws.take_issuer(0).iter().map(|x| x.context_id).collect();
        assert_eq!(woken, vec![2]);
        assert!(ws.is_empty());
    }

    #[test]
    fn nobody_waits_longer_than_the_bound() {
        let max = Waiters::<()>::max_wait_ms([1000, 5000]);
        assert_eq!(max, 11_500);
        assert_eq!(Waiters::<()>::max_wait_ms([]), 1500);
        assert_eq!(Waiters::<()>::max_wait_ms([u64::MAX]), u64::MAX);
        let mut ws = Waiters::default();
        ws.add(w(1, 0, 1_000));
        ws.add(w(2, 1, 5_000));
        assert!(ws.take_expired(1_000 + max - 1, max).is_empty());
        let late: Vec<u32> = ws
            .take_expired(1_000 + max, max)
            .iter()
            .map(|x| x.context_id)
            .collect();
        assert_eq!(late, vec![1]);
        assert_eq!(ws.issuers(), vec![1]);
        // A clock that went backwards wakes nobody early.
        assert!(ws.take_expired(0, max).is_empty());
    }
}
