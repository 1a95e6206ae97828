//! The hand-written RLS codec (`rate_limit::rls`) against Envoy's own
//! generated protos (`envoy-types`, prost): what we encode they decode to
//! the same message, what they encode we decode.
#![cfg(not(target_arch = "wasm32"))]

use envoy_types::pb::envoy::config::core::v3::HeaderValue as PbHeader;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, RateLimitDescriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{
    rate_limit_response::Code as PbCode,
    rate_limit_response::{rate_limit::Unit, DescriptorStatus, RateLimit},
    RateLimitRequest, RateLimitResponse,
};
use envoy_types::pb::google::protobuf::Duration;
use prost::Message;
use rate_limit::rls::{self, Code, RlsRequest};

#[test]
fn our_request_is_envoys_request() {
    let req = RlsRequest {
        domain: "gatehouse".to_string(),
        descriptors: vec![
            vec![
                ("gatehouse_rule".to_string(), "api".to_string()),
                ("limit".to_string(), "10-per-minute".to_string()),
                ("client_id".to_string(), "b64:/w==".to_string()),
            ],
            vec![("gatehouse_rule".to_string(), "api".to_string())],
        ],
        hits_addend: 1,
    };
    let ours = rls::encode_request(&req);
    let theirs = RateLimitRequest::decode(ours.as_slice()).unwrap();
    let expected = RateLimitRequest {
        domain: req.domain.clone(),
        descriptors: req
            .descriptors
            .iter()
            .map(|d| RateLimitDescriptor {
                entries: d
                    .iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 1,
    };
    assert_eq!(theirs, expected);
    // Byte for byte the same as prost's encoding.
    assert_eq!(ours, expected.encode_to_vec());
    assert_eq!(rls::decode_request(&expected.encode_to_vec()).unwrap(), req);
}

#[test]
fn envoys_response_is_our_response() {
    let pb = RateLimitResponse {
        overall_code: PbCode::OverLimit as i32,
        statuses: vec![
            DescriptorStatus {
                code: PbCode::Ok as i32,
                current_limit: Some(RateLimit {
                    name: "daily".to_string(),
                    requests_per_unit: 100,
                    unit: Unit::Day as i32,
                }),
                limit_remaining: 42,
                duration_until_reset: Some(Duration {
                    seconds: 3,
                    nanos: 500_000_000,
                }),
                ..Default::default()
            },
            DescriptorStatus {
                code: PbCode::OverLimit as i32,
                current_limit: None,
                limit_remaining: 0,
                duration_until_reset: Some(Duration {
                    seconds: 9,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ],
        response_headers_to_add: vec![PbHeader {
            key: "x-a".to_string(),
            value: "1".to_string(),
            ..Default::default()
        }],
        request_headers_to_add: vec![PbHeader {
            key: "x-b".to_string(),
            raw_value: vec![0xff, 0x01],
            ..Default::default()
        }],
        raw_body: b"ignored".to_vec(),
        ..Default::default()
    };
    let ours = rls::decode_response(&pb.encode_to_vec()).unwrap();
    assert_eq!(ours.overall_code, Code::OverLimit);
    assert_eq!(ours.statuses.len(), 2);
    let s0 = &ours.statuses[0];
    assert_eq!(s0.code, Code::Ok);
    let l = s0.current_limit.as_ref().unwrap();
    assert_eq!(
        (l.name.as_str(), l.requests_per_unit, l.unit),
        ("daily", 100, 4)
    );
    assert_eq!(s0.limit_remaining, 42);
    assert_eq!(s0.duration_until_reset, Some(3_500_000_000));
    assert_eq!(ours.statuses[1].code, Code::OverLimit);
    assert_eq!(ours.statuses[1].duration_until_reset, Some(9_000_000_000));
    assert_eq!(ours.response_headers_to_add[0].value, b"1");
    assert_eq!(ours.request_headers_to_add[0].value, vec![0xff, 0x01]);

    // And our encoder (used in tests) is what prost reads back.
    let back = RateLimitResponse::decode(rls::encode_response(&ours).as_slice()).unwrap();
    assert_eq!(back.overall_code, pb.overall_code);
    assert_eq!(back.statuses, pb.statuses);
    assert_eq!(back.response_headers_to_add, pb.response_headers_to_add);
    assert_eq!(back.request_headers_to_add, pb.request_headers_to_add);
}
