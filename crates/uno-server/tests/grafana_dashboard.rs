//! The Grafana dashboard (`config/grafana/dashboards/uno.json`) graphs only
//! what uno exports: every metric named in a panel query or a template
//! variable is a family on the real app's `/metrics` page (after traffic, so
//! histograms have samples), and the provisioning files point at the paths
//! and datasource that `docker/compose.yaml` sets up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{TestApp, chat_body, test_config};
use serde_json::{Value, json};
use uno_testkit::{MockUpstream, TestDatabase};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("config/grafana/dashboards/uno.json")).expect("dashboard is JSON")
}

/// Every PromQL query of the dashboard, with where it is: each panel
/// target's `expr` (panels nested in rows included) and each query
/// variable's query (Grafana's `label_values(metric, label)` and
/// `query_result(expr)` forms reduced to their PromQL).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                let at = format!(
                    "panel {title:?} target {}",
                    target["refId"].as_str().unwrap_or("?")
                );
                out.push((at, expr.to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            other => other["query"].as_str().unwrap_or_default().to_owned(),
        };
        if let Some(expr) = variable_promql(&query) {
            out.push((format!("variable ${name}"), expr));
        }
    }
    out
}

/// The PromQL inside a Grafana Prometheus variable query, if it has any.
fn variable_promql(query: &str) -> Option<String> {
    let query = query.trim();
    let inner = |prefix: &str| {
        query
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(args) = inner("label_values(") {
        // label_values(label) has no metric; label_values(selector, label)
        // names one in its selector.
        return args
            .rsplit_once(',')
            .map(|(selector, _label)| selector.trim().to_owned());
    }
    if let Some(expr) = inner("query_result(") {
        return Some(expr.to_owned());
    }
    if inner("label_names(").is_some() || inner("metrics(").is_some() {
        return None;
    }
    Some(query.to_owned())
}

/// Words PromQL gives a meaning; a name among them followed by `(` is a
/// function or aggregation, never a metric.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, keywords, label names (inside `{…}` or a `by (…)` list),
/// durations or Grafana variables; plus `{__name__="…"}` selectors.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' && quote != '`' {
                2
            } else {
                1
            };
        }
        j + 1
    };
    // The index after the bracket closing the one at `i`, strings skipped.
    let skip_group = |i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = i;
        while j < chars.len() {
            match chars[j] {
                '"' | '\'' | '`' => {
                    j = skip_string(j);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {open}{close} in {expr:?}");
    };
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '{' {
            let end = skip_group(i, '{', '}');
            let matchers: String = chars[i + 1..end - 1].iter().collect();
            names.extend(name_matcher(&matchers, expr));
            i = end;
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(i, '{', '}');
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers (0.95, 1e-9, 0x1F) and durations (5m).
            let start = i;
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign = (d == '-' || d == '+')
                    && matches!(chars[i - 1], 'e' | 'E')
                    && !chars[start..i].contains(&'x');
                if d.is_ascii_alphanumeric() || d == '.' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let after = next_non_space(i);
            let next = chars.get(after).copied();
            if GROUPING.contains(&lower.as_str()) {
                // by (label, …): label names, not metrics.
                if next == Some('(') {
                    i = skip_group(after, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) || next == Some('(') {
                // A keyword, or a function / aggregation call.
            } else if AGGREGATIONS.contains(&lower.as_str())
                && chars[after..]
                    .iter()
                    .collect::<String>()
                    .split(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_')
                    .next()
                    .is_some_and(|w| w == "by" || w == "without")
            {
                // `sum by (…) (…)`.
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// `__name__="x"` inside a selector's braces.
fn name_matcher(matchers: &str, expr: &str) -> Option<String> {
    let at = matchers.find("__name__")?;
    let rest = matchers[at + "__name__".len()..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .filter(|r| !r.starts_with('~'))
        .unwrap_or_else(|| panic!("{expr:?}: name the metric plainly, not by a __name__ regex"));
    let rest = rest.trim_start();
    let quote = rest.chars().next()?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_owned())
}

/// `# TYPE` lines of an exposition: family → type.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The family a sample name belongs to: itself, or a histogram's (or
/// summary's) `_bucket` / `_sum` / `_count` series, or a counter's `_total`
/// when the family is declared without it.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, String>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    let kind_of = |base: &str| families.get(base).map(String::as_str);
    for (suffix, kinds) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
        ("_total", &["counter"][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && kind_of(base).is_some_and(|k| kinds.contains(&k))
        {
            return Some(base);
        }
    }
    None
}

#[test]
fn the_query_parser_finds_metrics_and_only_metrics() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"histogram_quantile(0.95, sum by (le, route) (rate(uno_added_latency_seconds_bucket{route="chat", path=~"primary|x"}[$__rate_interval])))"#,
            &["uno_added_latency_seconds_bucket"],
        ),
        (
            r#"sum(rate(uno_requests_total{status=~"5.."}[5m])) / clamp_min(sum(rate(uno_requests_total[1m] offset 1h)), 1e-9)"#,
            &["uno_requests_total", "uno_requests_total"],
        ),
        (
            r#"sum(rate(a_sum[1h])) by (stage) / on (stage) group_left sum without (x) (b_count)"#,
            &["a_sum", "b_count"],
        ),
        (
            r#"max by (tenant) (uno_snapshot_version{tenant=~"$tenant"}) and up == bool 1"#,
            &["uno_snapshot_version", "up"],
        ),
        (
            r#"{__name__="uno_build_info", version!=""}"#,
            &["uno_build_info"],
        ),
        (
            "increase(uno_log_rows_dropped_total[$__range]) # comment naming not_a_metric",
            &["uno_log_rows_dropped_total"],
        ),
        (
            "topk(5, uno_cluster_served_total) * 0x1F + .5 - 1E+3",
            &["uno_cluster_served_total"],
        ),
        ("sum(rate(x{a='}'}[${__range}]))", &["x"]),
        ("vector(1)", &[]),
    ];
    for (expr, expected) in cases {
        assert_eq!(metric_names(expr), *expected, "{expr}");
    }
    assert_eq!(
        variable_promql("label_values(uno_snapshot_version, tenant)").as_deref(),
        Some("uno_snapshot_version")
    );
    assert_eq!(variable_promql("label_values(tenant)"), None);
    assert_eq!(
        variable_promql("query_result(sum by (tenant) (uno_snapshot_version))").as_deref(),
        Some("sum by (tenant) (uno_snapshot_version)")
    );

    let types = families(
        "# HELP a x\n# TYPE uno_h histogram\nuno_h_bucket{le=\"1\"} 0\n# TYPE uno_c_total counter\n# TYPE uno_d counter\n# TYPE uno_g gauge\n",
    );
    assert_eq!(family_of("uno_h_bucket", &types), Some("uno_h"));
    assert_eq!(family_of("uno_h_count", &types), Some("uno_h"));
    assert_eq!(family_of("uno_c_total", &types), Some("uno_c_total"));
    assert_eq!(family_of("uno_d_total", &types), Some("uno_d"));
    assert_eq!(family_of("uno_g_bucket", &types), None, "not a histogram");
    assert_eq!(family_of("uno_missing", &types), None);
}

#[test]
fn the_dashboard_queries_parse_and_each_names_a_metric() {
    let queries = queries(&dashboard());
    assert!(queries.len() >= 20, "only {} queries found", queries.len());
    for (at, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{at}: no metric in {expr:?}");
        for name in names {
            assert!(
                name.starts_with("uno_"),
                "{at}: {name} is not one of uno's metrics"
            );
        }
    }
    // The template variable is there and used.
    let text = read("config/grafana/dashboards/uno.json");
    assert!(queries.iter().any(|(at, _)| at == "variable $tenant"));
    assert!(
        text.contains("tenant=~\\\"$tenant\\\""),
        "no panel filters by $tenant"
    );
}

/// The real app, after a plain and a streamed chat and a feedback, so its
/// histograms and counters have samples; its `/metrics` page.
async fn scrape_after_traffic() -> String {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::sqlite();
    let app = TestApp::start_with_store(test_config(&mock.base_url()), &db.url).await;
    let plain = app
        .post("/v1/chat/completions")
        .json(&chat_body("How long do I boil an egg?"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    let id = plain.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = plain.bytes().await.unwrap();
    let mut streamed = chat_body("And a duck egg?");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let stream = app
        .post("/v1/chat/completions")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let _ = stream.bytes().await.unwrap();
    let feedback = app
        .post("/v1/feedback")
        .json(&json!({"interaction_id": id, "rating": "down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(feedback.status(), 200);
    app.wait_for_rows(2).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn every_metric_the_dashboard_names_is_exported_by_uno() {
    let exposition = scrape_after_traffic().await;
    let exported = families(&exposition);
    assert!(
        !exported.is_empty(),
        "/metrics has no # TYPE lines:\n{exposition}"
    );
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (at, expr) in queries(&dashboard()) {
        for name in metric_names(&expr) {
            match family_of(&name, &exported) {
                Some(family) => {
                    used.insert(family.to_owned());
                }
                None => unknown.push(format!("{at}: {name}")),
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard names metrics uno does not export:\n  {}\nuno exports: {:?}",
        unknown.join("\n  "),
        exported.keys().collect::<Vec<_>>()
    );
    let unused: Vec<_> = exported.keys().filter(|f| !used.contains(*f)).collect();
    eprintln!("families on no panel: {unused:?}");
}

/// `key: value` lines of a small YAML file (the provisioning files are flat
/// enough that this is all the test needs).
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim().trim_start_matches("- "))
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect()
}

/// The entries of one key of one compose service, as written: the items
/// of a list (`ports`, `expose`) or the `NAME: value` lines of a map
/// (`environment`).
fn compose_list(compose: &str, service: &str, key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut in_key = false;
    let mut items = Vec::new();
    for line in compose.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match indent {
            0 => in_service = false,
            2 => in_service = line.trim() == format!("{service}:"),
            4 => in_key = in_service && line.trim() == format!("{key}:"),
            _ => {
                if in_service && in_key {
                    let entry = line.trim();
                    items.push(entry.strip_prefix("- ").unwrap_or(entry).to_owned());
                }
            }
        }
    }
    items
}

/// Bind mounts (`source:target[:ro]`) of one compose service.
fn compose_mounts(compose: &str, service: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut mounts = Vec::new();
    for line in compose.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
            in_service = line.trim() == format!("{service}:");
            continue;
        }
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_service = false;
        }
        let item = line.trim();
        if in_service
            && let Some(mount) = item.strip_prefix("- ")
            && mount.starts_with('.')
        {
            let mut parts = mount.trim_matches('"').split(':');
            mounts.push((
                parts.next().unwrap().to_owned(),
                parts.next().expect("source:target").to_owned(),
            ));
        }
    }
    mounts
}

#[test]
fn provisioning_points_at_what_compose_mounts() {
    let compose = read("docker/compose.yaml");
    let grafana = compose_mounts(&compose, "grafana");
    let target_of = |source: &str| {
        grafana
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("grafana does not mount {source}: {grafana:?}"))
    };
    // Compose resolves sources against docker/, where the file is.
    assert_eq!(
        target_of("../config/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dashboards_dir = target_of("../config/grafana/dashboards");
    assert!(repo_file("config/grafana/dashboards/uno.json").exists());

    let provider = read("config/grafana/provisioning/dashboards/uno.yml");
    assert_eq!(yaml_values(&provider, "path"), [dashboards_dir.as_str()]);
    assert_eq!(yaml_values(&provider, "type"), ["file"]);
    assert!(
        compose.contains(&format!(
            "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: {dashboards_dir}/uno.json"
        )),
        "the home dashboard is not the provisioned file"
    );

    // The datasource the dashboard names is the provisioned one, and it
    // reaches the compose prometheus service.
    let datasource = read("config/grafana/provisioning/datasources/prometheus.yml");
    let uid = yaml_values(&datasource, "uid");
    assert_eq!(uid.len(), 1, "one datasource with a fixed uid");
    assert_eq!(yaml_values(&datasource, "type"), ["prometheus"]);
    assert_eq!(yaml_values(&datasource, "url"), ["http://prometheus:9090"]);
    assert!(compose.contains("\n  prometheus:\n"));
    let mut uids = BTreeSet::new();
    fn datasource_uids(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(ds) = map.get("datasource")
                    && ds["type"] == "prometheus"
                {
                    out.insert(ds["uid"].as_str().unwrap_or("").to_owned());
                }
                map.values().for_each(|v| datasource_uids(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| datasource_uids(v, out)),
            _ => {}
        }
    }
    datasource_uids(&dashboard(), &mut uids);
    assert_eq!(uids, BTreeSet::from([uid[0].clone()]));

    // Prometheus scrapes uno where compose runs it: the uno service, on the
    // metrics listener compose gives it (exposed to the compose network,
    // not published: the image's public listener does not serve /metrics),
    // and the worker service on the port its --metrics-listen names.
    let prometheus = compose_mounts(&compose, "prometheus");
    assert!(
        prometheus
            .iter()
            .any(|(s, t)| s == "../config/prometheus.yml" && t == "/etc/prometheus/prometheus.yml"),
        "{prometheus:?}"
    );
    let scrape = read("config/prometheus.yml");
    assert_eq!(
        yaml_values(&scrape, "metrics_path"),
        ["/metrics", "/metrics"]
    );
    assert!(scrape.contains(r#"targets: ["uno:9464"]"#), "{scrape}");
    assert!(compose.contains("\n  uno:\n"));
    let environment = compose_list(&compose, "uno", "environment");
    assert!(
        environment.contains(&"UNO_METRICS_LISTEN: 0.0.0.0:9464".to_owned()),
        "the uno service must serve /metrics on 0.0.0.0:9464: {environment:?}"
    );
    assert_eq!(compose_list(&compose, "uno", "expose"), ["\"9464\""]);
    let published = compose_list(&compose, "uno", "ports");
    assert!(
        !published.is_empty() && published.iter().all(|p| !p.contains("9464")),
        "the metrics port must not be published to the host: {published:?}"
    );
    assert!(scrape.contains(r#"targets: ["worker:9091"]"#), "{scrape}");
    assert!(
        compose.contains("\n  worker:\n")
            && compose.contains(r#"command: ["worker", "--metrics-listen", "0.0.0.0:9091"]"#),
        "the worker service must serve the metrics Prometheus scrapes"
    );
    assert!(read("docker/Dockerfile").contains("UNO_LISTEN=0.0.0.0:8080"));
}
