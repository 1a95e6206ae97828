//! The one list of gatehouse's filters, in chain order.
//!
//! Everything that enumerates the filters derives from [`FILTERS`]: the
//! Makefile's build list (it reads the names between the markers below),
//! `gatehouse.wasm`'s root ids and the fused chain's stage order, the
//! `make run` chain, the tests' delivery matrix and the manifest checks. The
//! order is the order of the filters in a gateway: request-id first (every
//! answer carries the id), host-router last (it picks the upstream).
//! Adding a filter: a crate under `filters/<name>` with `src/filter.rs`,
//! its `README.md` and `example.json`, and one line here.

/// The filters, in chain order.
pub const FILTERS: [&str; 5] = [
    // inventory:begin (one quoted name per line; the Makefile reads these)
    "request-id",
    "https-redirect",
    "client-id",
    "rate-limit",
    "host-router",
    // inventory:end
];

/// Position of `name` in the chain, if it is a gatehouse filter.
pub fn position(name: &str) -> Option<usize> {
    FILTERS.iter().position(|f| *f == name)
}

/// The filters as the text "a, b, c" (for error messages).
pub fn names() -> String {
    FILTERS.join(", ")
}

/// `a == b` for `&str` in a const context (for compile-time checks that a
/// table follows [`FILTERS`]).
pub const fn same_name(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a, b) {
            ([], []) => return true,
            ([x, rest_a @ ..], [y, rest_b @ ..]) if *x == *y => {
                a = rest_a;
                b = rest_b;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_unique_and_positions_follow_the_order() {
        for (i, f) in FILTERS.iter().enumerate() {
            assert_eq!(position(f), Some(i));
        }
        assert_eq!(position("chain"), None);
        assert!(same_name("rate-limit", "rate-limit"));
        assert!(!same_name("rate-limit", "rate-limits"));
        assert_eq!(
            names(),
            "request-id, https-redirect, client-id, rate-limit, host-router"
        );
    }
}
