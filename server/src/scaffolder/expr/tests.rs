//! Behaviour tests: the Nunjucks compatibility corpus, scaffolder extras,
//! taint tracking, limits, and robustness properties.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;

fn engine() -> Engine {
    Engine::new(Limits::default())
}

fn render(src: &str, ctx: serde_json::Value) -> Result<String, ExprError> {
    engine()
        .render_str(src, Syntax::SCAFFOLDER, &Context::new(ctx))
        .map(|r| r.text)
}

fn compat_dir() -> Option<PathBuf> {
    let dir = match std::env::var("STAGEDOOR_COMPAT_DIR") {
        Ok(d) => PathBuf::from(d).join("nunjucks/tests/compat"),
        Err(_) => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/compat/nunjucks/tests/compat"
        )),
    };
    if dir.join("cases.json").is_file() {
        return Some(dir);
    }
    if std::env::var("STAGEDOOR_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("compatibility corpus not found at {}", dir.display());
    }
    println!("SKIPPED nunjucks compatibility corpus: {} not found", dir.display());
    None
}

#[test]
fn nunjucks_compatibility_corpus() {
    let Some(dir) = compat_dir() else { return };
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(name)).expect("corpus file is readable");
        serde_json::from_str(&text).expect("corpus file is JSON")
    };
    let cases = read("cases.json");
    let manifest = read("manifest.json");
    let mut applicable = std::collections::HashSet::new();
    for entry in manifest["entries"].as_array().into_iter().flatten() {
        if entry["status"] != "not applicable" {
            for id in entry["cases"].as_array().into_iter().flatten() {
                applicable.insert(id.as_str().unwrap_or_default().to_string());
            }
        }
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases["cases"].as_array().into_iter().flatten() {
        let id = case["id"].as_str().unwrap_or_default();
        if !applicable.contains(id) {
            continue;
        }
        ran += 1;
        let template = case["template"].as_str().unwrap_or_default();
        let expected = case["expected"].as_str().unwrap_or_default();
        let got = engine().render_str(template, Syntax::NUNJUCKS, &Context::new(case["context"].clone()));
        match got {
            Ok(r) if r.text == expected => {}
            Ok(r) => failures.push(format!("{id}\n  expected: {expected:?}\n  got:      {:?}", r.text)),
            Err(e) => failures.push(format!("{id}\n  expected: {expected:?}\n  error:    {e}")),
        }
    }
    assert!(ran > 0, "no applicable corpus cases found");
    assert!(failures.is_empty(), "{} of {ran} corpus cases failed:\n{}", failures.len(), failures.join("\n"));
}
