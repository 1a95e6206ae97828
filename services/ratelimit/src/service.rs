//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.

use crate::limits::{redis_key, Limits, ServedLimit, MICROS};
use crate::store::{Check, Store};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use rate_limit::config::Period;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct Service {
    pub limits: Arc<Limits>,
    pub store: Store,
}

fn unit(p: Period) -> Unit {
    match p {
        Period::Second => Unit::Second,
        Period::Minute => Unit::Minute,
        Period::Hour => Unit::Hour,
        Period::Day => Unit::Day,
    }
}

fn duration(us: u64) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(us / MICROS).unwrap_or(i64::MAX),
        nanos: i32::try_from((us % MICROS) * 1000).unwrap_or(0),
    }
}

fn current_limit(l: &ServedLimit) -> RateLimit {
    RateLimit {
        name: l.name.clone(),
        requests_per_unit: u32::try_from(l.rate).unwrap_or(u32::MAX),
        unit: unit(l.per) as i32,
    }
}

/// What one request asks, resolved against the configuration.
struct Plan<'a> {
    /// Per descriptor: the limit it names (None = not served: OK, no limit).
    matched: Vec<Option<&'a ServedLimit>>,
    checks: Vec<Check>,
}

fn resolve<'a>(limits: &'a Limits, req: &RateLimitRequest) -> Plan<'a> {
    let mut matched = Vec::with_capacity(req.descriptors.len());
    let mut checks = Vec::new();
    for d in &req.descriptors {
        let entries: Vec<(&str, &str)> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        let found = limits.find(&req.domain, &entries);
        if let Some(l) = found {
            checks.push(Check {
                key: redis_key(&req.domain, &entries),
                interval_us: l.interval_us,
                burst: l.burst,
            });
        }
        matched.push(found);
    }
    Plan { matched, checks }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        // hits_addend 0 means 1 (the API's default).
        let hits = u64::from(req.hits_addend.max(1));
        let plan = resolve(&self.limits, &req);
        let (passed, outcomes) = if plan.checks.is_empty() {
            (true, Vec::new())
        } else {
            match self.store.decide(hits, &plan.checks).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("gatehouse-ratelimit: {e}");
                    return Err(Status::unavailable(e.to_string()));
                }
            }
        };
        let mut outcomes = outcomes.into_iter();
        let statuses = plan
            .matched
            .iter()
            .map(|m| match m {
                None => DescriptorStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                },
                Some(l) => {
                    let o = outcomes.next().unwrap_or(crate::store::Outcome {
                        over: false,
                        remaining: 0,
                        until_us: 0,
                    });
                    DescriptorStatus {
                        code: if o.over { Code::OverLimit } else { Code::Ok } as i32,
                        current_limit: Some(current_limit(l)),
                        limit_remaining: u32::try_from(o.remaining).unwrap_or(u32::MAX),
                        duration_until_reset: Some(duration(o.until_us)),
                        quota: None,
                    }
                }
            })
            .collect();
        Ok(Response::new(RateLimitResponse {
            overall_code: if passed { Code::Ok } else { Code::OverLimit } as i32,
            statuses,
            ..Default::default()
        }))
    }
}
