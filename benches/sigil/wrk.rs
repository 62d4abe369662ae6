//! The headline figures measured again by `wrk -t1 -c<concurrency> --latency`, a client written in C on one
//! thread, when wrk is installed (Debian's package `wrk`). The benchmark's own client is reqwest on one
//! thread; per request it costs this 2-core machine about as much CPU as the server it measures, so its rates
//! understate both the floor and Sigil, and wrk's show how much.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

/// One request wrk sends over and over.
pub struct WrkTarget<'a> {
    pub name: &'static str,
    pub url: String,
    pub bearer: Option<&'a str>,
    /// A fixed JSON body, or, with `numbered`, one whose `{n}` is replaced by a counter that goes from 0 to
    /// `numbered` - 1 and starts again (`u64::MAX`: no request repeats a number).
    pub body: String,
    pub numbered: Option<u64>,
}

#[derive(Serialize)]
pub struct WrkResult {
    pub operation: &'static str,
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses whose status was not 2xx or 3xx (every one, for a 409 measured on purpose).
    pub non_2xx: u64,
    pub socket_errors: u64,
    /// Filled in by the caller, which knows the server's process.
    pub server_cpu_us_per_request: Option<f64>,
}

/// None, with a note, when wrk is missing or its output cannot be read.
pub async fn measure(target: &WrkTarget<'_>, concurrency: usize, duration: Duration, dir: &Path) -> Option<WrkResult> {
    let script = dir.join(format!("{}.lua", target.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
    std::fs::write(&script, lua(target)).ok()?;
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{concurrency}"), &format!("-d{}s", duration.as_secs().max(1)), "--latency", "-s"])
        .arg(&script)
        .arg(&target.url)
        .output()
        .await
        .map_err(|error| eprintln!("wrk checks left out: {error}"))
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed = parse(target.name, &text);
    if parsed.is_none() {
        eprintln!(
            "wrk's output for {} could not be read:\n{text}{}",
            target.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parsed
}

fn lua(target: &WrkTarget<'_>) -> String {
    let mut script = String::from("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n");
    if let Some(bearer) = target.bearer {
        script.push_str(&format!("wrk.headers[\"Authorization\"] = \"Bearer {bearer}\"\n"));
    }
    let body = lua_string(&target.body);
    if let Some(numbers) = target.numbered {
        script.push_str(&format!(
            "local n = -1\nrequest = function()\n  n = (n + 1) % {numbers}\n  local body = string.gsub({body}, \
             \"{{n}}\", string.format(\"%d\", n))\n  return wrk.format(nil, nil, nil, body)\nend\n"
        ));
    } else {
        script.push_str(&format!("wrk.body = {body}\n"));
    }
    script
}

/// A Lua long string holds the JSON as it is, quotes and backslashes included.
fn lua_string(text: &str) -> String {
    format!("[==[{text}]==]")
}

fn parse(operation: &'static str, output: &str) -> Option<WrkResult> {
    let value_after = |label: &str| {
        output.lines().find_map(|line| line.trim().strip_prefix(label).map(|rest| rest.trim().to_owned()))
    };
    let requests_per_second = value_after("Requests/sec:")?.parse().ok()?;
    // "  95143 requests in 3.00s, 23.41MB read"
    let requests = output
        .lines()
        .find_map(|line| line.trim().strip_suffix(" read")?.split(" requests in ").next()?.parse().ok())?;
    let p50_ms = milliseconds(&value_after("50%")?)?;
    let p99_ms = milliseconds(&value_after("99%")?)?;
    let non_2xx: u64 = value_after("Non-2xx or 3xx responses:").and_then(|n| n.parse().ok()).unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors: u64 = value_after("Socket errors:").map_or(0, |errors| {
        errors.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum()
    });
    Some(WrkResult {
        operation,
        requests,
        requests_per_second,
        p50_ms,
        p99_ms,
        non_2xx,
        socket_errors,
        server_cpu_us_per_request: None,
    })
}

/// wrk prints latencies as "696.00us", "2.16ms" or "1.02s".
fn milliseconds(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(us) = value.strip_suffix("us") {
        (us, 0.001)
    } else if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1000.0)
    } else {
        return None;
    };
    Some(number.parse::<f64>().ok()? * scale)
}
