//! The layers of a config merged into one document: the TOML texts in order (a config file; or
//! an imported template, then an overrides file), then the environment's `SOCKWAY_…__…`
//! variables, then the `*_file` keys replaced by what their files hold.
//!
//! Tables merge key by key at every depth; any other value of a later layer replaces the
//! earlier one. Setting a string key `k`, `k_file` or `k_env` in a later layer replaces
//! whichever of the three an earlier layer set, since they are one setting. Every value keeps
//! a span in `sources`' offset space, so a problem found later still names its line, variable
//! or file. Deserialising and checking the merged document is `parse`'s and `validate`'s.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::ConfigProblem;
use super::environment::{self, Variable};
use super::parse::{key_path, line_of};
use super::schema::{self, ENV_SUFFIX, FILE_SUFFIX, Key, Kind};
use super::sources::{ConfigText, Environment, Origins, Sources};

#[cfg(test)]
mod tests;

/// The largest file a `*_file` key may name: secrets and the odd mock body are small, and a
/// device such as `/dev/zero` must not be read forever.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Problems with their offsets, to order them by where they are.
pub(super) type Found = Vec<(usize, ConfigProblem)>;

/// Parses and merges `texts`, sets the keys `variables` set, and reads the `*_file` keys; the
/// document, or every problem found.
pub(super) fn merge<'a>(
    texts: &'a [ConfigText],
    variables: &'a [Variable],
    origins: &mut Origins,
) -> Result<DeTable<'a>, Found> {
    let mut document = DeTable::new();
    for text in texts {
        let base = origins.add_text(&text.origin, &text.text);
        let parsed = DeTable::parse(&text.text).map_err(|err| {
            let problem = ConfigProblem {
                key_path: String::new(),
                origin: text.origin.clone(),
                line: err.span().map(|span| line_of(&text.text, span.start)),
                message: format!("invalid TOML: {}", err.message()),
            };
            vec![(base, problem)]
        })?;
        let layer = shifted_table(parsed.into_inner(), base);
        merge_table(&mut document, layer, schema::ROOT);
    }
    let mut found = Found::new();
    environment::apply(&mut document, variables, origins, &mut found);
    read_files(
        &mut document,
        schema::ROOT,
        &mut Vec::new(),
        origins,
        &mut found,
    );
    if found.is_empty() {
        Ok(document)
    } else {
        Err(found)
    }
}

/// The variables of `env` that set keys; problems with their names or values go to `found`.
pub(super) fn variables(env: &Environment, found: &mut Found) -> Vec<Variable> {
    environment::config_variables(env, found)
}

/// Merges `top` over `base`, whose keys are `keys` (empty for a table the schema does not
/// know, which `raw` then rejects).
fn merge_table<'a>(base: &mut DeTable<'a>, top: DeTable<'a>, keys: &'static [Key]) {
    for (key, value) in top {
        let name = key.get_ref().to_string();
        let kind = schema::key(keys, &name).map(|key| key.kind);
        if let (Some(existing), DeValue::Table(_)) = (base.get_mut(name.as_str()), value.get_ref())
            && let DeValue::Table(existing) = existing.get_mut()
        {
            let DeValue::Table(table) = value.into_inner() else {
                unreachable!("matched as a table above");
            };
            match kind {
                Some(Kind::Table(sub)) => merge_table(existing, table, sub),
                Some(Kind::Named { value, .. }) => merge_named(existing, table, *value),
                _ => merge_table(existing, table, &[]),
            }
            continue;
        }
        for alternative in schema::alternatives(keys, &name) {
            base.remove(alternative.as_str());
        }
        base.insert(key, value);
    }
}

/// Merges a table of names (`[routes]`), each entry of kind `kind`.
fn merge_named<'a>(base: &mut DeTable<'a>, top: DeTable<'a>, kind: Kind) {
    for (key, value) in top {
        let name = key.get_ref().to_string();
        if let (Some(existing), DeValue::Table(_), Kind::Table(keys)) =
            (base.get_mut(name.as_str()), value.get_ref(), kind)
            && let DeValue::Table(existing) = existing.get_mut()
        {
            let DeValue::Table(table) = value.into_inner() else {
                unreachable!("matched as a table above");
            };
            merge_table(existing, table, keys);
            continue;
        }
        base.insert(key, value);
    }
}

/// `table` with every span moved `base` further: a text's place in the offset space.
fn shifted_table(table: DeTable<'_>, base: usize) -> DeTable<'_> {
    if base == 0 {
        return table;
    }
    table
        .into_iter()
        .map(|(key, value)| {
            let span = shift(key.span(), base);
            (Spanned::new(span, key.into_inner()), shifted(value, base))
        })
        .collect()
}

fn shifted(value: Spanned<DeValue<'_>>, base: usize) -> Spanned<DeValue<'_>> {
    let span = shift(value.span(), base);
    let inner = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(shifted_table(table, base)),
        DeValue::Array(array) => DeValue::Array(
            array
                .into_iter()
                .map(|item| shifted(item, base))
                .collect::<DeArray<'_>>(),
        ),
        other => other,
    };
    Spanned::new(span, inner)
}

fn shift(span: Range<usize>, base: usize) -> Range<usize> {
    span.start + base..span.end + base
}

/// Replaces every `k_file` key of `table` (whose keys are `keys`, at `path`) and of the tables
/// below it by `k`, holding what the file holds.
fn read_files(
    table: &mut DeTable<'_>,
    keys: &'static [Key],
    path: &mut Vec<String>,
    origins: &mut Origins,
    found: &mut Found,
) {
    for (name, value) in table.iter_mut() {
        let name = name.get_ref().to_string();
        let Some(key) = schema::key(keys, &name) else {
            continue;
        };
        path.push(key_path(&[&name]));
        match (key.kind, value.get_mut()) {
            (Kind::Table(sub), DeValue::Table(table)) => {
                read_files(table, sub, path, origins, found);
            }
            (Kind::Tables(sub), DeValue::Array(array)) => {
                let last = path.pop().unwrap_or_default();
                for (index, item) in array.iter_mut().enumerate() {
                    if let DeValue::Table(table) = item.get_mut() {
                        path.push(format!("{last}[{index}]"));
                        read_files(table, sub, path, origins, found);
                        path.pop();
                    }
                }
                path.push(last);
            }
            (
                Kind::Named {
                    value: Kind::Table(sub),
                    ..
                },
                DeValue::Table(named),
            ) => {
                for (entry_name, entry) in named.iter_mut() {
                    if let DeValue::Table(table) = entry.get_mut() {
                        path.push(key_path(&[entry_name.get_ref().as_ref()]));
                        read_files(table, sub, path, origins, found);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }

    let file_keys: Vec<String> = table
        .keys()
        .map(|key| key.get_ref().to_string())
        .filter(|name| schema::file_target(keys, name).is_some())
        .collect();
    for name in file_keys {
        let target = name
            .strip_suffix(FILE_SUFFIX)
            .expect("a file target's name ends with _file")
            .to_owned();
        let Some(entry) = table.remove(name.as_str()) else {
            continue;
        };
        let span = entry.span();
        let key = {
            path.push(key_path(&[&name]));
            let joined = path.join(".");
            path.pop();
            joined
        };
        let DeValue::String(file) = entry.get_ref() else {
            found.push((
                span.start,
                origins.problem(key, &span, "expected the path of a file".to_owned()),
            ));
            continue;
        };
        let env_key = format!("{target}{ENV_SUFFIX}");
        let other = [target.as_str(), env_key.as_str()]
            .into_iter()
            .find(|other| table.contains_key(*other));
        if let Some(other) = other {
            found.push((
                span.start,
                origins.problem(
                    key,
                    &span,
                    format!("set either {other} or {name}, not both"),
                ),
            ));
            continue;
        }
        match read_file(file) {
            Ok(content) => {
                let region = origins.add_file(file, &key, span.start, &content);
                table.insert(
                    Spanned::new(region.clone(), Cow::Owned(target)),
                    Spanned::new(region, DeValue::String(Cow::Owned(content))),
                );
            }
            Err(message) => found.push((span.start, origins.problem(key, &span, message))),
        }
    }
}

/// What the file at `path` holds, without one trailing newline (`\n` or `\r\n`); the error is
/// a message for the user, which never quotes the file.
fn read_file(path: &str) -> Result<String, String> {
    let cannot = |error: std::io::Error| format!("cannot read {path:?}: {error}");
    let metadata = std::fs::metadata(path).map_err(cannot)?;
    if !metadata.is_file() {
        return Err(format!("{path:?} is not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{path:?} is larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut content =
        String::from_utf8(bytes).map_err(|_| format!("{path:?} is not valid UTF-8"))?;
    if content.ends_with('\n') {
        content.pop();
        if content.ends_with('\r') {
            content.pop();
        }
    }
    Ok(content)
}

/// The sources of the merged `document`: the span of each value by key path, and the
/// variable each `*_env` key names.
pub(super) fn sources(document: &DeTable<'_>, origins: Origins) -> Sources {
    let mut sources = Sources {
        origins,
        spans: BTreeMap::new(),
        named_variables: BTreeMap::new(),
    };
    record(document, &mut Vec::new(), &mut sources);
    sources
}

fn record(table: &DeTable<'_>, path: &mut Vec<String>, sources: &mut Sources) {
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        path.push(key_path(&[name]));
        match value.get_ref() {
            DeValue::Table(table) => record(table, path, sources),
            DeValue::Array(array)
                if !array.is_empty() && array.iter().all(|item| item.get_ref().is_table()) =>
            {
                let last = path.pop().unwrap_or_default();
                for (index, item) in array.iter().enumerate() {
                    if let DeValue::Table(table) = item.get_ref() {
                        path.push(format!("{last}[{index}]"));
                        record(table, path, sources);
                        path.pop();
                    }
                }
                path.push(last);
            }
            leaf => {
                let joined = path.join(".");
                if name.ends_with(ENV_SUFFIX)
                    && let DeValue::String(variable) = leaf
                {
                    sources
                        .named_variables
                        .insert(joined.clone(), variable.to_string());
                }
                sources.spans.insert(joined, value.span());
            }
        }
        path.pop();
    }
}
