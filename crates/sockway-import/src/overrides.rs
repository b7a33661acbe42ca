//! `sockway serve --template FILE --overrides FILE`: what a template does not say (listen
//! address, management, cluster, TLS) merged over the imported configuration.
//!
//! The rule is one: tables merge key by key, at every depth, and any other value in the
//! overrides file (a string, a number, an array) replaces the imported one. So
//! `[gateway] listen = "0.0.0.0:8080"` keeps the imported stage and routes, a
//! `[routes.ping]` table adds a route or changes one key of an imported one, and a
//! `[management]` or `[cluster]` table is simply added. Nothing can be removed.

/// Merges `overrides` (TOML text, named `name` in messages) over the imported `generated`
/// TOML and returns the result as TOML text.
pub fn merge_overrides(
    generated: &str,
    overrides: &str,
    name: &str,
) -> Result<String, crate::ImportError> {
    let mut base: toml::Table = generated.parse().map_err(|error| {
        crate::ImportError::Overrides(format!("imported configuration is not TOML: {error}"))
    })?;
    let top: toml::Table = overrides
        .parse()
        .map_err(|error| crate::ImportError::Overrides(format!("{name}: invalid TOML: {error}")))?;
    merge(&mut base, top);
    Ok(base.to_string())
}

fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_merge_and_values_replace() {
        let merged = merge_overrides(
            "[gateway]\nstage = \"Prod\"\nregion = \"eu-west-1\"\n[routes.\"$default\"]\nintegration = \"a\"\n",
            "[gateway]\nlisten = \"0.0.0.0:9000\"\nregion = \"us-east-2\"\n[routes.\"$default\"]\nroute_response = true\n[management]\nlisten = \"127.0.0.1:9001\"\n",
            "overrides.toml",
        )
        .unwrap();
        let table: toml::Table = merged.parse().unwrap();
        assert_eq!(table["gateway"]["stage"].as_str(), Some("Prod"));
        assert_eq!(table["gateway"]["region"].as_str(), Some("us-east-2"));
        assert_eq!(table["gateway"]["listen"].as_str(), Some("0.0.0.0:9000"));
        assert_eq!(
            table["routes"]["$default"]["integration"].as_str(),
            Some("a")
        );
        assert_eq!(
            table["routes"]["$default"]["route_response"].as_bool(),
            Some(true)
        );
        assert_eq!(
            table["management"]["listen"].as_str(),
            Some("127.0.0.1:9001")
        );

        let error = merge_overrides("", "[gateway", "o.toml").unwrap_err();
        assert!(
            error.to_string().starts_with("o.toml: invalid TOML"),
            "{error}"
        );
    }
}
