use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;
use crate::keys::two_nodes::TwoNodes;
use crate::keys::{COUNTED_WINDOW_MS, now_ms, set_last_refill, start_well_inside_a_counted_window};

crate::backend_tests!(
    verify_key_200_valid_shows_the_key_its_identity_and_its_checked_limits,
    verify_key_200_not_found_alike_for_every_key_it_may_not_tell_apart,
    verify_key_200_disabled_and_expired,
    verify_key_200_follows_every_change_to_the_key_its_identity_and_its_api_at_once,
    verify_key_200_two_keys_of_one_identity_share_its_limit,
    verify_key_200_a_named_limit_at_its_cost_and_an_inline_limit_on_the_key,
    verify_key_200_takes_from_all_limits_or_from_none,
    verify_key_200_concurrent_verifications_take_from_all_limits_or_from_none,
    verify_key_200_spends_credits_and_a_rate_limited_verification_spends_none,
    verify_key_200_for_64_concurrent_verifications_never_overspends_credits,
    verify_key_200_concurrent_first_takes_of_a_new_counter_all_fit,
    verify_key_200_refills_credits_once_a_refill_day_has_begun,
    verify_key_200_a_due_refill_keeps_more_than_its_amount_and_shows_before_it_is_written,
    ended_ratelimit_windows_are_purged_and_live_ones_kept,
    verify_key_400_for_a_permissions_query_an_unusable_inline_limit_and_the_schema,
    verify_key_401_for_an_unknown_root_key,
    verify_key_412_for_a_ratelimit_neither_the_key_nor_its_identity_has,
);

fn limit(name: &str, limit: i64, auto_apply: bool) -> Value {
    json!({"name": name, "limit": limit, "duration": COUNTED_WINDOW_MS, "autoApply": auto_apply})
}

async fn verify(server: &TestServer, root_key: &str, body: Value) -> Value {
    let response = server.call("keys.verifyKey", root_key, body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body["data"].clone()
}

async fn identity_with_limit(server: &TestServer, admin: &str, external_id: &str, ratelimits: Value) {
    let body = json!({"externalId": external_id, "meta": {"plan": "pro"}, "ratelimits": ratelimits});
    server.create_identity(admin, body).await;
}

async fn verify_key_200_valid_shows_the_key_its_identity_and_its_checked_limits(server: TestServer) {
    let admin = server.admin_key().await;
    identity_with_limit(&server, &admin, "user_1", json!([limit("requests", 10, true), limit("tokens", 5, true)]))
        .await;
    let body = json!({"name": "ci", "meta": {"k": 1}, "externalId": "user_1", "credits": {"remaining": 3},
        "expires": 4_102_444_800_000_i64, "ratelimits": [limit("tokens", 7, true)]});
    let (_, key_id, key) = api_and_key(&server, &admin, body).await;
    let data = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!((&data["valid"], &data["code"], &data["keyId"]), (&json!(true), &json!("VALID"), &json!(key_id)));
    assert_eq!((&data["name"], &data["meta"], &data["enabled"]), (&json!("ci"), &json!({"k": 1}), &json!(true)));
    assert_eq!((&data["credits"], &data["expires"]), (&json!(2), &json!(4_102_444_800_000_i64)));
    assert_eq!(
        (&data["identity"]["externalId"], &data["identity"]["meta"]),
        (&json!("user_1"), &json!({"plan": "pro"}))
    );
    let shown: Vec<&str> =
        data["identity"]["ratelimits"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(shown, ["requests"], "the identity's tokens limit is shadowed by the key's");
    let checked = data["ratelimits"].as_array().unwrap();
    assert_eq!(checked.len(), 2, "{checked:?}");
    let tokens = checked.iter().find(|l| l["name"] == "tokens").unwrap();
    assert_eq!((&tokens["limit"], &tokens["remaining"], &tokens["exceeded"]), (&json!(7), &json!(6), &json!(false)));
    assert!(tokens["id"].as_str().unwrap().starts_with("rl_") && tokens["autoApply"] == true);
    let reset = tokens["reset"].as_i64().unwrap();
    assert!(reset % COUNTED_WINDOW_MS == 0 && reset > 1_700_000_000_000, "the end of the window, in unix ms: {reset}");
}

/// Unknown, deleted, of a deleted API, of another workspace, or not the root key's to verify: the same
/// answer, with nothing but `valid` and `code`.
async fn verify_key_200_not_found_alike_for_every_key_it_may_not_tell_apart(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, deleted_id, deleted) = api_and_key(&server, &admin, json!({})).await;
    server.call("keys.deleteKey", &admin, json!({"keyId": deleted_id})).await;
    let (api_id, _, of_deleted_api) = api_and_key(&server, &admin, json!({})).await;
    server.call("apis.deleteApi", &admin, json!({"apiId": api_id})).await;
    let other = server.admin_key_in("other").await;
    let (_, _, others) = api_and_key(&server, &other, json!({})).await;
    let (live_api, _, live) = api_and_key(&server, &admin, json!({})).await;
    let reader = server.root_key(&["api.*.read_key", "api.api_other.verify_key"]).await;
    let not_found = json!({"valid": false, "code": "NOT_FOUND"});
    for (root_key, key) in
        [(&admin, "sk_unknown"), (&admin, &deleted), (&admin, &of_deleted_api), (&admin, &others), (&reader, &live)]
    {
        assert_eq!(verify(&server, root_key, json!({"key": key})).await, not_found, "{key}");
    }
    let granted = server.root_key(&[&format!("api.{live_api}.verify_key")]).await;
    assert_eq!(verify(&server, &granted, json!({"key": live})).await["code"], "VALID");
}

async fn verify_key_200_disabled_and_expired(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, _, disabled) = api_and_key(&server, &admin, json!({"enabled": false, "credits": {"remaining": 1}})).await;
    let data = verify(&server, &admin, json!({"key": disabled})).await;
    assert_eq!((&data["valid"], &data["code"], &data["enabled"]), (&json!(false), &json!("DISABLED"), &json!(false)));
    assert_eq!(data["credits"], 1, "a disabled key spends nothing");
    let unknown_limit = json!({"key": disabled, "ratelimits": [{"name": "nope"}]});
    assert_eq!(verify(&server, &admin, unknown_limit).await["code"], "DISABLED", "no 412 for a key no longer valid");
    let (_, key_id, expired) = api_and_key(&server, &admin, json!({"expires": 1_000})).await;
    let data = verify(&server, &admin, json!({"key": expired})).await;
    assert_eq!((&data["code"], &data["keyId"]), (&json!("EXPIRED"), &json!(key_id)));
}

/// A node keeps what it read of a key in memory: every change to the key, its identity or its API must void
/// it before the change is acknowledged. Each step verifies first, so the key is in memory when it changes.
async fn verify_key_200_follows_every_change_to_the_key_its_identity_and_its_api_at_once(server: TestServer) {
    start_well_inside_a_counted_window().await;
    let admin = server.admin_key().await;
    identity_with_limit(&server, &admin, "user_1", json!([limit("requests", 100, true)])).await;
    let (api_id, key_id, key) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    let change = |operation: &'static str, body: Value| {
        let (server, admin) = (&server, &admin);
        async move {
            let response = server.call(operation, admin, body).await;
            assert_eq!(response.status, 200, "{operation}: {}", response.body);
        }
    };
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "VALID");
    change("keys.updateKey", json!({"keyId": key_id, "enabled": false})).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "DISABLED");
    change("keys.updateKey", json!({"keyId": key_id, "enabled": true})).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "VALID");

    change("identities.updateIdentity", json!({"identity": "user_1", "meta": {"plan": "enterprise"}})).await;
    let data = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!(data["identity"]["meta"], json!({"plan": "enterprise"}), "{data}");
    change("identities.updateIdentity", json!({"identity": "user_1", "ratelimits": [limit("requests", 1, true)]}))
        .await;
    let data = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!((&data["code"], &data["ratelimits"][0]["limit"]), (&json!("RATE_LIMITED"), &json!(1)), "{data}");
    change("identities.deleteIdentity", json!({"identity": "user_1"})).await;
    let data = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!((&data["code"], data.get("identity")), (&json!("VALID"), None), "{data}");
    change("keys.updateKey", json!({"keyId": key_id, "externalId": "user_2"})).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["identity"]["externalId"], "user_2");

    change("keys.updateCredits", json!({"keyId": key_id, "operation": "set", "value": 0})).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "USAGE_EXCEEDED");
    change("keys.deleteKey", json!({"keyId": key_id})).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "NOT_FOUND");

    let (other_api, _, other) = api_and_key(&server, &admin, json!({})).await;
    assert_eq!(verify(&server, &admin, json!({"key": other})).await["code"], "VALID");
    change("apis.deleteApi", json!({"apiId": other_api})).await;
    assert_eq!(verify(&server, &admin, json!({"key": other})).await["code"], "NOT_FOUND");
    assert_ne!(api_id, other_api);
}

/// Identity limits are counted on the identity, so every key of it shares them.
async fn verify_key_200_two_keys_of_one_identity_share_its_limit(server: TestServer) {
    start_well_inside_a_counted_window().await;
    let admin = server.admin_key().await;
    identity_with_limit(&server, &admin, "user_1", json!([limit("requests", 3, true)])).await;
    let (_, _, first) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    let (_, _, second) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    let mut codes = Vec::new();
    for key in [&first, &second, &first, &second] {
        codes.push(verify(&server, &admin, json!({"key": key})).await["code"].clone());
    }
    assert_eq!(codes, [json!("VALID"), json!("VALID"), json!("VALID"), json!("RATE_LIMITED")]);
}

async fn verify_key_200_a_named_limit_at_its_cost_and_an_inline_limit_on_the_key(server: TestServer) {
    start_well_inside_a_counted_window().await;
    let admin = server.admin_key().await;
    let (_, _, key) = api_and_key(&server, &admin, json!({"ratelimits": [limit("tokens", 10, false)]})).await;
    let plain = verify(&server, &admin, json!({"key": key})).await;
    assert!(plain.get("ratelimits").is_none(), "a limit that does not apply itself is not checked unnamed");
    let named = verify(&server, &admin, json!({"key": key, "ratelimits": [{"name": "tokens", "cost": 8}]})).await;
    assert_eq!((&named["code"], &named["ratelimits"][0]["remaining"]), (&json!("VALID"), &json!(2)));
    let over = verify(&server, &admin, json!({"key": key, "ratelimits": [{"name": "tokens", "cost": 3}]})).await;
    assert_eq!((&over["code"], &over["ratelimits"][0]["exceeded"]), (&json!("RATE_LIMITED"), &json!(true)));
    assert_eq!(over["ratelimits"][0]["remaining"], 2, "a denial takes nothing");
    let beyond = verify(&server, &admin, json!({"key": key, "ratelimits": [{"name": "tokens", "cost": 11}]})).await;
    assert_eq!((&beyond["code"], &beyond["ratelimits"][0]["remaining"]), (&json!("RATE_LIMITED"), &json!(2)));
    let fits = verify(&server, &admin, json!({"key": key, "ratelimits": [{"name": "tokens", "cost": 2}]})).await;
    assert_eq!((&fits["code"], &fits["ratelimits"][0]["remaining"]), (&json!("VALID"), &json!(0)));
    let inline = json!({"key": key, "ratelimits": [{"name": "burst", "limit": 1, "duration": COUNTED_WINDOW_MS}]});
    let first = verify(&server, &admin, inline.clone()).await;
    assert_eq!((&first["code"], &first["ratelimits"][0]["id"]), (&json!("VALID"), &json!("")));
    assert_eq!(first["ratelimits"][0]["autoApply"], false);
    assert_eq!(verify(&server, &admin, inline).await["code"], "RATE_LIMITED");
}

/// Unkey's issue #1995: a verification denied by one limit must not spend the others.
async fn verify_key_200_takes_from_all_limits_or_from_none(server: TestServer) {
    start_well_inside_a_counted_window().await;
    let admin = server.admin_key().await;
    let limits = json!([limit("second", 2, true), limit("month", 100, true)]);
    let (_, _, key) = api_and_key(&server, &admin, json!({"ratelimits": limits})).await;
    for _ in 0..2 {
        assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "VALID");
    }
    for _ in 0..3 {
        let denied = verify(&server, &admin, json!({"key": key})).await;
        assert_eq!(denied["code"], "RATE_LIMITED");
        let month = denied["ratelimits"].as_array().unwrap().iter().find(|l| l["name"] == "month").unwrap().clone();
        assert_eq!((&month["remaining"], &month["exceeded"]), (&json!(98), &json!(false)), "month untouched");
    }
}

/// Concurrent verifications of one key go through PostgreSQL in combined transactions: each must still take
/// from both limits or from neither.
async fn verify_key_200_concurrent_verifications_take_from_all_limits_or_from_none(server: TestServer) {
    start_well_inside_a_counted_window().await;
    let admin = server.admin_key().await;
    let limits = json!([limit("wide", 5, true), limit("narrow", 3, true)]);
    let (_, _, key) = api_and_key(&server, &admin, json!({"ratelimits": limits})).await;
    let outcomes = join_all((0..30).map(|_| verify(&server, &admin, json!({"key": key})))).await;
    let passed = outcomes.iter().filter(|data| data["code"] == "VALID").count();
    assert_eq!(passed, 3, "{outcomes:?}");
    let wide_left = |data: &Value| {
        let wide = data["ratelimits"].as_array().expect("checked").iter().find(|l| l["name"] == "wide").cloned();
        wide.expect("wide")["remaining"].as_i64().expect("remaining")
    };
    let least_left = outcomes.iter().map(wide_left).min();
    assert_eq!(least_left, Some(2), "denied verifications took nothing from the wide limit: {outcomes:?}");
}

async fn verify_key_200_spends_credits_and_a_rate_limited_verification_spends_none(server: TestServer) {
    start_well_inside_a_counted_window().await;
    let admin = server.admin_key().await;
    let body = json!({"credits": {"remaining": 5}, "ratelimits": [limit("requests", 3, true)]});
    let (_, key_id, key) = api_and_key(&server, &admin, body).await;
    let spent = verify(&server, &admin, json!({"key": key, "credits": {"cost": 4}})).await;
    assert_eq!((&spent["code"], &spent["credits"]), (&json!("VALID"), &json!(1)));
    let exceeded = verify(&server, &admin, json!({"key": key, "credits": {"cost": 2}})).await;
    assert_eq!((&exceeded["code"], &exceeded["credits"]), (&json!("USAGE_EXCEEDED"), &json!(1)));
    let free = verify(&server, &admin, json!({"key": key, "credits": {"cost": 0}})).await;
    assert_eq!((&free["code"], &free["credits"]), (&json!("VALID"), &json!(1)), "a cost of 0 passes with 1 left");
    let limited = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!((&limited["code"], &limited["credits"]), (&json!("RATE_LIMITED"), &json!(1)), "all 3 were used");
    let stored = server.call("keys.getKey", &admin, json!({"keyId": key_id})).await;
    assert_eq!(stored.body["data"]["credits"]["remaining"], 1, "the rate-limited verification spent nothing");
}

async fn verify_key_200_for_64_concurrent_verifications_never_overspends_credits(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, _, key) = api_and_key(&server, &admin, json!({"credits": {"remaining": 10}})).await;
    let verifications = (0..64).map(|_| server.call("keys.verifyKey", &admin, json!({"key": key})));
    let codes: Vec<Value> = join_all(verifications).await.into_iter().map(|r| r.body["data"]["code"].clone()).collect();
    assert_eq!(codes.iter().filter(|code| **code == "VALID").count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|code| **code == "USAGE_EXCEEDED").count(), 54, "{codes:?}");
}

/// The first takes of a counter race to make it (PostgreSQL: each statement commits on its own): none of
/// them may be refused while the limit has room.
async fn verify_key_200_concurrent_first_takes_of_a_new_counter_all_fit(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, _, key) = api_and_key(&server, &admin, json!({})).await;
    let inline = json!({"key": key, "ratelimits": [{"name": "burst", "limit": 1000, "duration": 60_000}]});
    let codes = join_all((0..200).map(|_| verify(&server, &admin, inline.clone()))).await;
    assert!(codes.iter().all(|data| data["code"] == "VALID"), "{codes:?}");
    let data = verify(&server, &admin, inline).await;
    // Windows are aligned to the clock: on a slow run the takes can straddle a minute, and only those in the
    // last verification's window count against it.
    let window = &data["ratelimits"][0]["reset"];
    let taken_in_window = codes.iter().filter(|earlier| &earlier["ratelimits"][0]["reset"] == window).count() + 1;
    assert_eq!(data["ratelimits"][0]["remaining"], 1000 - taken_in_window, "{data}");
}

async fn verify_key_200_refills_credits_once_a_refill_day_has_begun(server: TestServer) {
    let admin = server.admin_key().await;
    let credits = json!({"remaining": 0, "refill": {"interval": "daily", "amount": 5}});
    let (_, key_id, key) = api_and_key(&server, &admin, json!({"credits": credits})).await;
    // Refilled in an hour, as far as the key knows: nothing is due now, whatever the time of day.
    set_last_refill(&server, &key_id, now_ms() + 60 * 60 * 1000).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["code"], "USAGE_EXCEEDED", "none due");
    let yesterday = now_ms() - 24 * 60 * 60 * 1000;
    set_last_refill(&server, &key_id, yesterday).await;
    let refilled = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!((&refilled["code"], &refilled["credits"]), (&json!("VALID"), &json!(4)), "topped up to 5, 1 spent");
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["credits"], 3, "once a day");
    // A change of credits applies to what the key holds once the refill due is made.
    set_last_refill(&server, &key_id, yesterday).await;
    let increment = json!({"keyId": key_id, "operation": "increment", "value": 10});
    let incremented = server.call("keys.updateCredits", &admin, increment).await;
    assert_eq!(incremented.body["data"]["remaining"], 15, "refilled to 5, then 10 more: {}", incremented.body);
    // Credits set by an update count as refilled then.
    set_last_refill(&server, &key_id, yesterday).await;
    let set = json!({"keyId": key_id, "operation": "set", "value": 1});
    assert_eq!(server.call("keys.updateCredits", &admin, set).await.status, 200);
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["credits"], 0, "the set value, not a refill");
}

async fn verify_key_200_a_due_refill_keeps_more_than_its_amount_and_shows_before_it_is_written(server: TestServer) {
    let admin = server.admin_key().await;
    let refill = json!({"interval": "daily", "amount": 5});
    let (_, key_id, key) =
        api_and_key(&server, &admin, json!({"credits": {"remaining": 1000, "refill": refill}})).await;
    let yesterday = now_ms() - 24 * 60 * 60 * 1000;
    set_last_refill(&server, &key_id, yesterday).await;
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["credits"], 999, "1000 is above the amount: kept");
    let (_, key_id, key) = api_and_key(&server, &admin, json!({"credits": {"remaining": 0, "refill": refill}})).await;
    set_last_refill(&server, &key_id, yesterday).await;
    // Refilled as a refill job would have by now, before a spend writes it.
    let got = server.call("keys.getKey", &admin, json!({"keyId": key_id})).await;
    assert_eq!(got.body["data"]["credits"], json!({"remaining": 5, "refill": refill}), "{}", got.body);
    let no_spend = verify(&server, &admin, json!({"key": key, "credits": {"cost": 0}})).await;
    assert_eq!((&no_spend["code"], &no_spend["credits"]), (&json!("VALID"), &json!(5)), "a cost of 0 spends nothing");
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["credits"], 4, "the refill, then a spend");
}

async fn ended_ratelimit_windows_are_purged_and_live_ones_kept(server: TestServer) {
    let admin = server.admin_key().await;
    let monthly = json!({"name": "monthly", "limit": 5, "duration": 2_592_000_000_i64, "autoApply": true});
    let (_, _, key) = api_and_key(&server, &admin, json!({"ratelimits": [monthly]})).await;
    let burst = json!({"key": key, "ratelimits": [{"name": "burst", "limit": 1, "duration": 1000}]});
    assert_eq!(verify(&server, &admin, burst).await["code"], "VALID");
    let now = now_ms();
    assert_eq!(server.store.purge_ended_ratelimit_counters(now).await.expect("purge"), 0, "nothing ended a minute ago");
    let later = now + sigil::store::RATELIMIT_COUNTERS_KEPT_AFTER_THEIR_END_MS + 2_000;
    assert_eq!(server.store.purge_ended_ratelimit_counters(later).await.expect("purge"), 1, "the burst window");
    let monthly = verify(&server, &admin, json!({"key": key})).await;
    assert_eq!(monthly["ratelimits"][0]["remaining"], 3, "the monthly window was kept: 2 taken of 5");
}

async fn verify_key_400_for_a_permissions_query_an_unusable_inline_limit_and_the_schema(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, _, key) = api_and_key(&server, &admin, json!({"credits": {"remaining": 5}})).await;
    for body in [
        json!({"key": key, "permissions": "documents.read"}),
        json!({"key": key, "ratelimits": [{"name": "burst", "limit": 0, "duration": 1000}]}),
        json!({"key": key, "ratelimits": [{"name": "burst", "limit": 5, "duration": 10}]}),
        json!({"key": key, "apiId": "api_1"}),
        json!({"key": ""}),
        json!({"key": key, "credits": {"cost": -1}}),
    ] {
        let response = server.call("keys.verifyKey", &admin, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
    }
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["credits"], 4, "no 400 spent a credit");
}

async fn verify_key_401_for_an_unknown_root_key(server: TestServer) {
    let response = server.call("keys.verifyKey", "not_a_key", json!({"key": "sk_anything"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

async fn verify_key_412_for_a_ratelimit_neither_the_key_nor_its_identity_has(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, key) = api_and_key(&server, &admin, json!({"credits": {"remaining": 5}})).await;
    let response = server.call("keys.verifyKey", &admin, json!({"key": key, "ratelimits": [{"name": "tokens"}]})).await;
    response.assert_error(412, "unkey/application/precondition_failed");
    assert_eq!(
        response.detail(),
        format!(
            "ratelimit 'tokens' was requested but does not exist for key '{key_id}' and there is no identity connected."
        )
    );
    assert_eq!(verify(&server, &admin, json!({"key": key})).await["credits"], 4, "the 412 spent nothing");
}

/// Several PostgreSQL nodes count one identity's limit together, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_give_exactly_an_identitys_limit_of_valid_verifications() {
    let Some(nodes) = TwoNodes::start(&[]).await else { return };
    nodes.give_exactly_an_identitys_limit_of_valid_verifications().await;
}

/// Each node combines its concurrent spends of one key into one write; the key's row orders the nodes'
/// writes, so every verification that passed took its cost exactly once and none took what was not left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_spend_each_passing_cost_once_and_never_more_than_a_key_has() {
    let Some(nodes) = TwoNodes::start(&[]).await else { return };
    let api = nodes.call(&nodes.first, "apis.createApi", json!({"name": "production"})).await;
    let body = json!({"apiId": api["data"]["apiId"], "credits": {"remaining": 100}});
    let created = nodes.call(&nodes.first, "keys.createKey", body).await;
    let (key_id, key) = (&created["data"]["keyId"], &created["data"]["key"]);
    let nodes = &nodes;
    let verifications = (0..200_i64).map(|n| {
        let node = if n % 2 == 0 { &nodes.first } else { &nodes.second };
        let cost = 1 + n % 3;
        let body = json!({"key": key, "credits": {"cost": cost}});
        async move { (cost, nodes.call(node, "keys.verifyKey", body).await["data"]["code"].clone()) }
    });
    let outcomes = join_all(verifications).await;
    let spent: i64 = outcomes.iter().filter(|(_, code)| code == "VALID").map(|(cost, _)| cost).sum();
    assert!(outcomes.iter().all(|(_, code)| code == "VALID" || code == "USAGE_EXCEEDED"), "{outcomes:?}");
    let stored = nodes.call(&nodes.second, "keys.getKey", json!({"keyId": key_id})).await;
    let left = stored["data"]["credits"]["remaining"].as_i64().expect("remaining");
    assert_eq!(spent + left, 100, "{left} left after {spent} spent: {outcomes:?}");
    assert!(left < 3, "{left} left, yet costs of 1 to 3 were refused");
}

/// What a PostgreSQL node read of a key is void once another node changes it, within the change bus's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_on_one_postgres_node_verifies_accordingly_on_the_other() {
    let Some(nodes) = TwoNodes::start(&[]).await else { return };
    let (key_id, api_key) = nodes.keys_of_one_identity(json!([]), 1).await.remove(0);
    let verified_on_second = |expected: &'static str| {
        let (nodes, api_key) = (&nodes, &api_key);
        async move {
            let started = tokio::time::Instant::now();
            loop {
                let data = nodes.call(&nodes.second, "keys.verifyKey", json!({"key": api_key})).await["data"].clone();
                if data["code"] == expected {
                    return data;
                }
                assert!(started.elapsed() < crate::multi_node::HEARD_WITHIN, "still {data}, not {expected}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let change = |operation: &'static str, body: Value| nodes.call(&nodes.first, operation, body);
    verified_on_second("VALID").await;
    change("keys.updateKey", json!({"keyId": key_id, "enabled": false})).await;
    verified_on_second("DISABLED").await;
    change("keys.updateKey", json!({"keyId": key_id, "enabled": true})).await;
    verified_on_second("VALID").await;
    change("identities.updateIdentity", json!({"identity": "user_1", "meta": {"plan": "pro"}})).await;
    let started = tokio::time::Instant::now();
    while verified_on_second("VALID").await["identity"]["meta"] != json!({"plan": "pro"}) {
        assert!(started.elapsed() < crate::multi_node::HEARD_WITHIN, "the identity's change was not heard");
    }
    change("keys.deleteKey", json!({"keyId": key_id})).await;
    verified_on_second("NOT_FOUND").await;
}
