//! The wire contract between a global rule and the rate-limit service
//! (Envoy's RLS v3 API, `envoy.service.ratelimit.v3.RateLimitService/
//! ShouldRateLimit`). The filter and `gatehouse-ratelimit` both follow it;
//! an envoyproxy/ratelimit or Limitador configuration can be written
//! against it (see the README).
//!
//! For a request that a global rule `R` applies to, with the limit set of
//! plan `P` (after `default_plan`), the filter sends one `RateLimitRequest`:
//! - `domain`: the rule's `global.domain`; `hits_addend`: 1;
//! - one descriptor per limit of the set, in configuration order, whose
//!   entries are, in this order: [`ENTRY_RULE`] = `R`, [`ENTRY_PLAN`] = `P`
//!   (only when the rule has plans), [`ENTRY_LIMIT`] = the limit's name
//!   (`name`, default `<rate>-per-<per>`), then one entry per descriptor
//!   part in the rule's order, keyed by [`part_key`], valued as in the
//!   local mode (a missing part with `on_missing: shared` has the shared
//!   anonymous value).
//!
//! The service decides all descriptors of one request together (all pass
//! or none is consumed, as the local mode does) and answers `overall_code`
//! and one status per descriptor, in order: `current_limit` (rate, unit,
//! name), `limit_remaining`, and `duration_until_reset`: for an `OK`
//! status the time until the bucket is full again, for an `OVER_LIMIT`
//! status the time until a request would pass again (the `retry-after`).

use crate::config::DescriptorPart;

/// Domain when a rule's `global.domain` is not set.
pub const DEFAULT_DOMAIN: &str = "gatehouse";
/// Default callout timeout (ms).
pub const DEFAULT_TIMEOUT_MS: u32 = 100;
/// Descriptor entry naming the rule.
pub const ENTRY_RULE: &str = "gatehouse_rule";
/// Descriptor entry naming the plan.
pub const ENTRY_PLAN: &str = "plan";
/// Descriptor entry naming the limit within the set.
pub const ENTRY_LIMIT: &str = "limit";

/// The entry key of one descriptor part: `client_id`, `client_address`,
/// `host`, `method`, `path_prefix`, or `header:<name>`.
pub fn part_key(part: &DescriptorPart) -> String {
    match part {
        DescriptorPart::ClientId => "client_id".to_string(),
        DescriptorPart::ClientAddress => "client_address".to_string(),
        DescriptorPart::Host => "host".to_string(),
        DescriptorPart::Method => "method".to_string(),
        DescriptorPart::PathPrefix(_) => "path_prefix".to_string(),
        DescriptorPart::Header(name) => format!("header:{name}"),
    }
}
