//! Human-readable documentation for every error type Sigil emits, served at `/docs/errors/<type path>`
//! (e.g. `/docs/errors/unkey/data/identity_already_exists`) with an index at `/docs/errors`. Point the
//! `type` URLs of error bodies here with `--error-docs-base http://HOST:PORT/docs/errors`.

use axum::extract::Path;
use axum::response::Html;
use strum::IntoEnumIterator;

use crate::error::{ApiError, ErrorCode};

/// What a client needs to know about one error type.
pub struct ErrorDocs {
    pub what_happened: &'static str,
    pub common_causes: &'static [&'static str],
    pub how_to_fix: &'static str,
}

impl ErrorCode {
    pub fn docs(self) -> ErrorDocs {
        let (what_happened, common_causes, how_to_fix): (&str, &[&str], &str) = match self {
            Self::InvalidInput => (
                "The request was rejected before anything ran: its body, headers or values break the API's rules.",
                &[
                    "The body is not JSON, or Content-Type is not application/json.",
                    "A field breaks the schema (see errors[].location, a JSON-Schema keyword path such as /properties/externalId/pattern).",
                    "Two ratelimits share a name, or meta is over 1 MiB.",
                    "The Authorization header is missing.",
                ],
                "Correct the request as errors[] describes and send it again. The OpenAPI document at /openapi.json lists every limit.",
            ),
            Self::Malformed => (
                "The Authorization header is present but is not of the form 'Bearer <root key>'.",
                &["A different scheme (Basic, Token) or no scheme.", "An empty token after 'Bearer '."],
                "Send 'Authorization: Bearer <root key>'.",
            ),
            Self::KeyNotFound => (
                "The bearer token is not a root key of this Sigil.",
                &["A typo or a truncated key.", "A key from another Sigil installation or from Unkey's cloud."],
                "Use a key printed by 'sigil root-key create' (or by the first 'sigil serve').",
            ),
            Self::InsufficientPermissions => (
                "The root key is valid but holds none of the permissions this operation accepts.",
                &[
                    "The key was minted with --permission for other operations.",
                    "A per-identity grant used for another identity.",
                ],
                "Mint a key with one of the permissions named in the detail, e.g. identity.*.read_identity.",
            ),
            Self::IdentityNotFound => (
                "No live identity in your workspace has this id or externalId.",
                &[
                    "The identity was deleted.",
                    "A typo; externalIds are case-sensitive.",
                    "The identity belongs to another workspace.",
                ],
                "List identities to find the right one, or create it (upsertIdentity does both in one call).",
            ),
            Self::IdentityAlreadyExists => (
                "A live identity in your workspace already has this externalId; nothing was written.",
                &["A retried create whose first attempt succeeded.", "Two clients creating the same user at once."],
                "Fetch the existing identity: when your key may read it, error.retrieve is the request that does so. To \
                 retry safely send an Idempotency-Key; to get-or-create in one call use identities.upsertIdentity.",
            ),
            Self::IdempotencyKeyReused => (
                "This Idempotency-Key was first used for a different request (another operation or body).",
                &[
                    "A client reuses keys across different requests.",
                    "The body was re-serialized differently on retry.",
                ],
                "Use a fresh key for every distinct request, and resend the same bytes when retrying.",
            ),
            Self::IdempotencyRequestInProgress => (
                "A request with this Idempotency-Key is still running, so this retry was not run.",
                &["A client retried before the first attempt answered."],
                "Wait the seconds given in Retry-After and retry with the same key: you will get the first request's answer.",
            ),
            Self::RequestTimeout => (
                "The request did not complete within the server's timeout; it may or may not have taken effect.",
                &["An overloaded database.", "A very large request."],
                "Retry with the same Idempotency-Key so the retry cannot apply a write twice.",
            ),
            Self::RequestBodyTooLarge => (
                "The request body is larger than the server accepts (1 MiB unless configured otherwise).",
                &["Large documents stored in meta."],
                "Keep meta small; store large documents elsewhere and keep a reference in meta.",
            ),
            Self::RouteNotFound => (
                "There is no operation at this path.",
                &["A typo in the operation name.", "A path prefix in the client's server URL."],
                "Call POST /v2/identities.<operation> at the server's root; /openapi.json lists every route.",
            ),
            Self::MethodNotAllowed => (
                "The operation exists but not for this HTTP method.",
                &["A GET to an RPC route."],
                "Every API operation is a POST with a JSON body.",
            ),
            Self::ServiceUnavailable => (
                "The database did not answer in time, or kept aborting the operation; nothing was written.",
                &["The database is down, overloaded, or out of connections."],
                "Retry after a short wait, with the same Idempotency-Key for writes.",
            ),
            Self::Overloaded => (
                "The server was already running as many requests as it is configured to, so it refused this one \
                 at once instead of queueing it; nothing was written.",
                &["A traffic burst far above normal.", "A client retrying without backoff."],
                "Retry after the seconds in Retry-After, with backoff, and with the same Idempotency-Key for writes.",
            ),
            Self::UnexpectedError => (
                "Sigil failed in a way it did not expect. This is a bug.",
                &["A bug in Sigil.", "A corrupted database."],
                "Retry with the same Idempotency-Key. Report the requestId: the server log has the details under it.",
            ),
        };
        ErrorDocs { what_happened, common_causes, how_to_fix }
    }
}

pub async fn index() -> Html<String> {
    let items: String = ErrorCode::iter()
        .map(|code| {
            format!("<li><a href=\"/docs/errors/{0}\">{0}</a>: {1}</li>", code.path(), code.docs().what_happened)
        })
        .collect();
    Html(page("Sigil error types", &format!("<ul>{items}</ul>")))
}

pub async fn error_page(Path(path): Path<String>) -> Result<Html<String>, ApiError> {
    let code = ErrorCode::iter()
        .find(|code| code.path() == path)
        .ok_or_else(|| ApiError::new(ErrorCode::RouteNotFound, format!("There is no error type {path}.")))?;
    let docs = code.docs();
    let causes: String = docs.common_causes.iter().map(|cause| format!("<li>{cause}</li>")).collect();
    let body = format!(
        "<p><code>{status} {title}</code> · <code>{type_url}</code></p>\
         <h2>What happened</h2><p>{what}</p><h2>Common causes</h2><ul>{causes}</ul><h2>How to fix</h2><p>{fix}</p>\
         <p><a href=\"/docs/errors\">All error types</a></p>",
        status = code.status().as_u16(),
        title = code.title(),
        type_url = code.type_url(),
        what = docs.what_happened,
        fix = docs.how_to_fix,
    );
    Ok(Html(page(code.path(), &body)))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )
}
