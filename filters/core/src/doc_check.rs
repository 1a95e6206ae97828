//! Checks that a filter's README documents what its code defines: every
//! configuration field and every counter. Each filter calls
//! [`undocumented`] from a unit test with its README and its sources, so a
//! field or counter added without a line of documentation fails `make test`.
//!
//! The sources are read as text (`include_str!`), so the check also covers
//! the proxy-wasm adapter, which is compiled only for Envoy.

/// Names of the fields of every `#[derive(.. Deserialize ..)]` struct in a
/// Rust source, as serde sees them (`#[serde(rename = "..")]` applied;
/// `skip` and `flatten` fields and `transparent` structs left out).
pub fn config_fields(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = false;
    let mut in_struct = false;
    let mut rename: Option<String> = None;
    let mut skip = false;
    for line in src.lines().map(str::trim) {
        if line.starts_with("///") || line.starts_with("//") || line.is_empty() {
            continue;
        }
        if !in_struct {
            if line.starts_with("#[derive(") && line.contains("Deserialize") {
                pending = true;
            } else if pending && line.starts_with("#[serde(") && line.contains("transparent") {
                pending = false;
            } else if pending && (line.starts_with("pub struct ") || line.starts_with("struct ")) {
                pending = false;
                in_struct = line.ends_with('{');
            } else if pending && !line.starts_with("#[") {
                pending = false;
            }
            continue;
        }
        if line.starts_with('}') {
            in_struct = false;
            continue;
        }
        if let Some(attr) = line.strip_prefix("#[serde(") {
            if let Some(name) = quoted_after(attr, "rename = ") {
                rename = Some(name);
            }
            if attr.contains("skip") || attr.contains("flatten") {
                skip = true;
            }
            continue;
        }
        if line.starts_with("#[") {
            continue;
        }
        let field = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some((name, _)) = field.split_once(':') {
            let name = name.trim();
            let is_ident = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_ident && !skip {
                out.push(rename.take().unwrap_or_else(|| name.to_string()));
            }
        }
        rename = None;
        skip = false;
    }
    out
}

/// The short names of the counters an adapter defines: the string literals
/// on lines that define counters (`Counter::define(..)` or a `c("..")`
/// shorthand), without the `gatehouse.<filter>.` prefix or a `{prefix}.`
/// placeholder.
pub fn counters(adapter_src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in adapter_src.lines() {
        if !(line.contains("Counter::define") || line.contains(" c(\"")) {
            continue;
        }
        for lit in string_literals(line) {
            let name = match lit.rfind("}.") {
                Some(i) => lit.get(i + 2..).unwrap_or(""),
                None => lit,
            };
            let name = match name.strip_prefix("gatehouse.") {
                Some(rest) => rest.split_once('.').map_or(rest, |(_, n)| n),
                None => name,
            };
            if !name.is_empty() && !name.contains('{') && !name.ends_with('.') {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The rejection reasons a filter declares: the string literals of its
/// `REASONS` const (`pub const REASONS: [&str; N] = ["a", "b"];`, over any
/// number of lines). Empty when the sources have none.
pub fn rejection_reasons(src: &str) -> Vec<String> {
    let Some(start) = src.find("const REASONS") else {
        return Vec::new();
    };
    let rest = src.get(start..).unwrap_or("");
    let body = rest
        .find("= [")
        .and_then(|i| rest.get(i + 3..))
        .and_then(|b| b.get(..b.find("];")?))
        .unwrap_or("");
    body.lines()
        .flat_map(string_literals)
        .map(str::to_string)
        .collect()
}

/// The reason codes the sources pass to a local reply: in each call of a
/// function in `calls` (e.g. `error_body(`), the first string literal of its
/// arguments when it is a snake_case word (`"rate_limited"`). A reason that
/// comes from a variable is not seen; a `REASONS` const lists those.
pub fn reply_codes(src: &str, calls: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for call in calls {
        for (i, _) in src.match_indices(call) {
            let args = src.get(i + call.len()..).unwrap_or("");
            // The arguments up to the call's closing parenthesis.
            let mut depth = 1usize;
            let end = args
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(args.len(), |(j, _)| j);
            let first = args
                .get(..end)
                .and_then(|a| string_literals(a).into_iter().next());
            if let Some(code) = first {
                let word = !code.is_empty()
                    && code.contains('_')
                    && code
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if word && !out.iter().any(|o| o == code) {
                    out.push(code.to_string());
                }
            }
        }
    }
    out
}

/// The names in `names` that `readme` does not mention as code: a name is
/// documented when it stands as a whole word inside a backtick span
/// (`` `name` ``, `` `gatehouse.x.name` ``, `` `{"name": 1}` ``).
pub fn undocumented(readme: &str, names: &[String]) -> Vec<String> {
    let spans: Vec<&str> = readme.split('`').skip(1).step_by(2).collect();
    names
        .iter()
        .filter(|n| !spans.iter().any(|span| has_word(span, n)))
        .cloned()
        .collect()
}

/// `word` occurs in `text` bounded by characters that cannot be part of a
/// field or counter name (dots separate words).
fn has_word(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text.get(..i).and_then(|t| t.chars().next_back());
        let after = text.get(i + word.len()..).and_then(|t| t.chars().next());
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

fn quoted_after(s: &str, key: &str) -> Option<String> {
    let rest = s.get(s.find(key)? + key.len()..)?.strip_prefix('"')?;
    Some(rest.get(..rest.find('"')?)?.to_string())
}

fn string_literals(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('"') {
        let Some(after) = rest.get(start + 1..) else {
            break;
        };
        let Some(end) = after.find('"') else {
            break;
        };
        out.extend(after.get(..end));
        rest = after.get(end + 1..).unwrap_or("");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SRC: &str = r#"
/// Doc.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A field.
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip)]
    pub compiled: u8,
    pub(crate) max_age_s: u64,
}

#[derive(Debug)]
pub struct NotConfig {
    pub ignored: u8,
}

#[derive(Deserialize)]
#[serde(transparent)]
pub struct Wrapper {
    pub inner: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Allow,
}
"#;

    #[test]
    fn fields_of_deserialized_structs_only() {
        assert_eq!(config_fields(SRC), vec!["rules", "type", "max_age_s"]);
    }

    #[test]
    fn counters_from_the_adapter() {
        let src = r#"
        let c = |n: &str| Counter::define(&format!("gatehouse.request_id.{n}"));
            ids_generated: c("ids_generated"),
            redirected: Counter::define("gatehouse.https_redirect.redirected"),
            overflow: Counter::define(&format!("{base}.overflow")),
            identified: c("identified.api_key"),
        "#;
        assert_eq!(
            counters(src),
            vec![
                "ids_generated",
                "redirected",
                "overflow",
                "identified.api_key"
            ]
        );
    }

    #[test]
    fn reasons_and_reply_codes() {
        let src = "pub const REASONS: [&str; 2] = [\n    \"bad_path\",\n    \"rate_limited\",\n];\n\
                   fn f() { error_body(\"bad_path\", \"no\", id); json_reply(404, \"no_route\", \"no route\", id);\n\
                   limited_reply(1,\n Vec::new(),\n \"rate_limited\", \"x\"); error_body(code, \"a message\", id); }";
        assert_eq!(rejection_reasons(src), vec!["bad_path", "rate_limited"]);
        assert_eq!(
            reply_codes(src, &["error_body(", "json_reply(", "limited_reply("]),
            vec!["bad_path", "no_route", "rate_limited"]
        );
        assert!(rejection_reasons("fn main() {}").is_empty());
    }

    #[test]
    fn documented_means_a_whole_word_in_a_code_span() {
        let readme =
            "| `rules` | ... | `gatehouse.x.overflow` | `{\"weight\": 1}` | type, `types` |";
        let names = vec![
            "rules".to_string(),
            "overflow".into(),
            "weight".into(),
            "type".into(),
        ];
        assert_eq!(undocumented(readme, &names), vec!["type".to_string()]);
    }
}
