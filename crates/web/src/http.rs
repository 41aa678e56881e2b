//! The HTTP plumbing of the pages: the response body type, the security headers every answer carries,
//! cookies, query strings and form bodies read under the size limit.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;

/// The body of every answer: whole pages and the live-update stream alike.
pub type WebBody = BoxBody<Bytes, Infallible>;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "msgr_mail_session";
/// The sign-in form's CSRF cookie (double submit: the form's hidden field must match it).
pub const LOGIN_COOKIE: &str = "msgr_mail_login";

/// The policy of every page: scripts and styles only from our own files (none inline), frames only
/// ours (the sanitised HTML of a message), never framed by anyone.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The policy of a message's sanitised HTML, inside its sandboxed frame: nothing runs, nothing loads
/// except inline `data:` images, and remote images only when the reader asked for them.
pub fn html_body_csp(remote_images: bool) -> String {
    let img = if remote_images {
        "data: https: http:"
    } else {
        "data:"
    };
    format!(
        "default-src 'none'; img-src {img}; style-src 'none'; script-src 'none'; form-action 'none'; \
         base-uri 'none'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
    )
}

/// A whole body.
pub fn full(data: impl Into<Bytes>) -> WebBody {
    Full::new(data.into()).boxed()
}

/// Headers every answer under `/mail/` carries.
pub fn secure(r: &mut Response<WebBody>) {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(PAGE_CSP));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    // Mail is private: no shared cache keeps a page, and the back button after sign-out shows nothing.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// An HTML page.
pub fn html(status: StatusCode, page: String) -> Response<WebBody> {
    let mut r = Response::new(full(page));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// `303 See Other` to a local path.
pub fn see_other(location: &str) -> Response<WebBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A fixed file (`/mail/static/…`), cacheable for a while.
pub fn asset(content_type: &'static str, data: &'static str) -> Response<WebBody> {
    let mut r = Response::new(full(Bytes::from_static(data.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    r
}

/// `Set-Cookie` for `name=value` with every protection: never read by script, only over TLS, never
/// sent with another site's requests, only under `/mail/`.
pub fn set_cookie(r: &mut Response<WebBody>, name: &str, value: &str, max_age: Option<u64>) {
    let age = match max_age {
        Some(s) => format!("; Max-Age={s}"),
        None => String::new(),
    };
    let cookie = format!("{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/mail/{age}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Tells the browser to forget a cookie.
pub fn clear_cookie(r: &mut Response<WebBody>, name: &str) {
    set_cookie(r, name, "", Some(0));
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Fields of a query string or a urlencoded form; the first of repeated names wins.
pub fn fields(data: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(data) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    #[error("reading the request body: {0}")]
    Read(String),
}

/// Reads a whole body, refusing (before keeping more) one longer than `limit`.
pub async fn read_body<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// `attachment; filename*=UTF-8''…` (RFC 6266 with RFC 8187 encoding): the name as given, never
/// breaking the header.
pub fn attachment_disposition(filename: &str) -> HeaderValue {
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    if encoded.is_empty() {
        encoded.push_str("attachment");
    }
    HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

/// A `Content-Type` taken from a message part only when it is a plain `type/subtype`, else
/// `application/octet-stream`.
pub fn safe_content_type(declared: &str) -> HeaderValue {
    let ok = declared.len() < 128
        && declared.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(s)
        });
    if ok {
        HeaderValue::from_str(&declared.to_ascii_lowercase())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"))
    } else {
        HeaderValue::from_static("application/octet-stream")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; msgr_mail_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let f = fields(b"q=a+b%21&q=second&x=");
        assert_eq!(f["q"], "a b!");
        assert_eq!(f["x"], "");
    }

    #[test]
    fn dispositions_and_types() {
        assert_eq!(
            attachment_disposition("ré\"sumé.pdf\r\nX: y"),
            "attachment; filename*=UTF-8''r%C3%A9%22sum%C3%A9.pdf%0D%0AX%3A%20y"
        );
        assert_eq!(safe_content_type("Image/PNG"), "image/png");
        assert_eq!(
            safe_content_type("text/html\r\nX-Evil: 1"),
            "application/octet-stream"
        );
        assert_eq!(safe_content_type("nonsense"), "application/octet-stream");
    }
}
