//! Documentation for every error type Sigil emits, served at `/docs/errors/<type path>` (e.g.
//! `/docs/errors/unkey/data/identity_already_exists`) with an index at `/docs/errors`: HTML for browsers, JSON
//! for tools that send `Accept: application/json`. Point the `type` URLs of error bodies here with
//! `--error-docs-base http://HOST:PORT/docs/errors`.
//!
//! Each error type has one table ([`ErrorCode::docs`], in `pages.rs`); the HTML and the JSON are both
//! rendered from it.
//! Requests and code in the tables say `{base}` where the URL of the serving server goes, so every command
//! on a page can be pasted as is against the server that showed it.

use axum::extract::Path;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use strum::IntoEnumIterator;

use crate::error::{ApiError, ErrorCode};

/// Stands for the serving server's URL in the tables; replaced when a page is rendered.
const BASE_PLACEHOLDER: &str = "{base}";

/// The address `sigil serve` listens on by default, for requests that name no usable host.
const DEFAULT_HOST: &str = "127.0.0.1:7070";

/// Ids in the examples are fixed, so a page reads the same on every visit.
const EXAMPLE_REQUEST_ID: &str = "req_01JZ8X4C2M7T5R9W3Y6K8P1N0D";
const EXAMPLE_IDENTITY_ID: &str = "id_01JZ8X4B7QH2V9N3C5D6E8F0GA";

/// A curl call of an API operation with a root key from `$SIGIL_ROOT_KEY`, optionally with an
/// `Idempotency-Key` (in double quotes, so it may name a shell variable).
macro_rules! curl {
    ($operation:literal, $body:literal) => {
        concat!(
            "curl -s -X POST {base}/v2/",
            $operation,
            " \\\n  -H \"Authorization: Bearer $SIGIL_ROOT_KEY\" \\\n  -H 'Content-Type: application/json' \\\n  -d '",
            $body,
            "'"
        )
    };
    ($operation:literal, $body:literal, $idempotency_key:literal) => {
        concat!(
            "curl -s -X POST {base}/v2/",
            $operation,
            " \\\n  -H \"Authorization: Bearer $SIGIL_ROOT_KEY\" \\\n  -H 'Content-Type: application/json' \\\n",
            "  -H \"Idempotency-Key: ",
            $idempotency_key,
            "\" \\\n  -d '",
            $body,
            "'"
        )
    };
}

// After `curl!`, which the pages use.
mod pages;

/// What a client needs to know about one error type, in the order the page shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDocs {
    /// One line for the index.
    #[serde(skip)]
    pub summary: &'static str,
    /// Rendered as the exact body Sigil sends, so the example cannot drift from the wire format.
    #[serde(rename = "exampleResponse", serialize_with = "serialize_example")]
    pub example: ApiError,
    pub what_happened: &'static str,
    pub common_scenarios: &'static [&'static str],
    pub triggering_request: &'static str,
    pub how_to_fix: &'static [Fix],
    pub code_examples: &'static [CodeExample],
    pub common_mistakes: &'static [&'static str],
}

#[derive(Serialize)]
pub struct Fix {
    pub description: &'static str,
    pub request: &'static str,
}

#[derive(Serialize)]
pub struct CodeExample {
    pub language: Language,
    pub code: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    TypeScript,
    Python,
}

impl Language {
    fn label(self) -> &'static str {
        match self {
            Self::TypeScript => "TypeScript",
            Self::Python => "Python",
        }
    }
}

fn serialize_example<S: Serializer>(error: &ApiError, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&example_body(error))
}

/// `error`'s body exactly as Sigil sends it, pretty-printed, with a fixed request id.
fn example_body(error: &ApiError) -> String {
    let mut body: Value = serde_json::from_str(&error.body_json()).expect("error bodies are JSON");
    body["meta"]["requestId"] = Value::from(EXAMPLE_REQUEST_ID);
    serde_json::to_string_pretty(&body).expect("JSON values serialize")
}

pub async fn index(headers: HeaderMap, uri: Uri) -> Response {
    let base = base_url(&headers, &uri);
    if wants_json(&headers) {
        let entries: Vec<Value> = ErrorCode::iter()
            .map(|code| {
                json!({
                    "type": code.type_url(),
                    "status": code.status().as_u16(),
                    "title": code.title(),
                    "url": format!("{base}/docs/errors/{}", code.path()),
                    "summary": code.docs().summary,
                })
            })
            .collect();
        return respond(JSON, serde_json::to_string(&entries).expect("JSON values serialize"));
    }
    let items: String = ErrorCode::iter()
        .map(|code| {
            format!(
                "<li><a href=\"/docs/errors/{path}\">{path}</a> <code>{status} {title}</code>: {summary}</li>",
                path = escape(code.path()),
                status = code.status().as_u16(),
                title = escape(code.title()),
                summary = prose(code.docs().summary),
            )
        })
        .collect();
    let body = format!(
        "<h1>Sigil error types</h1><p>Every error Sigil answers with, and how to handle it. As JSON: \
         <code>curl -H 'Accept: application/json' {base}/docs/errors</code></p><ul>{items}</ul>"
    );
    respond(HTML, page("Sigil error types", &body))
}

pub async fn error_page(headers: HeaderMap, uri: Uri, Path(path): Path<String>) -> Result<Response, ApiError> {
    let code = ErrorCode::iter()
        .find(|code| code.path() == path)
        .ok_or_else(|| ApiError::new(ErrorCode::RouteNotFound, format!("There is no error type {path}.")))?;
    let docs = code.docs();
    let (content_type, body) = if wants_json(&headers) {
        (JSON, serde_json::to_string(&JsonPage::new(code, &docs)).expect("error docs serialize"))
    } else {
        (HTML, html_page(code, &docs))
    };
    Ok(respond(content_type, body.replace(BASE_PLACEHOLDER, &base_url(&headers, &uri))))
}

#[derive(Serialize)]
struct JsonPage<'a> {
    #[serde(rename = "type")]
    type_url: String,
    status: u16,
    title: &'static str,
    sections: &'a ErrorDocs,
}

impl<'a> JsonPage<'a> {
    fn new(code: ErrorCode, docs: &'a ErrorDocs) -> Self {
        Self { type_url: code.type_url(), status: code.status().as_u16(), title: code.title(), sections: docs }
    }
}

fn html_page(code: ErrorCode, docs: &ErrorDocs) -> String {
    let sections = [
        ("Example response", code_block(&example_body(&docs.example))),
        ("What happened", format!("<p>{}</p>", prose(docs.what_happened))),
        ("Common scenarios", bullets(docs.common_scenarios)),
        ("Request that triggers it", code_block(docs.triggering_request)),
        ("How to fix", fixes(docs.how_to_fix)),
        ("Code examples", code_examples(docs.code_examples)),
        ("Common mistakes", bullets(docs.common_mistakes)),
    ];
    let sections: String = sections.iter().map(|(heading, html)| format!("<h2>{heading}</h2>{html}")).collect();
    let path = escape(code.path());
    let header = format!(
        "<p><a href=\"/docs/errors\">All error types</a></p><h1>{path}</h1>\
         <p class=\"meta\"><code>{status} {title}</code> · <code>{type_url}</code></p>\
         <p class=\"meta\">As JSON: <code>curl -H 'Accept: application/json' {BASE_PLACEHOLDER}/docs/errors/{path}</code></p>",
        status = code.status().as_u16(),
        title = escape(code.title()),
        type_url = escape(&code.type_url()),
    );
    page(code.path(), &format!("{header}{sections}"))
}

fn fixes(fixes: &[Fix]) -> String {
    let items: String = fixes
        .iter()
        .map(|fix| format!("<li><p>{}</p>{}</li>", prose(fix.description), code_block(fix.request)))
        .collect();
    format!("<ol>{items}</ol>")
}

fn code_examples(examples: &[CodeExample]) -> String {
    examples
        .iter()
        .map(|example| format!("<h3>{}</h3>{}", example.language.label(), code_block(example.code)))
        .collect()
}

fn bullets(items: &[&str]) -> String {
    let items: String = items.iter().map(|item| format!("<li>{}</li>", prose(item))).collect();
    format!("<ul>{items}</ul>")
}

fn code_block(code: &str) -> String {
    format!("<pre><code>{}</code></pre>", escape(code))
}

/// Text with `backticked` spans shown as code, the way the same text reads in the JSON.
fn prose(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(index, part)| if index % 2 == 1 { format!("<code>{part}</code>") } else { part.to_owned() })
        .collect()
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            other => escaped.push(other),
        }
    }
    escaped
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// One URL serves both forms, so caches must key on `Accept`.
fn respond(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::VARY, "accept")], body).into_response()
}

/// Tools ask for `application/json`; browsers list `text/html` (and `*/*`), and get the page.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
    let lists = |wanted: &str| {
        accept.split(',').any(|media| media.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(wanted))
    };
    lists("application/json") && !lists("text/html")
}

/// The origin the client reached this server at, so that copied commands call the same server. HTTP/2
/// requests carry it in the URI instead of `Host`.
fn base_url(headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|authority| authority.as_str()))
        .filter(|host| is_plain_host(host))
        .unwrap_or(DEFAULT_HOST);
    format!("http://{host}")
}

/// Only `host[:port]` characters: the host ends up in commands that readers paste into a shell.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-_:[]".contains(&byte))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        title = escape(title),
    )
}

const STYLE: &str = "body{margin:0;font:16px/1.6 system-ui,sans-serif;color:#1d1d1f;background:#fbfbfd}\
main{max-width:52rem;margin:0 auto;padding:1.5rem}h1{font-size:1.5rem;overflow-wrap:anywhere}\
h2{margin-top:2.2rem;padding-bottom:.2rem;border-bottom:1px solid #d8d8de}h3{font-size:1rem;margin-bottom:.3rem}\
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
pre{background:#f0f0f4;padding:.8rem 1rem;border-radius:6px;overflow-x:auto;line-height:1.45}\
li{margin:.3rem 0}.meta{color:#55555f}a{color:#0b5cad}\
@media (prefers-color-scheme:dark){body{color:#e8e8ed;background:#16161a}pre{background:#24242b}\
h2{border-color:#3a3a44}.meta{color:#a8a8b3}a{color:#6cb4ff}}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_attribute_quotes() {
        assert_eq!(escape(r#"<a href="x">&</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }

    #[test]
    fn prose_shows_backticked_spans_as_code() {
        assert_eq!(prose("use `a<b` here"), "use <code>a&lt;b</code> here");
    }

    #[test]
    fn only_plain_hosts_make_the_base_url() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "sigil.example:8443".parse().unwrap());
        assert_eq!(base_url(&headers, &Uri::from_static("/docs/errors")), "http://sigil.example:8443");
        headers.insert(header::HOST, "x;rm -rf ~".parse().unwrap());
        assert_eq!(base_url(&headers, &Uri::from_static("/docs/errors")), "http://127.0.0.1:7070");
    }

    #[test]
    fn browsers_get_html_and_tools_json() {
        let accept =
            |value: &'static str| [(header::ACCEPT, value.parse().unwrap())].into_iter().collect::<HeaderMap>();
        assert!(wants_json(&accept("application/json")));
        assert!(!wants_json(&accept("text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8")));
        assert!(!wants_json(&HeaderMap::new()));
    }

    #[test]
    fn every_example_is_the_wire_body_of_its_code() {
        for code in ErrorCode::iter() {
            let body: Value = serde_json::from_str(&example_body(&code.docs().example)).unwrap();
            assert_eq!(body["error"]["type"], code.type_url());
            assert_eq!(body["error"]["status"], code.status().as_u16());
        }
    }
}
