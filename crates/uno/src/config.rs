//! Loading configuration: defaults, then the file, then `UNO_*` variables.

use std::path::Path;

use anyhow::Context;
use uno_core::config::{Config, ENV_VARS};

/// The effective configuration, plus warnings to print once logging is up.
pub fn load(path: Option<&Path>) -> anyhow::Result<(Config, Vec<String>)> {
    let mut config = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::default(),
    };
    let warnings = config.apply_env(std::env::vars())?;
    config.validate()?;
    Ok((config, warnings))
}

/// `uno config`: what uno would run with, secrets redacted.
pub fn print(path: Option<&Path>) -> anyhow::Result<()> {
    let (config, warnings) = load(path)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!("{:#?}", redacted(config));
    println!("\nEnvironment variables read:");
    for (name, key) in ENV_VARS {
        println!("  {name:<26} {key}");
    }
    Ok(())
}

/// `config` with every secret replaced, so its printout can be pasted into
/// an issue: keys, tokens, and passwords inside URLs.
fn redacted(mut config: Config) -> Config {
    const REDACTED: &str = "<redacted>";
    let hide = |secret: &mut Option<String>| {
        if secret.is_some() {
            *secret = Some(REDACTED.to_owned());
        }
    };
    for key in &mut config.auth.keys {
        key.key = REDACTED.to_owned();
    }
    for upstream in &mut config.upstreams {
        hide(&mut upstream.api_key);
        upstream.url = uno_store::redact_url(&upstream.url);
    }
    hide(&mut config.admin.key);
    hide(&mut config.learn.api_key);
    hide(&mut config.metrics.token);
    config.learn.url = uno_store::redact_url(&config.learn.url);
    config.database.url = uno_store::redact_url(&config.database.url);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_redacted() {
        let mut config = Config::default();
        config
            .apply_env([
                ("UNO_API_KEYS", "acme=client-secret-1"),
                ("UNO_UPSTREAM_API_KEY", "upstream-secret-2"),
                (
                    "UNO_UPSTREAM_URL",
                    "https://user:url-secret-3@llm.example/v1",
                ),
                ("UNO_ADMIN_KEY", "admin-secret-4-0123456789"),
                ("UNO_LEARN_API_KEY", "learn-secret-5"),
                (
                    "UNO_LEARN_URL",
                    "https://user:url-secret-6@learner.example/v1",
                ),
                ("UNO_METRICS_TOKEN", "metrics-secret-7-0123456789"),
                ("DATABASE_URL", "postgres://uno:db-secret-8@db:5432/uno"),
            ])
            .unwrap();
        let printed = format!("{:#?}", redacted(config));
        for n in 1..=8 {
            assert!(
                !printed.contains(&format!("secret-{n}")),
                "secret {n} printed:\n{printed}"
            );
        }
        assert!(printed.contains("llm.example"), "{printed}");
        assert!(printed.contains("metrics"), "{printed}");
    }
}
