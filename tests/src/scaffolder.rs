//! The scaffolder through its API: the demo template end to end, parameter
//! checks, cancel and retry, secrets kept out of every event, workspace
//! escapes, and two servers sharing one database.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stagedoor_tests::{poll_until, spawn, HttpFixture, Route, Spawn, TestApp, ALL_KINDS_RULE};

/// A server with the refresh loop on, so that configured templates are ingested.
async fn start(config: &str) -> TestApp {
    spawn(Spawn {
        config: config.to_string(),
        refresh_loop: true,
        ..Default::default()
    })
    .await
}

/// Copies the demo's org and service template into `dir` and returns the config.
fn demo_config(dir: &Path, extra: &str) -> String {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/demo/catalog");
    copy_tree(&demo.join("templates"), &dir.join("templates"));
    std::fs::copy(demo.join("org.yaml"), dir.join("org.yaml")).expect("copy org");
    format!(
        "catalog:\n  rules:\n    - allow: {ALL_KINDS_RULE}\n  locations:\n    - type: file\n      target: {}\n    - type: file\n      target: {}\n\
         scaffolder:\n  publishFile:\n    allowedRoots: ['{}']\n{extra}",
        dir.join("org.yaml").display(),
        dir.join("templates/service/template.yaml").display(),
        dir.join("published").display(),
    )
}

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

/// Writes a template (and its files) into `dir/<name>` and returns the config for it.
fn template_config(
    dir: &Path,
    name: &str,
    steps: Value,
    files: &[(&str, &str)],
    extra: &str,
) -> String {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).expect("mkdir");
    let template = json!({
        "apiVersion": "scaffolder.backstage.io/v1beta3",
        "kind": "Template",
        "metadata": {"name": name},
        "spec": {
            "type": "service",
            "parameters": [{"properties": {"name": {"type": "string"}}}],
            "secrets": {"schema": {"type": "object", "properties": {"token": {"type": "string"}}}},
            "steps": steps,
            "output": {"text": [{"title": "done", "content": "${{ parameters.name }}"}]}
        }
    });
    std::fs::write(
        root.join("template.yaml"),
        serde_json::to_string(&template).expect("json"),
    )
    .expect("write template");
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
    format!(
        "catalog:\n  rules:\n    - allow: {ALL_KINDS_RULE}\n  locations:\n    - type: file\n      target: {}\n\
         scaffolder:\n  publishFile:\n    allowedRoots: ['{}']\n{extra}",
        root.join("template.yaml").display(),
        dir.join("published").display(),
    )
}

async fn create(
    app: &TestApp,
    template: &str,
    values: Value,
    secrets: Option<Value>,
) -> (u16, Value) {
    let mut body = json!({"templateRef": template, "values": values});
    if let Some(s) = secrets {
        body["secrets"] = s;
    }
    app.post_json("/api/scaffolder/v2/tasks", &body).await
}

/// Follows the long-poll events endpoint until the task ends; returns every event.
async fn events_until_end(app: &TestApp, id: &str) -> Vec<Value> {
    events_until_end_after(app, id, 0).await
}

/// The events after `start`, up to the next end of the task.
async fn events_until_end_after(app: &TestApp, id: &str, start: i64) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let after = all.last().and_then(|e| e["id"].as_i64()).unwrap_or(start);
        let (status, body) = app
            .get_json(&format!(
                "/api/scaffolder/v2/tasks/{id}/events?after={after}"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        let batch = body.as_array().cloned().unwrap_or_default();
        let done = batch
            .iter()
            .any(|e| matches!(e["type"].as_str(), Some("completion") | Some("cancelled")));
        all.extend(batch);
        if done {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "task {id} did not end: {all:#?}"
        );
    }
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["body"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn wait_for_template(app: &TestApp, name: &str) {
    poll_until(
        &format!("template {name} ingested"),
        Duration::from_secs(20),
        || async {
            let (s, _) = app
                .get_json(&format!(
                    "/api/catalog/entities/by-name/template/default/{name}"
                ))
                .await;
            (s == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn demo_template_creates_publishes_and_registers_a_service() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = start(&demo_config(dir.path(), "")).await;
    wait_for_template(&app, "kestrel-service").await;

    let (status, schema) = app
        .get_json("/api/scaffolder/v2/templates/default/template/kestrel-service/parameter-schema")
        .await;
    assert_eq!(status, 200, "{schema}");
    assert_eq!(schema["title"], "Kestrel service");
    assert_eq!(schema["steps"][0]["title"], "About the service");
    assert_eq!(
        schema["steps"][1]["schema"]["properties"]["port"]["default"],
        8080
    );

    let (status, created) = create(
        &app,
        "template:default/kestrel-service",
        json!({"name": "pea-sorter", "owner": "group:default/platform-team", "description": "Sorts \"peas\"",
               "language": "rust", "port": 9090, "features": ["metrics", "tracing"]}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let events = events_until_end(&app, &id).await;
    let last = events.last().expect("events");
    assert_eq!(last["type"], "completion", "{events:#?}");
    assert_eq!(last["body"]["status"], "completed", "{events:#?}");
    let output = &last["body"]["output"];
    assert_eq!(
        output["links"][0]["entityRef"],
        "component:default/pea-sorter"
    );
    assert!(output["text"][0]["content"]
        .as_str()
        .expect("text")
        .contains("**pea-sorter**"));
    for step in ["fetch", "publish", "register"] {
        let statuses: Vec<&str> = events
            .iter()
            .filter(|e| e["body"]["stepId"] == step)
            .filter_map(|e| e["body"]["status"].as_str())
            .collect();
        assert_eq!(statuses, vec!["processing", "completed"], "step {step}");
    }

    let published = dir.path().join("published/pea-sorter");
    let info = std::fs::read_to_string(published.join("catalog-info.yaml")).expect("catalog-info");
    assert_eq!(
        info,
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: pea-sorter\n  description: \"Sorts \\\"peas\\\"\"\n  tags:\n    - rust\n    - metrics\n    - tracing\nspec:\n  type: service\n  lifecycle: experimental\n  owner: group:default/platform-team\n"
    );
    let readme = std::fs::read_to_string(published.join("README.md")).expect("readme");
    assert!(readme.contains("written in Rust"), "{readme}");
    assert!(readme.contains("Features: metrics, tracing."), "{readme}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(published.join("run.sh"))
            .expect("run.sh")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "modes are kept");
    }
    let (status, entity) = app
        .get_json("/api/catalog/entities/by-name/component/default/pea-sorter")
        .await;
    assert_eq!(status, 200, "{entity}");
    assert_eq!(entity["spec"]["owner"], "group:default/platform-team");

    let (status, task) = app
        .get_json(&format!("/api/scaffolder/v2/tasks/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(task["status"], "completed");
    assert_eq!(
        task["spec"]["templateInfo"]["entityRef"],
        "template:default/kestrel-service"
    );
    assert_eq!(task["state"]["steps"]["register"]["status"], "completed");
    let (_, list) = app
        .get_json("/api/scaffolder/v2/tasks?status=completed")
        .await;
    assert_eq!(list["totalTasks"], 1);
    assert_eq!(list["tasks"][0]["id"], id.as_str());

    // The same name again: publish:file refuses to overwrite, and the task fails cleanly.
    let (_, again) = create(
        &app,
        "template:default/kestrel-service",
        json!({"name": "pea-sorter", "owner": "group:default/platform-team"}),
        None,
    )
    .await;
    let events = events_until_end(&app, again["id"].as_str().expect("id")).await;
    let last = events.last().expect("events");
    assert_eq!(last["body"]["status"], "failed");
    assert!(
        last["body"]["error"]["message"]
            .as_str()
            .expect("message")
            .contains("already exists"),
        "{last}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_field_errors_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = start(&demo_config(dir.path(), "")).await;
    wait_for_template(&app, "kestrel-service").await;
    let t = "template:default/kestrel-service";

    let (status, body) = create(&app, t, json!({"name": "Not Valid!", "port": "x"}), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["name"], "InputError");
    let errors = body["errors"].as_array().expect("field errors");
    let props: Vec<&str> = errors
        .iter()
        .filter_map(|e| e["property"].as_str())
        .collect();
    assert!(props.contains(&"instance.name"), "{body}");
    assert!(props.contains(&"instance.port"), "{body}");
    assert!(
        errors.iter().any(|e| e["name"] == "required"),
        "owner is required: {body}"
    );

    let huge = "x".repeat(300 * 1024);
    let (status, body) = create(
        &app,
        t,
        json!({"name": "a", "owner": "o", "description": huge}),
        None,
    )
    .await;
    assert_eq!(status, 413, "{body}");

    let (status, body) = create(&app, "template:default/nope", json!({}), None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = create(&app, "component:default/x", json!({}), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .post_json("/api/scaffolder/v2/tasks", &json!({"values": {}}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app
        .get_json("/api/scaffolder/v2/tasks/does-not-exist")
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json("/api/scaffolder/v2/tasks?status=bogus").await;
    assert_eq!(status, 400);

    let (_, list) = app.get_json("/api/scaffolder/v2/tasks").await;
    assert_eq!(list["totalTasks"], 0, "no task was created: {list}");
    assert!(!dir.path().join("published").exists());

    let (status, actions) = app.get_json("/api/scaffolder/v2/actions").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = actions
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    for id in [
        "fetch:template",
        "fetch:plain",
        "fetch:plain:file",
        "fs:rename",
        "fs:delete",
        "catalog:register",
        "catalog:write",
        "debug:log",
        "publish:file",
        "publish:github",
    ] {
        assert!(ids.contains(&id), "{id} listed");
    }
    let fetch = actions
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == "fetch:template")
        .expect("fetch");
    assert_eq!(fetch["schema"]["input"]["required"], json!(["url"]));
    app.stop().await;
}

#[tokio::test]
async fn templates_with_unknown_actions_filters_or_duplicate_ids_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = template_config(
        dir.path(),
        "broken",
        json!([
            {"id": "a", "action": "debug:log", "input": {"message": "${{ parameters.name | shout }}"}},
            {"id": "a", "action": "debug:log"},
            {"id": "b", "action": "deploy:everything"}
        ]),
        &[],
        "",
    );
    let app = start(&config).await;
    let (_, locations) = poll_until(
        "the location is processed",
        Duration::from_secs(20),
        || async {
            let (s, l) = app.get_json("/api/catalog/locations").await;
            let done = l.as_array().is_some_and(|a| !a.is_empty());
            done.then_some((s, l))
        },
    )
    .await;
    let (status, _) = app
        .get_json("/api/catalog/entities/by-name/template/default/broken")
        .await;
    assert_eq!(status, 404, "a broken template is not ingested");
    let (_, errors) = poll_until(
        "the refusal is recorded",
        Duration::from_secs(20),
        || async {
            let id = locations[0]["data"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (_, e) = app.get_json(&format!("/api/catalog/locations/{id}")).await;
            let text = e.to_string();
            text.contains("deploy:everything").then_some(((), text))
        },
    )
    .await;
    assert!(
        errors.contains("shout"),
        "the unknown filter is named: {errors}"
    );
    assert!(
        errors.contains("\\\"a\\\" is used by more than one step"),
        "{errors}"
    );
    app.stop().await;
}

/// A template whose second step blocks on a gated URL, for cancel and crash tests.
fn gated_template(dir: &Path, fx: &HttpFixture, extra: &str) -> String {
    let steps = json!([
        {"id": "first", "name": "First", "action": "debug:log", "input": {"message": "first step ran"}},
        {"id": "slow", "name": "Slow", "action": "fetch:plain:file", "input": {"url": fx.url("/slow.txt"), "targetPath": "slow.txt"}},
        {"id": "last", "name": "Last", "action": "debug:log", "input": {"message": "last step ran", "listWorkspace": true}}
    ]);
    let reading = format!(
        "backend:\n  reading:\n    allow:\n      - host: '{}'\n",
        fx.host()
    );
    template_config(dir, "gated", steps, &[], &format!("{reading}{extra}"))
}

#[tokio::test]
async fn cancel_stops_a_running_step_and_retry_resumes_after_the_finished_ones() {
    let fx = HttpFixture::start().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    fx.set(
        "/slow.txt",
        Route::Gated(gate.clone(), Arc::new(b"slow content".to_vec())),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let app = start(&gated_template(dir.path(), &fx, "")).await;
    wait_for_template(&app, "gated").await;
    let (_, created) = create(&app, "template:default/gated", json!({"name": "x"}), None).await;
    let id = created["id"].as_str().expect("id").to_string();
    poll_until("the slow step starts", Duration::from_secs(20), || async {
        let (_, e) = app
            .get_json(&format!("/api/scaffolder/v2/tasks/{id}/events?after=0"))
            .await;
        e.as_array()?
            .iter()
            .any(|e| e["body"]["stepId"] == "slow" && e["body"]["status"] == "processing")
            .then_some(())
    })
    .await;
    let (status, body) = app
        .post_json(&format!("/api/scaffolder/v2/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let events = events_until_end(&app, &id).await;
    assert_eq!(
        events.last().expect("end")["type"],
        "cancelled",
        "{events:#?}"
    );
    let (_, task) = app
        .get_json(&format!("/api/scaffolder/v2/tasks/{id}"))
        .await;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["state"]["steps"]["first"]["status"], "completed");

    let (status, body) = app
        .post_json(&format!("/api/scaffolder/v2/tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 201, "{body}");
    // The cancelled request still waits at the gate; the retry's is answered at once.
    fx.set("/slow.txt", Route::Body(Arc::new(b"slow content".to_vec())));
    let after = events.last().and_then(|e| e["id"].as_i64()).expect("id");
    let rest = events_until_end_after(&app, &id, after).await;
    let all = [events.clone(), rest.clone()].concat();
    let texts = messages(&all);
    assert_eq!(
        texts
            .iter()
            .filter(|m| m.as_str() == "first step ran")
            .count(),
        1,
        "the finished step never runs again: {texts:#?}"
    );
    assert!(texts.iter().any(|m| m == "last step ran"), "{texts:#?}");
    assert!(
        texts.iter().any(|m| m.contains("slow.txt")),
        "the workspace was carried over: {texts:#?}"
    );
    let (_, task) = app
        .get_json(&format!("/api/scaffolder/v2/tasks/{id}"))
        .await;
    assert_eq!(task["status"], "completed", "{rest:#?}");

    let (status, _) = app
        .post_json(&format!("/api/scaffolder/v2/tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 409, "a completed task is not retried");
    app.stop().await;
}

#[tokio::test]
async fn secrets_never_reach_events_outputs_or_storage() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = "hunter2-Sup3rSecret";
    let steps = json!([
        {"id": "leak", "action": "debug:log", "input": {
            "message": "plain ${{ secrets.token }} upper ${{ secrets.token | upper }} dump ${{ secrets | dump }} joined ${{ secrets.token | list | join('.') }} rev ${{ secrets.token | reverse }} concat ${{ 'x' + secrets.token + 'y' }}"
        }},
        {"id": "write", "action": "catalog:write", "input": {"filePath": "out.yaml", "entity": {"token": "${{ secrets.token | replace('Sup3r', 'S') }}"}}},
        {"id": "list", "action": "debug:log", "input": {"listWorkspace": "with-contents"}}
    ]);
    let config = template_config(dir.path(), "leaky", steps, &[], "");
    let app = start(&config).await;
    wait_for_template(&app, "leaky").await;
    let (status, created) = create(
        &app,
        "template:default/leaky",
        json!({"name": "n"}),
        Some(json!({"token": secret})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let events = events_until_end(&app, &id).await;
    assert_eq!(
        events.last().expect("end")["body"]["status"],
        "completed",
        "{events:#?}"
    );
    let dump = serde_json::to_string(&events).expect("json");
    let reversed: String = secret.chars().rev().collect();
    for needle in [
        secret.to_string(),
        secret.to_uppercase(),
        reversed,
        "hunter2-SSecret".to_string(),
        "h.u.n.t".to_string(),
    ] {
        assert!(
            !dump.contains(&needle),
            "{needle} leaked into events: {dump}"
        );
    }
    assert!(dump.contains("***"), "redactions are visible: {dump}");
    let (_, task) = app
        .get_json(&format!("/api/scaffolder/v2/tasks/{id}"))
        .await;
    assert!(!task.to_string().contains("hunter2"), "{task}");
    app.stop().await;
}

#[tokio::test]
async fn workspace_escapes_fail_the_task_and_write_nothing_outside() {
    let dir = tempfile::tempdir().expect("tmp");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret.txt"), "host secret").expect("write");
    let cases: Vec<(&str, Value)> = vec![
        // CVE-2021-43783: targetPath climbs out of the workspace.
        (
            "traversal",
            json!([{"id": "s", "action": "fetch:template", "input": {"url": "./skeleton", "targetPath": "../../escaped"}}]),
        ),
        // CVE-2024-26150: a skeleton symlink that points at a host file.
        (
            "skeleton-link",
            json!([{"id": "s", "action": "fetch:template", "input": {"url": "./linked"}}]),
        ),
        // CVE-2026-24046: fs:rename through a link made inside the workspace.
        (
            "rename-link",
            json!([
                {"id": "a", "action": "fetch:plain", "input": {"url": "./chain"}},
                {"id": "b", "action": "fs:rename", "input": {"files": [{"from": "file.txt", "to": "via/escaped.txt"}]}}
            ]),
        ),
        // CVE-2026-24047: fs:delete of paths outside, by `..` and by absolute path.
        (
            "delete-out",
            json!([{"id": "s", "action": "fs:delete", "input": {"files": ["../../outside/secret.txt"]}}]),
        ),
        (
            "delete-abs",
            json!([{"id": "s", "action": "fs:delete", "input": {"files": [outside.join("secret.txt").display().to_string()]}}]),
        ),
        (
            "fetch-abs",
            json!([{"id": "s", "action": "fetch:plain:file", "input": {"url": "../../outside/secret.txt", "targetPath": "x"}}]),
        ),
    ];
    let mut config = format!("catalog:\n  rules:\n    - allow: {ALL_KINDS_RULE}\n  locations:\n");
    for (name, steps) in &cases {
        let root = dir.path().join(name);
        std::fs::create_dir_all(root.join("skeleton")).expect("mkdir");
        std::fs::write(root.join("skeleton/a.txt"), "${{ values.x }}").expect("write");
        std::fs::create_dir_all(root.join("linked")).expect("mkdir");
        std::fs::create_dir_all(root.join("chain")).expect("mkdir");
        std::fs::write(root.join("chain/file.txt"), "x").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("linked/stolen.txt"))
                .expect("link");
            std::os::unix::fs::symlink(&outside, root.join("chain/via")).expect("link");
        }
        let template = json!({"apiVersion": "scaffolder.backstage.io/v1beta3", "kind": "Template",
            "metadata": {"name": name}, "spec": {"type": "t", "steps": steps}});
        std::fs::write(root.join("template.yaml"), template.to_string()).expect("write");
        config.push_str(&format!(
            "    - type: file\n      target: {}\n",
            root.join("template.yaml").display()
        ));
    }
    let app = start(&config).await;
    // Templates are awaited one by one while earlier tasks run: claims must
    // not hold SQLite's write lock against the catalog.
    for (name, _) in &cases {
        wait_for_template(&app, name).await;
        let (status, created) =
            create(&app, &format!("template:default/{name}"), json!({}), None).await;
        assert_eq!(status, 201, "{created}");
        let events = events_until_end(&app, created["id"].as_str().expect("id")).await;
        let last = events.last().expect("end");
        assert_eq!(last["body"]["status"], "failed", "{name}: {events:#?}");
        let message = last["body"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            [
                "leaves the workspace",
                "outside the workspace",
                "absolute path"
            ]
            .iter()
            .any(|m| message.contains(m)),
            "{name}: {message}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).expect("intact"),
        "host secret"
    );
    let entries: Vec<PathBuf> = std::fs::read_dir(&outside)
        .expect("dir")
        .map(|e| e.expect("e").path())
        .collect();
    assert_eq!(entries.len(), 1, "nothing was written outside: {entries:?}");
    assert!(!dir.path().join("escaped").exists());
    app.stop().await;
}

#[tokio::test]
async fn hostile_templates_fail_fast_in_a_dry_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = start(&demo_config(dir.path(), "")).await;
    let template = |message: &str| {
        json!({"apiVersion": "scaffolder.backstage.io/v1beta3", "kind": "Template", "metadata": {"name": "h"},
               "spec": {"type": "t", "steps": [{"id": "s", "action": "debug:log", "input": {"message": message}}]}})
    };
    let cases = [
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            "limit",
        ),
        (
            "{% macro f(n) %}${{ f(n) }}{% endmacro %}${{ f(1) }}",
            "limit",
        ),
        ("${{ 'x' | center(1000000000) }}", "limit"),
    ];
    for (message, expect) in cases {
        let (status, body) = app
            .post_json(
                "/api/scaffolder/v2/dry-run",
                &json!({"template": template(message), "values": {}, "directoryContents": []}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let err = body["error"]["message"].as_str().unwrap_or_default();
        assert!(err.to_lowercase().contains(expect), "{message}: {body}");
    }
    // A syntax error or unknown filter is refused before anything runs.
    let (status, body) = app
        .post_json(
            "/api/scaffolder/v2/dry-run",
            &json!({"template": template("${{ x | nofilter }}"), "values": {}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nofilter"),
        "{body}"
    );

    // A dry-run of the demo template renders its files and skips publishing.
    let demo: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(dir.path().join("templates/service/template.yaml")).expect("read"),
    )
    .expect("yaml");
    let mut contents = Vec::new();
    for (path, rel) in [
        (
            "skeleton/catalog-info.yaml",
            "templates/service/skeleton/catalog-info.yaml",
        ),
        ("skeleton/README.md", "templates/service/skeleton/README.md"),
    ] {
        use base64::Engine as _;
        let bytes = std::fs::read(dir.path().join(rel)).expect("read");
        contents.push(json!({"path": path, "base64Content": base64::engine::general_purpose::STANDARD.encode(bytes)}));
    }
    let (status, body) = app
        .post_json("/api/scaffolder/v2/dry-run", &json!({"template": demo, "values": {"name": "dry", "owner": "group:default/x"}, "directoryContents": contents}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("error").is_none(), "{body}");
    let paths: Vec<&str> = body["directoryContents"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, vec!["README.md", "catalog-info.yaml"]);
    let log = body["log"].to_string();
    assert!(
        log.contains("Skipping because publish:file does not support dry-run"),
        "{log}"
    );
    assert!(
        !dir.path().join("published").exists(),
        "a dry-run publishes nothing"
    );
    app.stop().await;
}

/// Two servers on one PostgreSQL database: every task runs once, on one of them.
#[tokio::test]
async fn two_servers_never_run_one_task_twice() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!(
            "SKIPPED two_servers_never_run_one_task_twice: it needs PostgreSQL (TEST_DATABASE_URL)"
        );
        return;
    };
    if url.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let steps = json!([
        {"id": "one", "action": "debug:log", "input": {"message": "one ${{ parameters.name }}"}},
        {"id": "two", "action": "debug:log", "input": {"message": "two ${{ parameters.name }}"}}
    ]);
    let config = template_config(dir.path(), "twice", steps, &[], "");
    let a = start(&config).await;
    let b = a.spawn_peer().await;
    // Each replica sees the template once the other's write reaches it.
    wait_for_template(&a, "twice").await;
    wait_for_template(&b, "twice").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        let (status, created) = create(
            app,
            "template:default/twice",
            json!({"name": format!("n{i}")}),
            None,
        )
        .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let events = events_until_end(&a, id).await;
        let texts = messages(&events);
        for step in ["one", "two"] {
            let starts = events
                .iter()
                .filter(|e| e["body"]["stepId"] == step && e["body"]["status"] == "processing")
                .count();
            assert_eq!(starts, 1, "{id}: step {step} ran once: {texts:#?}");
        }
        assert_eq!(
            events.iter().filter(|e| e["type"] == "completion").count(),
            1
        );
    }
    b.stop().await;
    a.stop().await;
}
