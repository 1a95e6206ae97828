//! Every filter of the inventory documents, in `filters/<name>/README.md`,
//! every configuration field, every counter and every rejection reason its
//! code defines (read from
//! the crate's sources, so a new one without a line of documentation fails
//! `make test`), and ships an `example.json`.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] functions may fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use gatehouse_core::doc_check::{
    config_fields, counters, rejection_reasons, reply_codes, undocumented,
};
use gatehouse_core::FILTERS;
use std::path::{Path, PathBuf};

fn filter_dir(filter: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(filter)
}

/// `(file name, text)` of every `src/*.rs` of the filter's crate.
fn sources(filter: &str) -> Vec<(String, String)> {
    let src = filter_dir(filter).join("src");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                (name, std::fs::read_to_string(&p).unwrap())
            })
        })
        .collect();
    out.sort();
    out
}

fn read(filter: &str, file: &str) -> String {
    let p = filter_dir(filter).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn each_readme_documents_every_configuration_field() {
    for filter in FILTERS {
        let fields: Vec<String> = sources(filter)
            .iter()
            .filter(|(name, _)| name != "filter.rs")
            .flat_map(|(_, text)| config_fields(text))
            .collect();
        assert!(
            !fields.is_empty(),
            "{filter}: no configuration fields found"
        );
        let missing = undocumented(&read(filter, "README.md"), &fields);
        assert!(
            missing.is_empty(),
            "filters/{filter}/README.md does not document the fields {missing:?}"
        );
    }
}

#[test]
fn each_readme_documents_every_counter() {
    for filter in FILTERS {
        let names = counters(&read(filter, "src/filter.rs"));
        assert!(!names.is_empty(), "{filter}: no counters in src/filter.rs");
        let missing = undocumented(&read(filter, "README.md"), &names);
        assert!(
            missing.is_empty(),
            "filters/{filter}/README.md does not document the counters {missing:?}"
        );
    }
}

/// Functions a filter calls with a reason code as their first literal.
const REPLY_CALLS: [&str; 4] = ["error_body(", "json_reply(", "limited_reply(", "reject("];

/// A filter that answers with an error body declares its reasons in a
/// `REASONS` const, which holds every code its sources pass to a reply, and
/// its README documents each (the `error` of the JSON body).
#[test]
fn each_readme_documents_every_rejection_reason() {
    for filter in FILTERS {
        let srcs = sources(filter);
        let reasons: Vec<String> = srcs
            .iter()
            .flat_map(|(_, text)| rejection_reasons(text))
            .collect();
        let codes: Vec<String> = srcs
            .iter()
            .flat_map(|(_, text)| reply_codes(text, &REPLY_CALLS))
            .collect();
        let replies = srcs.iter().any(|(_, t)| t.contains("error_body("));
        assert!(
            !replies || !reasons.is_empty(),
            "{filter} sends error bodies but declares no `REASONS`"
        );
        let undeclared: Vec<&String> = codes.iter().filter(|c| !reasons.contains(c)).collect();
        assert!(
            undeclared.is_empty(),
            "{filter}: reply codes missing from `REASONS`: {undeclared:?}"
        );
        let missing = undocumented(&read(filter, "README.md"), &reasons);
        assert!(
            missing.is_empty(),
            "filters/{filter}/README.md does not document the rejection reasons {missing:?}"
        );
    }
}

#[test]
fn each_filter_ships_an_example_config() {
    for filter in FILTERS {
        let text = read(filter, "example.json");
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "filters/{filter}/example.json is not JSON"
        );
    }
}
