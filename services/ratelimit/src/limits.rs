//! The limits this service serves: every rule of the rate-limit filter's
//! JSON configuration that has `global` set, indexed by the RLS descriptor
//! the filter sends for it (the wire contract of `rate_limit::rls`).

use gatehouse_core::{parse_config, ConfigError};
use rate_limit::config::{Config, Limit, Period};
use rate_limit::rls::{part_key, ENTRY_LIMIT, ENTRY_PLAN, ENTRY_RULE};
use std::collections::HashMap;

/// Microseconds per second.
pub const MICROS: u64 = 1_000_000;

/// One limit as the Redis script needs it, and as the answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedLimit {
    /// The limit's name (`name`, default `<rate>-per-<per>`).
    pub name: String,
    /// Requests per `per` (the answer's `requests_per_unit`).
    pub rate: u64,
    pub per: Period,
    /// Emission interval T in microseconds (at least 1).
    pub interval_us: u64,
    /// B.
    pub burst: u64,
}

impl ServedLimit {
    fn new(l: &Limit) -> ServedLimit {
        let rate = u64::try_from(l.rate).unwrap_or(1).max(1);
        let burst = u64::try_from(l.burst()).unwrap_or(1).max(1);
        let period = l.per.seconds().saturating_mul(MICROS);
        ServedLimit {
            name: l.display_name(),
            rate,
            per: l.per,
            interval_us: (period / rate).max(1),
            burst,
        }
    }
}

/// One global rule: its plans' limit sets and the entry keys of its parts.
#[derive(Debug, Clone)]
struct ServedRule {
    has_plans: bool,
    /// (plan or "" without plans, limit name) -> limit.
    limits: HashMap<(String, String), ServedLimit>,
    part_keys: Vec<String>,
}

/// Everything the service answers from: (domain, rule name) -> rule.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    rules: HashMap<(String, String), ServedRule>,
}

impl Limits {
    /// Parses and checks the filter's JSON (the filter's own parser and
    /// checks) and keeps the rules with `global` set. A configuration
    /// without any global rule is refused (field `rules`).
    pub fn parse(json: &[u8]) -> Result<Limits, ConfigError> {
        let cfg: Config = parse_config(json)?;
        Limits::from_config(&cfg)
    }

    pub fn from_config(cfg: &Config) -> Result<Limits, ConfigError> {
        let mut rules = HashMap::new();
        for (i, rule) in cfg.rules.iter().enumerate() {
            let Some(global) = &rule.global else { continue };
            let mut limits = HashMap::new();
            let has_plans = !rule.plans.is_empty();
            if has_plans {
                for (plan, set) in &rule.plans {
                    for l in set {
                        limits.insert((plan.clone(), l.display_name()), ServedLimit::new(l));
                    }
                }
            } else {
                for l in &rule.limits {
                    limits.insert((String::new(), l.display_name()), ServedLimit::new(l));
                }
            }
            let part_keys = rule.descriptor.iter().map(part_key).collect();
            rules.insert(
                (global.domain.clone(), rule.name(i)),
                ServedRule {
                    has_plans,
                    limits,
                    part_keys,
                },
            );
        }
        if rules.is_empty() {
            return Err(ConfigError::new(
                "rules",
                "no rule has `global` set: the service serves only global rules",
            ));
        }
        Ok(Limits { rules })
    }

    /// Number of global rules served.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The limit a descriptor names, or `None` when the domain, rule, plan,
    /// limit or the part keys are not those of a served rule (answered
    /// `OK` without a limit, as envoyproxy/ratelimit does).
    pub fn find(&self, domain: &str, entries: &[(&str, &str)]) -> Option<&ServedLimit> {
        let mut it = entries.iter();
        let (k, rule_name) = it.next()?;
        if *k != ENTRY_RULE {
            return None;
        }
        let rule = self
            .rules
            .get(&(domain.to_string(), (*rule_name).to_string()))?;
        let plan = if rule.has_plans {
            let (k, p) = it.next()?;
            if *k != ENTRY_PLAN {
                return None;
            }
            *p
        } else {
            ""
        };
        let (k, limit) = it.next()?;
        if *k != ENTRY_LIMIT {
            return None;
        }
        let rest: Vec<&str> = it.map(|(k, _)| *k).collect();
        if rest.len() != rule.part_keys.len()
            || rest.iter().zip(&rule.part_keys).any(|(a, b)| a != b)
        {
            return None;
        }
        rule.limits.get(&(plan.to_string(), (*limit).to_string()))
    }
}

/// The Redis key of one descriptor: `gatehouse:rl:` + hex SHA-1 of the
/// domain and every entry key and value, each prefixed by its length (4
/// bytes, big-endian), so no two descriptors share a key.
pub fn redis_key(domain: &str, entries: &[(&str, &str)]) -> String {
    let mut h = sha1_smol::Sha1::new();
    let mut field = |b: &[u8]| {
        let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
        h.update(&n.to_be_bytes());
        h.update(b);
    };
    field(domain.as_bytes());
    for (k, v) in entries {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    format!("gatehouse:rl:{}", h.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"{"rules": [
        {"name": "local", "descriptor": ["client_id"], "limits": [{"rate": 5, "per": "second"}]},
        {"name": "api", "descriptor": ["client_id", {"header": "x-tenant"}],
         "global": {"cluster": "rls", "domain": "edge"},
         "default_plan": "free",
         "plans": {"free": [{"name": "free-per-minute", "rate": 3, "per": "minute"}],
                   "gold": [{"rate": 10, "per": "second", "burst": 20}, {"rate": 1000, "per": "hour"}]}},
        {"name": "flat", "global": {"cluster": "rls"}, "limits": [{"rate": 6, "per": "minute", "burst": 2}]}
    ]}"#;

    #[test]
    fn serves_global_rules_only() {
        let l = Limits::parse(CFG.as_bytes()).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l
            .find(
                "gatehouse",
                &[("gatehouse_rule", "local"), ("limit", "5-per-second")]
            )
            .is_none());
        let f = l
            .find(
                "gatehouse",
                &[("gatehouse_rule", "flat"), ("limit", "6-per-minute")],
            )
            .unwrap();
        assert_eq!((f.interval_us, f.burst, f.rate), (10_000_000, 2, 6));
    }

    #[test]
    fn matches_plans_limits_and_part_keys() {
        let l = Limits::parse(CFG.as_bytes()).unwrap();
        fn d<'a>(plan: &'a str, limit: &'a str) -> Vec<(&'a str, &'a str)> {
            vec![
                ("gatehouse_rule", "api"),
                ("plan", plan),
                ("limit", limit),
                ("client_id", "c1"),
                ("header:x-tenant", "t"),
            ]
        }
        let g = l.find("edge", &d("gold", "10-per-second")).unwrap();
        assert_eq!((g.interval_us, g.burst), (100_000, 20));
        assert_eq!(
            l.find("edge", &d("free", "free-per-minute")).unwrap().burst,
            3
        );
        // Wrong domain, plan, limit, or part keys: not served.
        assert!(l.find("gatehouse", &d("gold", "10-per-second")).is_none());
        assert!(l.find("edge", &d("silver", "10-per-second")).is_none());
        assert!(l.find("edge", &d("gold", "free-per-minute")).is_none());
        let mut short = d("gold", "10-per-second");
        short.pop();
        assert!(l.find("edge", &short).is_none());
        let mut wrong = d("gold", "10-per-second");
        wrong[4].0 = "header:x-other";
        assert!(l.find("edge", &wrong).is_none());
        assert!(l.find("edge", &[]).is_none());
    }

    #[test]
    fn no_global_rule_is_refused() {
        let e = Limits::parse(br#"{"rules": [{"limits": [{"rate": 5, "per": "second"}]}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "rules");
        let e = Limits::parse(
            br#"{"rules": [{"global": {"cluster": "x"}, "limits": [{"rate": 0, "per": "second"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "rules[0].limits[0].rate");
    }

    #[test]
    fn keys_are_length_prefixed() {
        let a = redis_key("d", &[("ab", "c")]);
        let b = redis_key("d", &[("a", "bc")]);
        assert_ne!(a, b);
        assert_ne!(redis_key("d", &[("k", "v")]), redis_key("e", &[("k", "v")]));
        assert!(a.starts_with("gatehouse:rl:"));
        assert_eq!(a.len(), "gatehouse:rl:".len() + 40);
        assert_eq!(a, redis_key("d", &[("ab", "c")]));
    }
}
