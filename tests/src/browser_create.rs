//! The scaffolder end to end in headless Chromium: sign in, choose the demo
//! template, meet the server's inline error on a bad value, fix it, walk the
//! wizard to the review, create, watch the log arrive live over the event
//! stream, follow the output link, and find the new entity in the catalog.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;
use stagedoor_tests::peers::Chromedriver;
use stagedoor_tests::{poll_until, HttpFixture, Route};

use crate::auth::{portal_configured, BY_EMAIL};
use crate::browser::{browser, css, wait_for_path, Shots, WAIT};

const TOKEN: &str = "browser-test-static-token-0123456789";

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// The text of an element, or "" when it is absent.
async fn text_of(c: &fantoccini::Client, selector: &str) -> String {
    match c.find(Locator::Css(selector)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test]
async fn a_developer_creates_a_service_from_the_demo_template() {
    // A task that holds the only worker until the test lets it go, so that
    // the new task is still waiting when its page opens.
    let fx = HttpFixture::start().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    fx.set(
        "/slow.txt",
        Route::Gated(gate.clone(), Arc::new(b"slow".to_vec())),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/demo/catalog");
    copy_tree(&demo.join("templates"), &dir.path().join("templates"));
    std::fs::copy(demo.join("org.yaml"), dir.path().join("demo-org.yaml")).expect("org");
    let blocker = dir.path().join("blocker.yaml");
    std::fs::write(
        &blocker,
        format!(
            "apiVersion: scaffolder.backstage.io/v1beta3\nkind: Template\nmetadata: {{name: blocker}}\n\
             spec:\n  owner: group:default/team-a\n  type: service\n  steps:\n\
             \x20   - {{id: wait, action: 'fetch:plain:file', input: {{url: '{}', targetPath: slow.txt}}}}\n",
            fx.url("/slow.txt")
        ),
    )
    .expect("blocker");
    let backend = format!(
        "  reading:\n    allow:\n      - host: '{}'\n  auth:\n    externalAccess:\n      - type: static\n        options: {{token: {TOKEN}, subject: tests}}\n",
        fx.host()
    );
    let tail = format!(
        "scaffolder:\n  concurrentTasksLimit: 1\n  publishFile:\n    allowedRoots: ['{}']\n",
        dir.path().join("published").display()
    );
    let Some(p) = portal_configured(
        BY_EMAIL,
        json!({}),
        &backend,
        &[
            dir.path().join("demo-org.yaml"),
            dir.path().join("templates/service/template.yaml"),
            blocker,
        ],
        &tail,
    )
    .await
    else {
        return;
    };
    let Some(driver) = Chromedriver::start().await else {
        return;
    };
    p.idp
        .control("accounts", json!({"login": "alice", "groups": []}))
        .await;
    let c = browser(&driver, 1280, 900).await;
    let mut shots = Shots::new();

    // Signed out, Create sends the browser to sign in, and back.
    c.goto(&p.app.url("/create")).await.expect("open create");
    wait_for_path(&c, "/login").await;
    css(&c, "#sign-in-oidc")
        .await
        .click()
        .await
        .expect("sign in");
    css(&c, "input[name=login]")
        .await
        .send_keys("alice")
        .await
        .expect("type login");
    if let Ok(password) = c.find(Locator::Css("input[name=password]")).await {
        password.send_keys("any").await.expect("type password");
    }
    css(&c, "button[type=submit]")
        .await
        .click()
        .await
        .expect("submit login");
    wait_for_path(&c, "/create").await;
    css(&c, "#templates").await;
    shots.take(&c, "create-gallery").await;

    // The gallery's search, then the demo template's card.
    css(&c, "#template-search")
        .await
        .send_keys("kestrel")
        .await
        .expect("search");
    css(&c, "#apply-template-filters")
        .await
        .click()
        .await
        .expect("apply");
    wait_for_path(&c, "/create?q=kestrel").await;
    css(
        &c,
        "li[data-ref='template:default/kestrel-service'] a.choose",
    )
    .await
    .click()
    .await
    .expect("choose");
    wait_for_path(&c, "/create/templates/default/kestrel-service").await;

    // The wizard: one page at a time.
    css(&c, "#wizard-next:not([hidden])").await;
    let second_page = css(&c, "#page-1").await;
    assert!(
        !second_page.is_displayed().await.expect("displayed"),
        "with script, the second page waits its turn"
    );
    let name = css(&c, "[data-field='p.name'] input").await;
    name.send_keys("Bad Name").await.expect("type name");
    // The owner picker suggests groups from the catalog as one types.
    let owner = css(&c, "[data-field='p.owner'] input").await;
    owner.send_keys("platform").await.expect("type owner");
    poll_until("suggestions for \"platform\"", WAIT, || async {
        let values = c
            .execute(
                "return Array.from(document.querySelectorAll('[data-field=\"p.owner\"] datalist option')).map((o) => o.value);",
                vec![],
            )
            .await
            .ok()?;
        let values: Vec<String> = serde_json::from_value(values).ok()?;
        (values == ["group:default/platform-team"]).then_some(())
    })
    .await;
    owner.clear().await.expect("clear owner");
    owner
        .send_keys("group:default/platform-team")
        .await
        .expect("type owner");
    css(&c, "[data-field='p.description'] textarea")
        .await
        .send_keys("Sorts <peas> by size")
        .await
        .expect("type description");
    css(&c, "#wizard-next").await.click().await.expect("next");
    let error = css(&c, "[data-field='p.name'] .field-error:not([hidden])").await;
    let message = error.text().await.expect("error text");
    assert!(message.contains("does not match"), "{message}");
    assert_eq!(
        name.attr("aria-invalid").await.expect("attr").as_deref(),
        Some("true")
    );
    let described = name
        .attr("aria-describedby")
        .await
        .expect("attr")
        .unwrap_or_default();
    let error_id = error.attr("id").await.expect("id").expect("an id");
    assert!(described.contains(&error_id), "{described}");
    shots.take(&c, "create-inline-error").await;

    // Fixed, the next page opens.
    name.clear().await.expect("clear");
    name.send_keys("pea-sorter").await.expect("type name");
    css(&c, "#wizard-next").await.click().await.expect("next");
    css(&c, "#page-1:not([hidden])").await;
    assert!(
        c.find(Locator::Css(
            "[data-field='p.name'] .field-error:not([hidden])"
        ))
        .await
        .is_err(),
        "the error is gone"
    );
    css(&c, "[data-field='p.features'] input[value='metrics']")
        .await
        .click()
        .await
        .expect("feature");
    css(&c, "[data-field='p.language'] select")
        .await
        .select_by_value("rust")
        .await
        .expect("language");
    shots.take(&c, "create-runtime").await;
    css(&c, "#wizard-next").await.click().await.expect("next");
    css(&c, "#wizard-review:not([hidden])").await;
    let review = text_of(&c, "#review-list").await;
    for expected in [
        "pea-sorter",
        "group:default/platform-team",
        "Sorts <peas> by size",
        "rust",
        "8080",
        "metrics",
    ] {
        assert!(
            review.contains(expected),
            "review lacks {expected}: {review}"
        );
    }
    shots.take(&c, "create-review").await;

    // Hold the worker, then create: the task waits while its page opens.
    let (status, blocked) = p
        .app
        .client
        .post(p.app.url("/api/scaffolder/v2/tasks"))
        .bearer_auth(TOKEN)
        .json(&json!({"templateRef": "template:default/blocker", "values": {}}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("blocker task");
    assert_eq!(status, 201, "{:?}", blocked.text().await);
    poll_until("the blocker holds the worker", WAIT, || async {
        (fx.hits("/slow.txt") > 0).then_some(())
    })
    .await;
    css(&c, "#create-task").await.click().await.expect("create");
    let url = wait_for_path(&c, "/create/tasks/").await;
    css(&c, "#task[data-stream]").await;
    assert_eq!(text_of(&c, "#task-status").await, "open");
    // Lines the event stream adds are noted where a reload keeps them.
    c.execute(
        r#"sessionStorage.setItem('liveLines', '[]');
           new MutationObserver((records) => {
             const seen = JSON.parse(sessionStorage.getItem('liveLines') || '[]');
             records.forEach((r) => r.addedNodes.forEach((n) => {
               if (n.nodeName === 'LI') seen.push(n.closest('[data-step]') ? n.closest('[data-step]').dataset.step + ': ' + n.textContent : n.textContent);
             }));
             sessionStorage.setItem('liveLines', JSON.stringify(seen));
           }).observe(document.getElementById('steps'), {childList: true, subtree: true});"#,
        vec![],
    )
    .await
    .expect("observe the log");
    shots.take(&c, "create-task-waiting").await;
    // One request waits at the gate (or is about to): a stored permit reaches it either way.
    gate.notify_one();

    // The task runs; its lines arrive live, and at its end the page reloads with the output.
    let link = css(&c, "#output-links a").await;
    assert_eq!(text_of(&c, "#task-status").await, "completed");
    let live: Vec<String> = serde_json::from_value(
        c.execute(
            "return JSON.parse(sessionStorage.getItem('liveLines') || '[]');",
            vec![],
        )
        .await
        .expect("read the live lines"),
    )
    .expect("a list of lines");
    assert!(
        live.iter()
            .any(|l| l.starts_with("fetch: ") && l.contains("Beginning step Render the skeleton")),
        "the log arrived over the event stream: {live:?}"
    );
    assert!(live.iter().any(|l| l.starts_with("register: ")), "{live:?}");
    assert_eq!(
        c.current_url().await.expect("url").path(),
        url.path(),
        "still the task page"
    );
    let steps = text_of(&c, "#steps").await;
    assert!(steps.contains("Register in the catalog"), "{steps}");
    let output = text_of(&c, "#task-output").await;
    assert!(output.contains("pea-sorter was written to"), "{output}");
    shots.take(&c, "create-task-done").await;

    // The output link opens the new entity; the catalog lists it.
    assert_eq!(link.text().await.expect("text"), "Open in catalog");
    link.click().await.expect("open the entity");
    wait_for_path(&c, "/catalog/default/component/pea-sorter").await;
    let title = css(&c, "#entity-title").await.text().await.expect("title");
    assert!(title.contains("pea-sorter"), "{title}");
    shots.take(&c, "create-entity").await;
    c.goto(&p.app.url("/catalog?kind=component&q=pea-sorter"))
        .await
        .expect("catalog");
    let results = css(&c, "#catalog-results")
        .await
        .text()
        .await
        .expect("results");
    assert!(results.contains("pea-sorter"), "{results}");

    // My tasks has it, newest first.
    c.goto(&p.app.url("/create/tasks")).await.expect("my tasks");
    let first = css(&c, "#tasks tbody tr").await;
    let row = first.text().await.expect("row");
    assert!(
        row.contains("Kestrel service") && row.contains("completed"),
        "{row}"
    );
    shots.take(&c, "create-my-tasks").await;

    // The form at phone width.
    c.set_window_size(390, 844).await.expect("resize");
    c.goto(&p.app.url("/create/templates/default/kestrel-service"))
        .await
        .expect("form");
    css(&c, "#wizard-next:not([hidden])").await;
    shots.take(&c, "create-form-390px").await;

    c.close().await.expect("close browser");
    tokio::time::timeout(Duration::from_secs(30), p.app.stop())
        .await
        .expect("the server stops");
}
