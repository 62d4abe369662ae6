use serde_json::{Value, json};

use crate::harness::TestServer;

crate::backend_tests!(
    lists_in_creation_order_across_pages,
    search_is_a_case_insensitive_literal_substring,
    deleted_identities_and_other_workspaces_are_excluded,
    a_per_identity_grant_lists_only_its_identities,
    a_per_identity_grant_with_a_targeted_search_lists_that_identity,
    a_nul_in_search_or_cursor_is_just_a_character,
    ratelimits_are_listed_in_name_order_whatever_order_they_were_written_in,
    a_meta_nested_as_deep_as_a_create_accepts_is_listed,
    a_meta_is_listed_byte_for_byte_as_it_is_got,
    a_page_of_large_metas_ends_at_its_byte_bound_and_the_cursor_goes_on,
);

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

async fn lists_in_creation_order_across_pages(server: TestServer) {
    let key = server.admin_key().await;
    let mut created = Vec::new();
    for n in 0..15 {
        let mut body = json!({"externalId": format!("user_{n:02}")});
        if n % 2 == 0 {
            body["ratelimits"] = json!([{"name": "api_calls", "limit": 100, "duration": 60000, "autoApply": false}]);
        }
        created.push(server.create_identity(&key, body).await);
    }
    let first = server.call("identities.listIdentities", &key, json!({"limit": 7})).await;
    assert_eq!(first.status, 200);
    assert_eq!(ids(&first.body), created[..7]);
    assert_eq!(first.body["pagination"], json!({"hasMore": true, "cursor": created[7]}));
    assert_eq!(first.body["data"][0]["ratelimits"][0]["name"], "api_calls");
    assert!(first.body["data"][1].get("ratelimits").is_none(), "empty ratelimits are omitted");

    let second = server.call("identities.listIdentities", &key, json!({"limit": 7, "cursor": created[7]})).await;
    assert_eq!(ids(&second.body), created[7..14]);
    let last = server.call("identities.listIdentities", &key, json!({"limit": 7, "cursor": created[14]})).await;
    assert_eq!(ids(&last.body), created[14..]);
    assert_eq!(last.body["pagination"], json!({"hasMore": false}), "no cursor on the last page");

    let integral_float = server.call("identities.listIdentities", &key, json!({"limit": 7.0})).await;
    assert_eq!(ids(&integral_float.body), created[..7], "7.0 is an integer to JSON Schema");

    let default_limit = server.call("identities.listIdentities", &key, json!({})).await;
    assert_eq!(ids(&default_limit.body), created);
    let garbage_cursor = server.call("identities.listIdentities", &key, json!({"cursor": "zzz"})).await;
    assert_eq!(garbage_cursor.status, 200);
    assert_eq!(garbage_cursor.body["data"], json!([]));
}

async fn search_is_a_case_insensitive_literal_substring(server: TestServer) {
    let key = server.admin_key().await;
    let alice = server.create_identity(&key, json!({"externalId": "acme_alice"})).await;
    let bob = server.create_identity(&key, json!({"externalId": "acme_bob"})).await;
    let discount = server.create_identity(&key, json!({"externalId": "discount_100_user"})).await;
    let search = |term: &str| {
        let (server, key, term) = (&server, &key, term.to_owned());
        async move { ids(&server.call("identities.listIdentities", key, json!({"search": term})).await.body) }
    };
    assert_eq!(search("alice").await, [alice.as_str()]);
    assert_eq!(search("ACME_ALICE").await, [alice.as_str()]);
    assert_eq!(search("Acme").await, [alice.clone(), bob.clone()]);
    assert_eq!(search(&bob[bob.len() - 10..].to_lowercase()).await, [bob.as_str()], "matches the id too");
    assert_eq!(search("b_b").await, Vec::<String>::new(), "_ is literal");
    assert_eq!(search("100%").await, Vec::<String>::new(), "% is literal");
    assert_eq!(search("0_u").await, [discount.as_str()]);
    assert_eq!(search("nobody").await, Vec::<String>::new());
    assert_eq!(search("   ").await, [alice, bob, discount], "blank search lists all");
}

async fn deleted_identities_and_other_workspaces_are_excluded(server: TestServer) {
    let key = server.admin_key().await;
    let kept = server.create_identity(&key, json!({"externalId": "kept"})).await;
    let gone = server.create_identity(&key, json!({"externalId": "gone"})).await;
    server.call("identities.deleteIdentity", &key, json!({"identity": gone})).await;
    let stranger = server.admin_key_in("stranger").await;
    server.create_identity(&stranger, json!({"externalId": "theirs"})).await;
    assert_eq!(server.list_all_ids(&key).await, [kept]);
}

/// A key holding grants for single identities lists just those, as if the others were not there.
async fn a_per_identity_grant_lists_only_its_identities(server: TestServer) {
    let admin = server.admin_key().await;
    let mine = server.create_identity(&admin, json!({"externalId": "mine"})).await;
    server.create_identity(&admin, json!({"externalId": "theirs"})).await;
    let reader = server.root_key(&[&format!("identity.{mine}.read_identity")]).await;
    let response = server.call("identities.listIdentities", &reader, json!({})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), [mine.as_str()]);
    let elsewhere = server.call("identities.listIdentities", &reader, json!({"search": "theirs"})).await;
    assert_eq!(elsewhere.status, 200);
    assert!(ids(&elsewhere.body).is_empty(), "a search shows nothing the key may not read");
    assert_eq!(elsewhere.body["pagination"], json!({"hasMore": false}), "nor does its cursor");
    let first = server.call("identities.listIdentities", &reader, json!({"limit": 1})).await;
    assert_eq!(ids(&first.body), [mine.as_str()]);
    assert_eq!(first.body["pagination"], json!({"hasMore": false}), "the cursor names no identity it may not read");
}

async fn a_per_identity_grant_with_a_targeted_search_lists_that_identity(server: TestServer) {
    let admin = server.admin_key().await;
    server.create_identity(&admin, json!({"externalId": "test_user_dev"})).await;
    let prod = server.create_identity(&admin, json!({"externalId": "test_user_prod"})).await;
    let reader = server.root_key(&[&format!("identity.{prod}.read_identity")]).await;
    let response = server.call("identities.listIdentities", &reader, json!({"search": "test_user_prod"})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), [prod]);
}

/// No id or externalId holds a NUL (and PostgreSQL text cannot): a search with one matches nothing, and a
/// cursor with one still bounds the page where its characters say.
async fn a_nul_in_search_or_cursor_is_just_a_character(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.create_identity(&key, json!({"externalId": "aaa"})).await;
    let second = server.create_identity(&key, json!({"externalId": "aab"})).await;
    let search = server.call("identities.listIdentities", &key, json!({"search": "a\u{0}b"})).await;
    assert_eq!(search.status, 200, "{}", search.body);
    assert!(ids(&search.body).is_empty());
    let just_after_first = format!("{first}\u{0}");
    let page = server.call("identities.listIdentities", &key, json!({"cursor": just_after_first})).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(ids(&page.body), [second.as_str()]);
    let whole = server.call("identities.listIdentities", &key, json!({"cursor": "\u{0}"})).await;
    assert_eq!(ids(&whole.body), [first, second]);
}

/// Ratelimits are read back in the order they are stored in, so a write must store them in name order
/// (`domain::identity::replace_ratelimits`).
async fn ratelimits_are_listed_in_name_order_whatever_order_they_were_written_in(server: TestServer) {
    let key = server.admin_key().await;
    let limit = |name: &str| json!({"name": name, "limit": 10, "duration": 1000, "autoApply": false});
    let names = ["zeta", "mid", "alpha"];
    for n in 0..3 {
        let ratelimits: Vec<Value> = names.iter().map(|name| limit(name)).collect();
        server.create_identity(&key, json!({"externalId": format!("user_{n}"), "ratelimits": ratelimits})).await;
    }
    let update = json!({"identity": "user_1", "ratelimits": [limit("omega"), limit("beta")]});
    assert_eq!(server.call("identities.updateIdentity", &key, update).await.status, 200);

    let page = server.call("identities.listIdentities", &key, json!({})).await;
    let listed: Vec<Vec<&str>> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|identity| {
            identity["ratelimits"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect()
        })
        .collect();
    assert_eq!(listed, [vec!["alpha", "mid", "zeta"], vec!["beta", "omega"], vec!["alpha", "mid", "zeta"]]);
    let got = server.call("identities.getIdentity", &key, json!({"identity": "user_1"})).await;
    assert_eq!(got.body["data"]["ratelimits"][0]["name"], "beta");
}

/// The list page must not nest meta deeper than a create may: the JSON parser has a depth limit, and a
/// page that wrapped each meta in arrays of its own once failed whole for one deep meta.
async fn a_meta_nested_as_deep_as_a_create_accepts_is_listed(server: TestServer) {
    let key = server.admin_key().await;
    let nested = |depth: usize| (0..depth).fold(json!(true), |inner, _| json!({"d": inner}));
    let mut depth = 200;
    let deepest = loop {
        let body = json!({"externalId": format!("deep_{depth}"), "meta": nested(depth)});
        let response = server.call("identities.createIdentity", &key, body).await;
        if response.status == 200 {
            break depth;
        }
        assert_eq!(response.status, 400, "{}", response.body);
        depth -= 1;
    };
    assert!(deepest > 100, "creates accept meta nested {deepest} deep");
    // Read as text: wrapped in the page, the meta is too deep for serde_json here too.
    let page = server.post("identities.listIdentities").bearer_auth(&key).json(&json!({})).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    let meta = serde_json::to_string(&nested(deepest)).unwrap();
    assert!(text.contains(&format!(r#""externalId":"deep_{deepest}","meta":{meta}"#)), "{text}");
}

/// With meta up to 1 MiB each, a page of 100 could cost hundreds of MB: a page ends once its identities hold
/// `PAGE_BYTES`, and its cursor leads on to the rest, each identity listed exactly once.
async fn a_page_of_large_metas_ends_at_its_byte_bound_and_the_cursor_goes_on(server: TestServer) {
    let key = server.admin_key().await;
    let large = "x".repeat(900 * 1024);
    let mut created = Vec::new();
    for n in 0..8 {
        created.push(
            server.create_identity(&key, json!({"externalId": format!("large_{n}"), "meta": {"blob": large}})).await,
        );
    }
    let bound = usize::try_from(sigil::domain::identity::PAGE_BYTES).unwrap();
    // A key granted every identity by id lists them its own way (one by one), within the same bound.
    let grants: Vec<String> = created.iter().map(|id| format!("identity.{id}.read_identity")).collect();
    let granted = server.root_key(&grants.iter().map(String::as_str).collect::<Vec<_>>()).await;
    for key in [&key, &granted] {
        let (mut listed, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let mut body = json!({"limit": 100});
            if let Some(cursor) = &cursor {
                body["cursor"] = json!(cursor);
            }
            let page = server.call("identities.listIdentities", key, body).await;
            assert_eq!(page.status, 200, "{}", page.body);
            assert!(page.text.len() < bound + 2 * large.len(), "a page of {} bytes", page.text.len());
            pages += 1;
            listed.extend(ids(&page.body));
            match page.body["pagination"]["cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(listed, created, "every identity once, in order");
        assert!(pages >= 2, "eight identities of 900 KiB cannot fit one page");
    }
}

/// A substring search cannot use an index: each page looks at `--search-scan-rows` identities at most, and
/// one that found too few there ends early with a cursor to where the next look starts.
async fn a_search_looks_at_a_bounded_number_of_identities_per_page(backend: crate::harness::Backend) {
    let limits = sigil::Limits { search_scan_rows: 10, ..sigil::Limits::default() };
    let options = crate::harness::Options { limits, ..crate::harness::Options::default() };
    let Some(server) = TestServer::start_with(backend, options).await else { return };
    let key = server.admin_key().await;
    let mut created = Vec::new();
    for n in 0..30 {
        created.push(server.create_identity(&key, json!({"externalId": format!("user_{n:02}")})).await);
    }
    let (mut found, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut body = json!({"search": "user_25"});
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let page = server.call("identities.listIdentities", &key, body).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        found.extend(ids(&page.body));
        match page.body["pagination"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(found, [created[25].as_str()], "the match, once");
    assert!(pages >= 3, "30 identities, 10 looked at per page: {pages} pages");
    let everything = server.call("identities.listIdentities", &key, json!({"search": "user", "limit": 100})).await;
    assert_eq!(ids(&everything.body), created[..10], "the first ten looked at");
    assert_eq!(everything.body["pagination"]["cursor"], json!(created[10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_search_looks_at_a_bounded_number_of_identities_per_page() {
    a_search_looks_at_a_bounded_number_of_identities_per_page(crate::harness::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_search_looks_at_a_bounded_number_of_identities_per_page() {
    a_search_looks_at_a_bounded_number_of_identities_per_page(crate::harness::Backend::Postgres).await;
}

/// A list page's metas come through another path than getIdentity's (SQLite builds the page as one JSON
/// document, with each meta in it as a string): what a client reads must be the text getIdentity gives,
/// escapes, big integers and number forms included.
async fn a_meta_is_listed_byte_for_byte_as_it_is_got(server: TestServer) {
    let key = server.admin_key().await;
    let meta = r#"{"s":"quote \" backslash \\ nl \n ctl \u0001 é 🦀 \u00e9","i":18446744073709551615,
        "n":-9223372036854775808,"f":1.0,"e":1e100,"z":-0.0,"small":0.1,"deep":{"a":[1,{"b":null,"t":true}]},
        "empty":{},"arr":[]}"#;
    let body = format!(r#"{{"externalId":"tricky","meta":{meta}}}"#);
    let request = server.post("identities.createIdentity").bearer_auth(&key).header("Content-Type", "application/json");
    let created = server.send(request.body(body)).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let meta_text = |text: &str| {
        let start = text.find(r#""externalId":"tricky","meta":"#).expect("the identity") + 29;
        let end = text[start..].find(r#","arr":[]}"#).expect("its meta's end") + start + 10;
        text[start..end].to_owned()
    };
    let got = server.call("identities.getIdentity", &key, json!({"identity": "tricky"})).await;
    let listed = server.call("identities.listIdentities", &key, json!({})).await;
    assert_eq!(meta_text(&listed.text), meta_text(&got.text));
    assert!(meta_text(&got.text).contains("18446744073709551615"), "{}", got.text);
}
