//! The HTML of a message made safe to show: ammonia's allow-list (no script, no event handlers, no
//! `style` elements or attributes, no `javascript:` or other unknown URL schemes, no forms, no frames),
//! links opening outside the inbox without a referrer, and remote images removed unless the reader
//! asked for them. The frame that shows the result is sandboxed and has its own CSP on top of this
//! ([`crate::http::html_body_csp`]), so a sanitiser bug alone does not run anything.

use std::borrow::Cow;

/// Sanitises `html`; with `remote_images` false, `img` elements keep only inline `data:` sources.
pub fn clean(html: &str, remote_images: bool) -> String {
    let mut b = ammonia::Builder::default();
    b.url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .attribute_filter(move |element, attribute, value| {
            if element == "img" && attribute == "src" {
                let v = value.trim_start();
                let remote = !v.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:"));
                if remote && !remote_images {
                    // Loading it would tell the sender that (and when, and from where) the mail was read.
                    return None;
                }
            }
            Some(Cow::Borrowed(value))
        });
    // Inline images as the mail carries them; they never leave the message.
    b.add_url_schemes(&["data"]);
    b.clean(html).to_string()
}

/// Whether the HTML refers to any remote image (what the "show images" link is for).
pub fn has_remote_images(html: &str) -> bool {
    let lower = html.to_ascii_lowercase();
    lower.contains("<img")
        && (lower.contains("http:") || lower.contains("https:") || lower.contains("src=\"//"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_html_is_defused() {
        let evil = r#"<p onclick="steal()">Hi<script>alert(1)</script>
            <img src="x" onerror="alert(2)"><a href="javascript:alert(3)">click</a>
            <style>body{background:url(https://t.example/css)}</style>
            <div style="background:url(https://t.example/bg)">styled</div>
            <img src="https://t.example/pixel.gif"><img src="data:image/png;base64,AAAA">
            <iframe src="https://evil.example"></iframe><form action="https://x"><input></form>
            <a href="https://ok.example/">ok</a></p>"#;
        let out = clean(evil, false);
        for gone in [
            "script",
            "onerror",
            "onclick",
            "javascript:",
            "<style",
            "style=",
            "t.example",
            "iframe",
            "<form",
            "<input",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(out.contains("data:image/png"));
        assert!(out.contains(r#"href="https://ok.example/""#));
        assert!(out.contains("noopener noreferrer"));
        let shown = clean(evil, true);
        assert!(shown.contains("https://t.example/pixel.gif"));
        assert!(!shown.contains("t.example/css") && !shown.contains("t.example/bg"));
        assert!(has_remote_images(evil));
        assert!(!has_remote_images("<p>no images</p>"));
    }
}
