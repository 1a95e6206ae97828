//! The counters in Redis: one Lua script per request decides every
//! descriptor of it together with GCRA, exactly as the filter's local mode
//! (`rate_limit::gcra`) does, in microseconds from Redis' own clock.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::time::Duration;

/// Longest wait for one Redis call (connecting included).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// GCRA over several limits, all or nothing.
///
/// KEYS: one per limit. ARGV[1]: hits (at least 1); then per key its
/// emission interval T and burst B (microseconds, count).
/// A request of n hits passes a limit when `max(TAT, now) + n*T - now <=
/// B*T`; it passes when every limit lets it, and only then is every TAT
/// advanced (`SET ... PX` to the time the bucket is full again). Returns
/// `{passed, code_1, remaining_1, until_1, ...}`: code 1 = OK, 2 = over;
/// `until` is, for an OK limit, the microseconds until its bucket is full,
/// for an over limit, the microseconds until the request would pass.
/// The numbers stay below 2^53 (the engine caps a bucket's refill time at
/// 366 days), so Lua's doubles are exact.
pub const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local tats = {}
local passed = 1
for i = 1, #KEYS do
  local iv = tonumber(ARGV[2 * i])
  local cap = iv * tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  tats[i] = tat
  if tat + n * iv - now > cap then passed = 0 end
end
local out = {passed}
for i = 1, #KEYS do
  local iv = tonumber(ARGV[2 * i])
  local cap = iv * tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  local over = tat + n * iv - now - cap
  if passed == 1 then
    local new = tat + n * iv
    local ms = math.ceil((new - now) / 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', string.format('%.0f', ms))
    table.insert(out, 1)
    table.insert(out, math.floor((cap - (new - now)) / iv))
    table.insert(out, new - now)
  elseif over > 0 then
    table.insert(out, 2)
    table.insert(out, math.floor((cap - (tat - now)) / iv))
    table.insert(out, over)
  else
    table.insert(out, 1)
    table.insert(out, math.floor((cap - (tat - now)) / iv))
    table.insert(out, tat - now)
  end
end
return out
"#;

/// One limit's part of a request.
#[derive(Debug, Clone)]
pub struct Check {
    pub key: String,
    pub interval_us: u64,
    pub burst: u64,
}

/// One limit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub over: bool,
    pub remaining: u64,
    /// Microseconds: until full (OK) or until a request would pass (over).
    pub until_us: u64,
}

#[derive(Debug)]
pub enum StoreError {
    Redis(redis::RedisError),
    Timeout,
    BadReply(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Redis(e) => write!(f, "redis: {e}"),
            StoreError::Timeout => write!(f, "redis: no answer within {REDIS_TIMEOUT:?}"),
            StoreError::BadReply(r) => write!(f, "redis: unexpected script reply: {r}"),
        }
    }
}

/// The Redis connection (reconnects by itself) and the script.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    script: Script,
}

impl Store {
    /// Connects lazily: the service starts (and answers UNAVAILABLE) while
    /// Redis is down, and reconnects after Redis restarts.
    pub fn new(url: &str) -> Result<Store, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Store {
            conn,
            script: Script::new(GCRA_LUA),
        })
    }

    /// Decides one request (`hits` at least 1) over `checks` in one script
    /// call, capped at [`REDIS_TIMEOUT`]. Returns (passed, per-limit answers).
    pub async fn decide(
        &self,
        hits: u64,
        checks: &[Check],
    ) -> Result<(bool, Vec<Outcome>), StoreError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(hits);
        for c in checks {
            inv.key(&c.key).arg(c.interval_us).arg(c.burst);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> =
            match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async(&mut conn)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(StoreError::Redis(e)),
                Err(_) => return Err(StoreError::Timeout),
            };
        parse_reply(&reply, checks.len())
    }
}

fn parse_reply(reply: &[i64], n: usize) -> Result<(bool, Vec<Outcome>), StoreError> {
    let bad = || StoreError::BadReply(format!("{reply:?}"));
    let (first, rest) = reply.split_first().ok_or_else(bad)?;
    if rest.len() != 3 * n {
        return Err(bad());
    }
    let out = rest
        .chunks_exact(3)
        .map(|c| match c {
            [code, remaining, until] => Ok(Outcome {
                over: *code == 2,
                remaining: u64::try_from(*remaining).unwrap_or(0),
                until_us: u64::try_from(*until).unwrap_or(0),
            }),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((*first == 1, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked() {
        let (ok, out) = parse_reply(&[1, 1, 4, 1_000_000], 1).unwrap();
        assert!(ok);
        assert_eq!(
            out,
            vec![Outcome {
                over: false,
                remaining: 4,
                until_us: 1_000_000
            }]
        );
        assert!(parse_reply(&[1, 1, 4], 1).is_err());
        assert!(parse_reply(&[], 0).is_err());
        let (ok, out) = parse_reply(&[0, 2, 0, 5, 1, 3, 7], 2).unwrap();
        assert!(!ok);
        assert!(out[0].over && !out[1].over);
    }
}
