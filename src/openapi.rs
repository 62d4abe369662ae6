//! `openapi.json` (at the repository root) is the API's contract: served at `/openapi.json`, and the schema
//! every request body is validated against before authentication, as Unkey's server does. Limits such as
//! "externalId is 1–255 characters" therefore live in exactly one place.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::error::{ApiError, ValidationError};

/// A request with many faults gets the first few, not a response as large as its body.
const MAX_REPORTED_ERRORS: usize = 20;
/// Messages can quote the client's property names; keep a hostile one from bloating the response.
const MAX_MESSAGE_CHARS: usize = 300;

static DOCUMENT: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json is valid JSON"));

/// Request-body validators keyed by route path, compiled once from the document.
static VALIDATORS: LazyLock<HashMap<String, Validator>> = LazyLock::new(|| {
    let paths = DOCUMENT["paths"].as_object().expect("openapi.json has paths");
    paths
        .iter()
        .map(|(path, item)| {
            let reference = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{path} has no request schema reference"));
            let name = reference.trim_start_matches("#/components/schemas/");
            let validator = jsonschema::validator_for(&DOCUMENT["components"]["schemas"][name])
                .unwrap_or_else(|error| panic!("schema {name} does not compile: {error}"));
            (path.clone(), validator)
        })
        .collect()
});

pub fn document() -> &'static Value {
    &DOCUMENT
}

/// Checks `body` against the request schema of the route at `path`. Locations are JSON-Schema keyword
/// paths (`/properties/externalId/minLength`), as Unkey reports them.
pub fn validate_request_body(path: &str, body: &Value) -> Result<(), ApiError> {
    let validator =
        VALIDATORS.get(path).unwrap_or_else(|| panic!("route {path} has no request schema in openapi.json"));
    // A valid body, nearly every one, takes the validator's fast path, which builds no errors.
    if validator.is_valid(body) {
        return Ok(());
    }
    let errors: Vec<ValidationError> = validator
        .iter_errors(body)
        .take(MAX_REPORTED_ERRORS)
        .map(|error| {
            let mut message = match error.instance_path().as_str() {
                "" => error.masked().to_string(),
                at => format!("{at}: {}", error.masked()),
            };
            if message.len() > MAX_MESSAGE_CHARS {
                let cut = (0..=MAX_MESSAGE_CHARS).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
                message.truncate(cut);
                message.push('…');
            }
            ValidationError::new(error.schema_path().as_str(), message)
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_input(format!("POST request body for '{path}' failed to validate schema"), errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_route_has_a_compiling_request_schema() {
        assert_eq!(VALIDATORS.len(), DOCUMENT["paths"].as_object().unwrap().len());
    }

    #[test]
    fn schema_errors_name_the_keyword_path_and_hide_the_value() {
        let error = validate_request_body("/v2/identities.getIdentity", &json!({"identity": ""})).unwrap_err();
        assert_eq!(error.errors[0].location, "/properties/identity/minLength");
        assert_eq!(error.detail, "POST request body for '/v2/identities.getIdentity' failed to validate schema");
        let long = "x".repeat(10_000);
        let error = validate_request_body("/v2/identities.createIdentity", &json!({"externalId": long})).unwrap_err();
        assert!(error.errors[0].message.len() <= MAX_MESSAGE_CHARS + 3, "{}", error.errors[0].message);
    }
}
