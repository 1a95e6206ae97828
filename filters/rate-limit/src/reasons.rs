//! Every rejection reason of the filter: the `error` of the JSON body it
//! answers with.

pub const REASONS: [&str; 3] = [
    // A rule with `on_missing: reject` found no value for its descriptor.
    "missing_rate_limit_key",
    // Over the limit.
    "rate_limited",
    // The state could not be read or written and `on_store_failure` is deny,
    // or a global rule's service failed and its `on_error` is deny.
    "rate_limit_unavailable",
];
