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
    println!(
        "SKIPPED nunjucks compatibility corpus: {} not found",
        dir.display()
    );
    None
}

/// Corpus cases that depend on Nunjucks' compiler-frame ("lexical slot")
/// quirks: names bound inside loops, duplicate formals and caller defaults
/// keep values across frames there. Not implemented yet; the runner still
/// renders them and fails if one starts passing, so this list stays exact.
const KNOWN_GAPS: [&str; 6] = [
    "compiler-duplicate-formal-binding",
    "compiler-static-lexical-slots",
    "compiler-caller-default-inherited-slots",
    "compiler-nested-loop-slot-lifetime",
    "compiler-safe-string-loop-branch",
    "compiler-multi-target-branch-scopes",
];

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
        let got = engine().render_str(
            template,
            Syntax::NUNJUCKS,
            &Context::new(case["context"].clone()),
        );
        let known_gap = KNOWN_GAPS.contains(&id);
        match got {
            Ok(r) if r.text == expected && known_gap => {
                failures.push(format!("{id}\n  passes now: remove it from KNOWN_GAPS"))
            }
            Ok(r) if r.text == expected => {}
            _ if known_gap => println!("known gap: {id}"),
            Ok(r) => failures.push(format!(
                "{id}\n  expected: {expected:?}\n  got:      {:?}",
                r.text
            )),
            Err(e) => failures.push(format!("{id}\n  expected: {expected:?}\n  error:    {e}")),
        }
    }
    assert!(ran > 0, "no applicable corpus cases found");
    assert!(
        failures.is_empty(),
        "{} of {ran} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn ctx(v: serde_json::Value) -> Context {
    Context::new(v)
}

#[test]
fn scaffolder_syntax_uses_dollar_braces() {
    assert_eq!(
        render("Hi ${{ name }} {{ name }}", json!({"name": "x"})).expect("succeeds"),
        "Hi x {{ name }}"
    );
    assert_eq!(
        render("${{ 1 + 2 }}|${{ 'a' + 1 }}|${{ n / 0 }}", json!({"n": 1})).expect("succeeds"),
        "3|a1|Infinity"
    );
    assert_eq!(
        render("${{ missing }}|${{ missing.deep.path }}", json!({})).expect("succeeds"),
        "|"
    );
}

#[test]
fn cookiecutter_syntax_and_jsonify() {
    let e = engine();
    let r = e
        .render_str(
            "{{ v | jsonify }} {{ True }}",
            Syntax::NUNJUCKS,
            &ctx(json!({"v": [1]})),
        )
        .expect("succeeds");
    assert_eq!(r.text, "[1] true");
    let err = e
        .render_str("${{ v | jsonify }}", Syntax::SCAFFOLDER, &ctx(json!({})))
        .expect_err("is an error");
    assert_eq!(
        err,
        ExprError::UnknownFilter {
            name: "jsonify".into()
        }
    );
}

#[test]
fn render_value_keeps_native_types_and_drops_empty() {
    let e = engine();
    let c = ctx(json!({"obj": {"a": [1, true]}, "n": 3, "s": "", "flag": false}));
    let value = |src: &str| e.render_value(src, &c).expect("succeeds").value;
    assert_eq!(value("${{ obj }}"), Some(json!({"a": [1, true]})));
    assert_eq!(value("${{ n }}"), Some(json!(3)));
    assert_eq!(value("${{ flag }}"), Some(json!(false)));
    assert_eq!(value("${{ s }}"), Some(json!("")));
    assert_eq!(value("${{ missing }}"), None);
    assert_eq!(value("n=${{ n }}"), Some(json!("n=3")));
    assert_eq!(value(" ${{ n }}"), Some(json!(" 3")));
    assert_eq!(value("${{ missing }}${{ s }}"), None);
}

#[test]
fn render_tree_walks_objects_and_arrays() {
    let e = engine();
    let input = json!({"a": "${{ n }}", "b": ["x-${{ n }}", "${{ missing }}"], "c": "${{ missing }}", "d": 5});
    let out = e
        .render_tree(&input, &ctx(json!({"n": 2})))
        .expect("succeeds");
    assert_eq!(out.value, Some(json!({"a": 2, "b": ["x-2"], "d": 5})));
}

#[test]
fn backstage_filters() {
    let c = json!({"url": "github.com?owner=o&repo=r", "ref": "group:team-a", "obj": {"a": {"b": [7]}}});
    assert_eq!(
        render("${{ url | parseRepoUrl | dump }}", c.clone()).expect("succeeds"),
        r#"{"host":"github.com","owner":"o","repo":"r"}"#
    );
    assert_eq!(
        render("${{ url | projectSlug }}", c.clone()).expect("succeeds"),
        "o/r"
    );
    assert_eq!(
        render("${{ ref | parseEntityRef | dump }}", c.clone()).expect("succeeds"),
        r#"{"kind":"group","namespace":"default","name":"team-a"}"#
    );
    assert_eq!(
        render(
            "${{ 'x' | parseEntityRef({defaultKind: 'user', defaultNamespace: 'ns'}) | dump }}",
            c.clone()
        )
        .expect("succeeds"),
        r#"{"kind":"user","namespace":"ns","name":"x"}"#
    );
    assert_eq!(
        render("${{ obj | pick('a.b') | dump }}", c.clone()).expect("succeeds"),
        "[7]"
    );
    assert!(render("${{ 'github.com?owner=o' | parseRepoUrl }}", c).is_err());
}

#[test]
fn unknown_filter_is_named_at_parse_and_render_time() {
    let e = engine();
    let t = e
        .parse("${{ x | upper | bogus }}", Syntax::SCAFFOLDER)
        .expect("succeeds");
    assert_eq!(t.filters().collect::<Vec<_>>(), ["upper", "bogus"]);
    assert_eq!(t.unknown_filter(), Some("bogus"));
    let err = e.render(&t, &ctx(json!({}))).expect_err("is an error");
    assert!(err.to_string().contains("\"bogus\""), "{err}");
    let errors = e
        .check_expressions(&json!({"a": "${{ x | nope }}", "b": ["${{ (", "plain {{ text"]}))
        .expect_err("is an error");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.contains(&ExprError::UnknownFilter {
        name: "nope".into()
    }));
    assert!(errors.iter().any(|e| matches!(e, ExprError::Syntax { .. })));
    assert!(e
        .check_expressions(&json!({"a": "${{ x | upper }}"}))
        .is_ok());
}

#[test]
fn syntax_errors_have_positions() {
    let err = render("line one\n  ${{ a + }}", json!({})).expect_err("is an error");
    match err {
        ExprError::Syntax { line, column, .. } => {
            assert_eq!(line, 2);
            assert!(column >= 5, "column {column}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = render("{% if x %}open", json!({})).expect_err("is an error");
    assert!(matches!(err, ExprError::Syntax { line: 1, .. }), "{err:?}");
    let err = render("{% include 'x' %}", json!({})).expect_err("is an error");
    assert!(err.to_string().contains("include"), "{err}");
    let err = render("${{ x.constructor }}", json!({})).expect_err("is an error");
    assert!(err.to_string().contains("reserved"), "{err}");
}

fn secret_ctx() -> Context {
    ctx(json!({"name": "n"})).with_secrets(json!({"token": "s3cr3t", "n": 42}))
}

#[test]
fn secrets_taint_propagates_to_derived_output() {
    let e = engine();
    let frags = |src: &str| {
        e.render_str(src, Syntax::SCAFFOLDER, &secret_ctx())
            .expect("succeeds")
    };
    let r = frags("a ${{ secrets.token | upper }} b");
    assert_eq!(r.text, "a S3CR3T b");
    assert_eq!(r.secret_fragments, ["S3CR3T"]);
    let r = frags("${{ secrets | dump }}");
    assert_eq!(r.secret_fragments.len(), 1);
    assert!(
        r.secret_fragments[0].contains(r#""token":"s3cr3t""#),
        "{:?}",
        r.secret_fragments
    );
    let r = frags(r#"${{ "x" + secrets.token + "y" }} ${{ name }}"#);
    assert_eq!(r.secret_fragments, ["xs3cr3ty"]);
    let r = frags(
        "{% set t = secrets.token %}{% for c in [t] %}${{ c | replace('3', 'e') }}{% endfor %}",
    );
    assert_eq!(r.secret_fragments, ["secret"]);
    let r = frags("{% macro m(v) %}<${{ v }}>{% endmacro %}${{ m(secrets.n) }}");
    assert!(
        r.secret_fragments.contains(&"<42>".to_string()),
        "{:?}",
        r.secret_fragments
    );
    let r = frags("{% filter upper %}${{ secrets.token }}{% endfilter %}");
    assert!(
        r.secret_fragments.contains(&"S3CR3T".to_string()),
        "{:?}",
        r.secret_fragments
    );
    let r = frags("${{ name }} ${{ 'plain' }}");
    assert!(r.secret_fragments.is_empty());
    let v = e
        .render_value("${{ secrets }}", &secret_ctx())
        .expect("succeeds");
    assert!(
        v.secret_fragments.contains(&"s3cr3t".to_string()),
        "{:?}",
        v.secret_fragments
    );
    let t = e
        .render_tree(&json!({"h": "Bearer ${{ secrets.token }}"}), &secret_ctx())
        .expect("succeeds");
    assert_eq!(t.secret_fragments, ["s3cr3t"]);
}

fn limited() -> Engine {
    Engine::new(Limits {
        max_template_bytes: 4096,
        max_output_bytes: 10_000,
        max_loop_iterations: 1000,
        max_depth: 16,
        max_render_time: Duration::from_secs(2),
    })
}

fn limit_of(src: &str) -> LimitKind {
    match limited().render_str(src, Syntax::NUNJUCKS, &ctx(json!({}))) {
        Err(ExprError::LimitExceeded { limit }) => limit,
        other => panic!("expected a limit error for {src:?}, got {other:?}"),
    }
}

#[test]
fn hostile_templates_hit_limits() {
    assert_eq!(
        limit_of("{% for i in range(100000) %}{% endfor %}"),
        LimitKind::ValueSize
    );
    assert_eq!(
        limit_of("{% for i in range(999) %}{% for j in range(999) %}{% endfor %}{% endfor %}"),
        LimitKind::LoopIterations
    );
    assert_eq!(
        limit_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
        LimitKind::Depth
    );
    assert_eq!(
        limit_of("{{ 'a' | center(1000000000000) }}"),
        LimitKind::ValueSize
    );
    assert_eq!(
        limit_of("{{ 'a\nb' | indent(10000000) }}"),
        LimitKind::ValueSize
    );
    assert_eq!(
        limit_of("{{ range(1000000000000) | length }}"),
        LimitKind::ValueSize
    );
    assert_eq!(
        limit_of("{{ [1] | batch(1000000000, 'x') }}"),
        LimitKind::ValueSize
    );
    assert_eq!(
        limit_of("{% for i in range(900) %}{{ 'xxxxxxxxxxxxxxx' }}{% endfor %}"),
        LimitKind::OutputSize
    );
    assert_eq!(
        limit_of(&format!("{{{{ {}1{} }}}}", "(".repeat(40), ")".repeat(40))),
        LimitKind::Depth
    );
    assert_eq!(
        limit_of(&format!("{{{{ {}1{} }}}}", "[".repeat(40), "]".repeat(40))),
        LimitKind::Depth
    );
    assert_eq!(limit_of(&"{% if true %}".repeat(40)), LimitKind::Depth);
    assert_eq!(
        limit_of(&format!("{{{{ 1{} }}}}", " + 1".repeat(900))),
        LimitKind::Depth
    );
    assert_eq!(limit_of(&"x".repeat(5000)), LimitKind::TemplateSize);
    // "x" * n is numeric multiplication (NaN), not repetition.
    assert_eq!(
        render("${{ 'x' * 1000000000000 }}", json!({})).expect("succeeds"),
        "NaN"
    );
    let set_doubling =
        "{% set s = 'xxxxxxxxxx' %}{% for i in range(30) %}{% set s = s ~ s %}{% endfor %}";
    assert_eq!(limit_of(set_doubling), LimitKind::ValueSize);
}

#[test]
fn render_time_is_bounded() {
    let e = Engine::new(Limits {
        max_loop_iterations: u64::MAX,
        max_render_time: Duration::from_millis(50),
        ..Limits::default()
    });
    let src = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
    let started = std::time::Instant::now();
    let err = e
        .render_str(src, Syntax::NUNJUCKS, &ctx(json!({})))
        .expect_err("is an error");
    assert_eq!(
        err,
        ExprError::LimitExceeded {
            limit: LimitKind::RenderTime
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn default_depth_recursion_does_not_overflow_the_stack() {
    let src = "{% macro f(n) %}{% if n < 1000 %}{% for x in [1] %}{{ f(n + 1) | upper }}{% endfor %}{% endif %}{% endmacro %}{{ f(0) }}";
    let err = engine()
        .render_str(src, Syntax::NUNJUCKS, &ctx(json!({})))
        .expect_err("is an error");
    assert!(
        matches!(
            err,
            ExprError::LimitExceeded {
                limit: LimitKind::Depth
            }
        ),
        "{err:?}"
    );
}

#[test]
fn engine_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Template>();
}

proptest::proptest! {
    #[test]
    fn parser_never_panics(src in "\\PC{0,64}") {
        let _ = engine().parse(&src, Syntax::NUNJUCKS);
        let _ = engine().parse(&src, Syntax::SCAFFOLDER);
    }

    #[test]
    fn rendering_short_templates_never_panics(
        src in proptest::collection::vec(
            proptest::sample::select(vec![
                "{{", "}}", "{%", "%}", "{#", "#}", "-", " ", "x", "1", "'a'", "(", ")", "[", "]",
                "{", "}", "|", "if", "for", "in", "set", "=", "endif", "endfor", "upper", "dump",
                "+", "~", "*", "/", "//", "**", ",", ":", ".", "loop", "is", "not", "r/a/", "macro",
                "endmacro", "range", "caller", "call", "endcall", "raw", "endraw", "length",
            ]),
            0..24,
        )
    ) {
        let src = src.concat();
        let _ = limited().render_str(&src, Syntax::NUNJUCKS, &ctx(json!({"x": [1, "a", {"b": null}]})));
    }
}
