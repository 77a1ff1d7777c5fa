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
    let (mut config, warnings) = load(path)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    for key in &mut config.auth.keys {
        key.key = "<redacted>".to_owned();
    }
    for upstream in &mut config.upstreams {
        if upstream.api_key.is_some() {
            upstream.api_key = Some("<redacted>".to_owned());
        }
    }
    println!("{config:#?}");
    println!("\nEnvironment variables read:");
    for (name, key) in ENV_VARS {
        println!("  {name:<26} {key}");
    }
    Ok(())
}
