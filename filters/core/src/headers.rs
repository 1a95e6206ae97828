//! A request's or response's headers as plain data, and the edits a filter
//! wants made to them.
//!
//! The adapter reads all headers with one host call into a [`HeaderSnapshot`]
//! (values as bytes: a header value may hold any octet and must never be
//! assumed to be UTF-8), the pure logic decides, and the adapter applies the
//! resulting [`HeaderOp`]s.

/// All headers of one message, in arrival order, names lower-case (Envoy
/// lower-cases names), duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSnapshot {
    entries: Vec<(String, Vec<u8>)>,
}

impl HeaderSnapshot {
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> Self {
        HeaderSnapshot { entries }
    }

    /// Builds a snapshot from string pairs (tests, examples).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        HeaderSnapshot {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    /// The first value of `name` (lower-case), as bytes.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` if it is valid UTF-8; `None` when absent.
    /// `Some(Err(()))` when present but not UTF-8.
    pub fn first_str(&self, name: &str) -> Option<Result<&str, ()>> {
        self.first(name)
            .map(|v| std::str::from_utf8(v).map_err(|_| ()))
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as they are after `ops`, borrowed (no copy of a name or
    /// value): what a whole-map write sends.
    pub fn pairs_after<'a>(&'a self, ops: &'a [HeaderOp]) -> Vec<(&'a str, &'a [u8])> {
        let mut out: Vec<(&str, &[u8])> = self.iter().collect();
        for op in ops {
            match op {
                HeaderOp::Set(name, value) => {
                    out.retain(|(k, _)| k != name);
                    out.push((name, value.as_bytes()));
                }
                HeaderOp::Add(name, value) => out.push((name, value.as_bytes())),
                HeaderOp::Remove(name) => out.retain(|(k, _)| k != name),
            }
        }
        out
    }

    /// Applies edits (used by tests and by pure code that chains stages).
    pub fn apply(&mut self, ops: &[HeaderOp]) {
        for op in ops {
            match op {
                HeaderOp::Set(name, value) => {
                    self.entries.retain(|(k, _)| k != name);
                    self.entries
                        .push((name.clone(), value.clone().into_bytes()));
                }
                HeaderOp::Add(name, value) => {
                    self.entries
                        .push((name.clone(), value.clone().into_bytes()));
                }
                HeaderOp::Remove(name) => self.entries.retain(|(k, _)| k != name),
            }
        }
    }
}

/// One edit to a header map. Names are lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one.
    Set(String, String),
    /// Append one more value.
    Add(String, String),
    /// Remove every value of the header.
    Remove(String),
}

impl HeaderOp {
    pub fn set(name: &str, value: impl Into<String>) -> Self {
        HeaderOp::Set(name.to_string(), value.into())
    }
    pub fn add(name: &str, value: impl Into<String>) -> Self {
        HeaderOp::Add(name.to_string(), value.into())
    }
    pub fn remove(name: &str) -> Self {
        HeaderOp::Remove(name.to_string())
    }
    pub fn name(&self) -> &str {
        match self {
            HeaderOp::Set(n, _) | HeaderOp::Add(n, _) | HeaderOp::Remove(n) => n,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn pairs_after_matches_apply() {
        let h = HeaderSnapshot::from_pairs([("a", "1"), ("b", "2"), ("b", "3"), ("c", "4")]);
        let ops = [
            HeaderOp::set("b", "9"),
            HeaderOp::add("a", "5"),
            HeaderOp::remove("c"),
        ];
        let mut applied = h.clone();
        applied.apply(&ops);
        let expected: Vec<(&str, &[u8])> = applied.iter().collect();
        assert_eq!(h.pairs_after(&ops), expected);
    }
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn first_value_wins_and_bytes_are_kept() {
        let h = HeaderSnapshot::new(vec![
            ("a".into(), b"1".to_vec()),
            ("b".into(), vec![0xff, 0xfe]),
            ("a".into(), b"2".to_vec()),
        ]);
        assert_eq!(h.first("a"), Some(&b"1"[..]));
        assert_eq!(h.first_str("a"), Some(Ok("1")));
        assert_eq!(h.first_str("b"), Some(Err(())));
        assert_eq!(h.first_str("c"), None);
        assert_eq!(h.all("a").count(), 2);
    }

    #[test]
    fn apply_ops() {
        let mut h = HeaderSnapshot::from_pairs([("a", "1"), ("a", "2"), ("b", "x")]);
        h.apply(&[
            HeaderOp::set("a", "3"),
            HeaderOp::remove("b"),
            HeaderOp::add("c", "y"),
        ]);
        assert_eq!(h.all("a").collect::<Vec<_>>(), vec![&b"3"[..]]);
        assert!(!h.contains("b"));
        assert_eq!(h.first("c"), Some(&b"y"[..]));
    }
}
