//! Markdown from a task's output (`output.text[].content`), rendered to HTML
//! that is safe to put in a page: raw HTML in the source is shown as text, and
//! links and images keep only http, https and same-site targets (an image
//! becomes a link to it, so that no page loads what a template points at).

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

/// HTML made by [`render`], and only by it.
pub struct SafeHtml(String);

impl std::fmt::Display for SafeHtml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
impl SafeHtml {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A link target that may be followed: absolute http(s), or a path on this site.
pub fn safe_target(url: &str) -> Option<String> {
    let url = url.trim();
    if url.starts_with('/') && !url.starts_with("//") && !url.starts_with("/\\") {
        return Some(url.to_string());
    }
    if url.starts_with('#') {
        return Some(url.to_string());
    }
    super::super::safe_href(url)
}

pub fn render(source: &str) -> SafeHtml {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let events = Parser::new_ext(source, options).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: checked(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            dest_url,
            title,
            id,
            ..
        }) => Event::Start(Tag::Link {
            // An image becomes a link to it, its alt text the link's text.
            link_type: LinkType::Inline,
            dest_url: checked(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    SafeHtml(html)
}

/// Unsafe targets (javascript:, data:, …) become an empty fragment link.
fn checked(url: CowStr<'_>) -> CowStr<'_> {
    match safe_target(&url) {
        Some(u) => CowStr::from(u),
        None => CowStr::from("#"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_text_and_targets_are_checked() {
        let html = render(
            "**bold** <script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[a](javascript:alert(1)) [b](https://example.com/x) [c](/catalog) ![i](data:image/png;base64,AA)",
        );
        let h = html.as_str();
        assert!(h.contains("<strong>bold</strong>"), "{h}");
        assert!(!h.contains("<script"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(!h.contains("javascript:"), "{h}");
        assert!(!h.contains("data:image"), "{h}");
        assert!(h.contains("href=\"https://example.com/x\""), "{h}");
        assert!(h.contains("href=\"/catalog\""), "{h}");
    }

    #[test]
    fn protocol_relative_and_odd_targets_are_refused() {
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            " javascript:x",
            "vbscript:x",
            "file:///etc/passwd",
        ] {
            assert_eq!(safe_target(bad), None, "{bad}");
        }
    }
}
