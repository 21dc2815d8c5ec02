//! End to end in headless Chromium through chromedriver: sign in through the
//! provider's login form, search, filter, open an entity, follow a graph link,
//! register a location as an admin, and sign out. Each page is saved as a
//! screenshot under the test's target directory.

use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use stagedoor_tests::peers::Chromedriver;
use stagedoor_tests::{poll_until, HttpFixture};

use crate::auth::{portal_with, BY_EMAIL};

pub(crate) const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

pub(crate) struct Shots {
    dir: PathBuf,
    n: usize,
}

impl Shots {
    pub(crate) fn new() -> Shots {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        eprintln!("screenshots: {}", dir.display());
        Shots { dir, n: 0 }
    }

    pub(crate) async fn take(&mut self, c: &Client, name: &str) {
        self.n += 1;
        let png = c.screenshot().await.expect("screenshot");
        std::fs::write(self.dir.join(format!("{:02}-{name}.png", self.n)), png)
            .expect("write screenshot");
    }
}

pub(crate) async fn browser(driver: &Chromedriver, width: u32, height: u32) -> Client {
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(Chromedriver::capabilities(width, height))
        .connect(&driver.url)
        .await
        .expect("a chromedriver session")
}

pub(crate) async fn wait_for_path(c: &Client, prefix: &str) -> url::Url {
    poll_until(&format!("a page under {prefix}"), WAIT, || async {
        let url = c.current_url().await.ok()?;
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        path_and_query.starts_with(prefix).then_some(url)
    })
    .await
}

pub(crate) async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
}

#[tokio::test]
async fn a_developer_signs_in_browses_registers_and_signs_out() {
    let fixture = HttpFixture::start().await;
    fixture.set_body(
        "/team-b/catalog-info.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: ledger, description: Double-entry ledger}\nspec: {type: service, lifecycle: experimental, owner: team-a}\n",
    );
    let extra = format!(
        "  reading:\n    allow:\n      - host: '{}'\n",
        fixture.host()
    );
    let Some(p) = portal_with(BY_EMAIL, json!({}), &extra).await else {
        return;
    };
    let Some(driver) = Chromedriver::start().await else {
        return;
    };
    p.idp
        .control("accounts", json!({"login": "alice", "groups": ["admins"]}))
        .await;
    let c = browser(&driver, 1280, 900).await;
    let mut shots = Shots::new();

    // Signed out, the catalog sends the browser to sign in.
    c.goto(&p.app.url("/catalog")).await.expect("open catalog");
    wait_for_path(&c, "/login").await;
    shots.take(&c, "sign-in").await;
    css(&c, "#sign-in-oidc")
        .await
        .click()
        .await
        .expect("sign in");

    // The provider's own login form.
    let login = css(&c, "input[name=login]").await;
    login.send_keys("alice").await.expect("type login");
    if let Ok(password) = c.find(Locator::Css("input[name=password]")).await {
        password.send_keys("any").await.expect("type password");
    }
    shots.take(&c, "provider-login").await;
    css(&c, "button[type=submit]")
        .await
        .click()
        .await
        .expect("submit login");
    wait_for_path(&c, "/catalog").await;
    let who = css(&c, ".account .who").await.text().await.expect("who");
    assert_eq!(who, "alice", "the provider's name for the user");
    shots.take(&c, "catalog").await;

    // Search, then filter.
    let search = css(&c, "#catalog-search").await;
    search.send_keys("checkout").await.expect("type search");
    css(&c, "#apply-filters")
        .await
        .click()
        .await
        .expect("search");
    wait_for_path(&c, "/catalog?").await;
    poll_until("search results", WAIT, || async {
        let url = c.current_url().await.ok()?;
        url.query_pairs()
            .any(|(k, v)| k == "q" && v == "checkout")
            .then_some(())
    })
    .await;
    let rows = c
        .find_all(Locator::Css("#catalog-results a.entity-link"))
        .await
        .expect("results");
    let mut names = Vec::new();
    for r in &rows {
        names.push(r.text().await.expect("text"));
    }
    assert!(names.iter().any(|n| n.contains("checkout")), "{names:?}");
    shots.take(&c, "search").await;
    css(&c, "#filter-lifecycle")
        .await
        .select_by_value("production")
        .await
        .expect("choose lifecycle");
    css(&c, "#apply-filters")
        .await
        .click()
        .await
        .expect("filter");
    poll_until("filtered results", WAIT, || async {
        let url = c.current_url().await.ok()?;
        url.query_pairs()
            .any(|(k, v)| k == "lifecycle" && v == "production")
            .then_some(())
    })
    .await;
    shots.take(&c, "filtered").await;

    // Open the entity, then follow its owner in the relations graph.
    css(&c, "#catalog-results a.entity-link")
        .await
        .click()
        .await
        .expect("open entity");
    wait_for_path(&c, "/catalog/default/component/checkout").await;
    let title = css(&c, "#entity-title").await.text().await.expect("title");
    assert!(title.contains("checkout"), "{title}");
    shots.take(&c, "entity").await;
    let node = css(
        &c,
        "#relations-graph a.graph-node[href='/catalog/default/group/team-a']",
    )
    .await;
    node.click().await.expect("follow graph link");
    wait_for_path(&c, "/catalog/default/group/team-a").await;
    css(&c, "#group-members").await;
    shots.take(&c, "group").await;

    // Register a location as an admin: preview, then confirm.
    c.goto(&p.app.url("/admin/locations")).await.expect("admin");
    css(&c, "#location-target")
        .await
        .send_keys(&fixture.url("/team-b/catalog-info.yaml"))
        .await
        .expect("type target");
    css(&c, "#preview-location")
        .await
        .click()
        .await
        .expect("preview");
    let preview = css(&c, "#preview-entities")
        .await
        .text()
        .await
        .expect("preview");
    assert!(preview.contains("component:default/ledger"), "{preview}");
    shots.take(&c, "register-preview").await;
    css(&c, "#confirm-location")
        .await
        .click()
        .await
        .expect("confirm");
    let notice = css(&c, "#flash").await.text().await.expect("notice");
    assert!(notice.contains("Registered"), "{notice}");
    shots.take(&c, "registered").await;
    let (status, _) = p
        .app
        .get_json("/api/catalog/entities/by-name/component/default/ledger")
        .await;
    assert_eq!(status, 401, "the API still needs credentials");

    // The narrow layout works too.
    c.set_window_size(390, 844).await.expect("resize");
    c.goto(&p.app.url("/catalog")).await.expect("catalog");
    css(&c, "#catalog-results").await;
    shots.take(&c, "catalog-390px").await;
    c.set_window_size(1280, 900).await.expect("resize");

    // Sign out: the provider's logout runs, then the portal asks to sign in again.
    c.goto(&p.app.url("/")).await.expect("home");
    css(&c, "#sign-out").await.click().await.expect("sign out");
    poll_until("back at the portal, signed out", WAIT, || async {
        let url = c.current_url().await.ok()?;
        (url.as_str().starts_with(&p.app.base) && url.path() == "/login").then_some(())
    })
    .await;
    shots.take(&c, "signed-out").await;
    c.goto(&p.app.url("/profile")).await.expect("profile");
    wait_for_path(&c, "/login").await;

    c.close().await.expect("close browser");
    p.app.stop().await;
}
