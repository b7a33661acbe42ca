//! Config keys set by environment variables: `SOCKWAY_GATEWAY__LISTEN=0.0.0.0:8080` sets
//! `gateway.listen`, over what the texts say.
//!
//! The rule (docs/configuration.md, "Environment variables"): a variable sets a key when its
//! name starts with `SOCKWAY_` and contains `__`; the rest of the name is the key's path with
//! `__` between segments. A segment names a key whatever its case; an entry of a table of
//! names (`routes`, `integrations`, `stage_variables`, a mock's `headers`) by its name
//! compared in upper case with every run of other characters than `A-Z 0-9` read as one `_`
//! and none at either end (`$connect` is `CONNECT`, `my-api.v1` is `MY_API_V1`); an entry of
//! an array of tables by its index, the next free index adding one. The value is read as the
//! key's kind, from `schema`. Every problem names its variable; nothing is ignored.
//!
//! This module sets values in the merged document; `layers` merges the texts and reads the
//! `*_file` keys, `sources` remembers where each value came from.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::ConfigProblem;
use super::parse::key_path;
use super::schema::{self, ENV_SUFFIX, FILE_SUFFIX, Key, Kind};
use super::sources::{Environment, Origins, SEGMENT_SEPARATOR, VARIABLE_PREFIX};

/// A variable that sets a key, its name and value valid UTF-8.
pub(super) struct Variable {
    name: String,
    value: String,
}

impl Variable {
    /// The segments of the name after `SOCKWAY_`.
    fn segments(&self) -> Vec<&str> {
        path_of(&self.name).split(SEGMENT_SEPARATOR).collect()
    }
}

/// A problem with one variable: the key path reached, and what is wrong.
struct Failure {
    key_path: String,
    message: String,
}

/// One segment of a variable's name, ordered so that indices compare as numbers: entries of
/// an array of tables are then added in order (`__0`, `__1`, …, `__10`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Segment<'v> {
    Index(u64),
    Name(&'v str),
}

/// The variables of `env` that set keys, ordered by path; a variable whose name or value is
/// not UTF-8 is a problem.
pub(super) fn config_variables(
    env: &Environment,
    problems: &mut Vec<(usize, ConfigProblem)>,
) -> Vec<Variable> {
    let mut variables = Vec::new();
    for (name, value) in env.config_variables() {
        let name_text = name.to_string_lossy();
        let problem = |message: &str| ConfigProblem {
            key_path: String::new(),
            origin: format!("environment variable {name_text}"),
            line: None,
            message: message.to_owned(),
        };
        match (name.to_str(), value.to_str()) {
            (Some(name), Some(value)) => variables.push(Variable {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
            (None, _) => problems.push((usize::MAX, problem("the name is not valid UTF-8"))),
            (_, None) => problems.push((usize::MAX, problem("the value is not valid UTF-8"))),
        }
    }
    variables.sort_by(|a, b| segments(&a.name).cmp(&segments(&b.name)));
    variables
}

fn segments(name: &str) -> Vec<Segment<'_>> {
    path_of(name)
        .split(SEGMENT_SEPARATOR)
        .map(|segment| match segment.parse() {
            Ok(index) => Segment::Index(index),
            Err(_) => Segment::Name(segment),
        })
        .collect()
}

/// The part of a variable's name after `SOCKWAY_`.
fn path_of(name: &str) -> &str {
    name.strip_prefix(VARIABLE_PREFIX).unwrap_or(name)
}

/// Sets the key of each variable in `document`, giving each value a range of `origins`;
/// every variable that cannot be set is a problem.
pub(super) fn apply<'a>(
    document: &mut DeTable<'a>,
    variables: &'a [Variable],
    origins: &mut Origins,
    problems: &mut Vec<(usize, ConfigProblem)>,
) {
    // The variable that set each setting (a key, its `_file` and `_env` forms being one), so
    // that two spellings of one key (`SOCKWAY_ROUTES__CONNECT__…`, `…___CONNECT__…`) are an
    // error rather than a silent choice.
    let mut setters: BTreeMap<String, &str> = BTreeMap::new();
    for variable in variables {
        let secret = schema::is_secret(&variable.segments());
        let span = origins.add_variable(&variable.name, &variable.value, secret);
        let mut assignment = Assignment {
            value: &variable.value,
            span: span.clone(),
            path: Vec::new(),
        };
        let result = assignment.set_in_table(document, schema::ROOT, &variable.segments());
        let failure = match result {
            Err(failure) => Some(failure),
            Ok(()) => {
                let key_path = assignment.key_path();
                let setting = [FILE_SUFFIX, ENV_SUFFIX]
                    .iter()
                    .find_map(|suffix| key_path.strip_suffix(suffix))
                    .unwrap_or(&key_path)
                    .to_owned();
                setters
                    .insert(setting, &variable.name)
                    .map(|other| Failure {
                        key_path,
                        message: format!("also set by {other}: set it once"),
                    })
            }
        };
        if let Some(Failure { key_path, message }) = failure {
            problems.push((span.start, origins.problem(key_path, &span, message)));
        }
    }
}

/// One variable on its way down the document.
struct Assignment<'a> {
    value: &'a str,
    span: Range<usize>,
    /// The key path so far, as `key_path` writes each segment; an index is appended to the
    /// key before it, as `[0]`.
    path: Vec<String>,
}

impl<'a> Assignment<'a> {
    fn key_path(&self) -> String {
        self.path.join(".")
    }

    fn fail<T>(&self, message: String) -> Result<T, Failure> {
        Err(Failure {
            key_path: self.key_path(),
            message,
        })
    }

    /// Sets the rest of the path, `segments`, in `table`, whose keys are `keys`.
    fn set_in_table(
        &mut self,
        table: &mut DeTable<'a>,
        keys: &'static [Key],
        segments: &[&str],
    ) -> Result<(), Failure> {
        let Some((segment, rest)) = segments.split_first() else {
            return self.fail(self.table_message(keys));
        };
        if segment.is_empty() {
            return self.fail(format!(
                "an empty segment in the name (`{SEGMENT_SEPARATOR}` separates segments; `_` \
                 stays within one)"
            ));
        }
        let lower = segment.to_ascii_lowercase();
        let (name, kind) = match keys.iter().find(|key| key.name == lower) {
            Some(key) => (key.name.to_owned(), key.kind),
            // `secret_access_key_file`: the value of `secret_access_key`, read from a file.
            None if schema::file_target(keys, &lower).is_some() => (lower, Kind::String),
            None => {
                self.path.push(key_path(&[&lower]));
                let names: Vec<&str> = keys.iter().map(|key| key.name).collect();
                return self.fail(format!(
                    "unknown key (expected one of {}, or `<key>{FILE_SUFFIX}` for a string \
                     key)",
                    names.join(", ")
                ));
            }
        };
        self.path.push(key_path(&[&name]));
        if rest.is_empty() {
            let value = self.value(kind)?;
            for alternative in schema::alternatives(keys, &name) {
                table.remove(alternative.as_str());
            }
            table.insert(Spanned::new(self.span.clone(), Cow::Owned(name)), value);
            return Ok(());
        }
        let entry = self.entry(table, &name, kind);
        self.set_in_kind(entry, kind, rest)
    }

    /// Sets `segments` in `value`, an entry of kind `kind`.
    fn set_in_kind(
        &mut self,
        value: &mut DeValue<'a>,
        kind: Kind,
        segments: &[&str],
    ) -> Result<(), Failure> {
        match kind {
            Kind::Table(keys) => {
                let table = self.as_table(value)?;
                self.set_in_table(table, keys, segments)
            }
            Kind::Tables(keys) => {
                let (index, rest) = segments.split_first().expect("callers pass a segment");
                let DeValue::Array(array) = value else {
                    return self.fail("is not an array of tables in the text".to_owned());
                };
                let Ok(index) = index.parse::<usize>() else {
                    return self.fail(format!(
                        "{index:?} is not an index: entries of an array of tables are \
                         numbered from 0, e.g. {}__0__{}",
                        self.variable_so_far(),
                        keys[0].name.to_ascii_uppercase()
                    ));
                };
                if index > array.len() {
                    return self.fail(format!(
                        "has {} entries: index {index} would leave a gap (the next new entry \
                         is {})",
                        array.len(),
                        array.len()
                    ));
                }
                if index == array.len() {
                    array.push(Spanned::new(
                        self.span.clone(),
                        DeValue::Table(DeTable::new()),
                    ));
                }
                if let Some(last) = self.path.last_mut() {
                    last.push_str(&format!("[{index}]"));
                }
                let entry = array.as_mut()[index].get_mut();
                let table = self.as_table(entry)?;
                self.set_in_table(table, keys, rest)
            }
            Kind::Named { value: kind, known } => {
                let (segment, rest) = segments.split_first().expect("callers pass a segment");
                let table = self.as_table(value)?;
                let name = self.name_in(table, known, segment)?;
                self.path.push(key_path(&[&name]));
                if rest.is_empty() {
                    if let Kind::Table(keys) = kind {
                        return self.fail(self.table_message(keys));
                    }
                    let value = self.value(*kind)?;
                    table.insert(Spanned::new(self.span.clone(), Cow::Owned(name)), value);
                    return Ok(());
                }
                let entry = self.entry(table, &name, *kind);
                self.set_in_kind(entry, *kind, rest)
            }
            _ => self.fail(format!(
                "is a value, not a table: the variable is {}",
                self.variable_so_far()
            )),
        }
    }

    /// The entry `name` of `table`, a new empty one of `kind` if there is none.
    fn entry<'t>(&self, table: &'t mut DeTable<'a>, name: &str, kind: Kind) -> &'t mut DeValue<'a> {
        let key = Spanned::new(self.span.clone(), Cow::Owned(name.to_owned()));
        let empty = match kind {
            Kind::Tables(_) => DeValue::Array(DeArray::new()),
            _ => DeValue::Table(DeTable::new()),
        };
        table
            .entry(key)
            .or_insert_with(|| Spanned::new(self.span.clone(), empty))
            .get_mut()
    }

    fn as_table<'t>(&self, value: &'t mut DeValue<'a>) -> Result<&'t mut DeTable<'a>, Failure> {
        match value {
            DeValue::Table(table) => Ok(table),
            other => self.fail(format!(
                "is a {} in the text, not a table",
                other.type_str()
            )),
        }
    }

    /// The name in `table` (or in `known`) that `segment` stands for: the one name equal to
    /// it once both are normalized, else `segment` in lower case, a new entry.
    fn name_in(
        &self,
        table: &DeTable<'a>,
        known: &[&str],
        segment: &str,
    ) -> Result<String, Failure> {
        let wanted = normalized(segment);
        let mut matches: Vec<String> = table
            .keys()
            .map(|key| key.get_ref().to_string())
            .chain(known.iter().map(|name| (*name).to_owned()))
            .filter(|name| normalized(name) == wanted)
            .collect();
        matches.sort();
        matches.dedup();
        match matches.as_slice() {
            [] if wanted.is_empty() => self.fail(format!(
                "{segment:?} names no entry: a name needs a letter or a digit"
            )),
            [] => Ok(segment.to_ascii_lowercase()),
            [name] => Ok(name.clone()),
            names => {
                let quoted: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
                self.fail(format!(
                    "{segment:?} matches {}: set this key in the text instead",
                    quoted.join(" and ")
                ))
            }
        }
    }

    /// The variable's value as a value of `kind`.
    fn value(&self, kind: Kind) -> Result<Spanned<DeValue<'a>>, Failure> {
        let text = self.value;
        let spanned = |value| Spanned::new(self.span.clone(), value);
        let value = match kind {
            Kind::String => DeValue::String(Cow::Borrowed(text)),
            Kind::Integer => match DeValue::parse(text).map(Spanned::into_inner) {
                Ok(value @ DeValue::Integer(_)) => value,
                _ => return self.fail(format!("expected an integer, got {text:?}")),
            },
            Kind::Number => match DeValue::parse(text).map(Spanned::into_inner) {
                Ok(value @ (DeValue::Integer(_) | DeValue::Float(_))) => value,
                _ => return self.fail(format!("expected a number, got {text:?}")),
            },
            Kind::Boolean => match text {
                "true" => DeValue::Boolean(true),
                "false" => DeValue::Boolean(false),
                _ => return self.fail(format!("expected true or false, got {text:?}")),
            },
            Kind::Strings => self.list()?,
            Kind::StringOrStrings if text.trim_start().starts_with('[') || text.contains(',') => {
                self.list()?
            }
            Kind::StringOrStrings => DeValue::String(Cow::Borrowed(text)),
            Kind::Table(keys) | Kind::Tables(keys) => {
                return self.fail(self.table_message(keys));
            }
            Kind::Named { .. } => return self.fail(self.table_message(&[])),
        };
        Ok(spanned(value))
    }

    /// A list of strings: comma-separated items, each trimmed (`""` is the empty list), or a
    /// TOML array of strings when the value starts with `[`.
    fn list(&self) -> Result<DeValue<'a>, Failure> {
        let text = self.value;
        let spanned = |value| Spanned::new(self.span.clone(), value);
        let mut array = DeArray::new();
        if text.trim_start().starts_with('[') {
            let items = match DeValue::parse(text).map(Spanned::into_inner) {
                Ok(DeValue::Array(items)) => items,
                _ => {
                    return self.fail(format!(
                        "expected a TOML array of strings such as [\"a\", \"b\"], got {text:?}"
                    ));
                }
            };
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(item) => array.push(spanned(DeValue::String(item.clone()))),
                    other => {
                        return self.fail(format!(
                            "expected strings in the array, got a {}",
                            other.type_str()
                        ));
                    }
                }
            }
        } else if !text.trim().is_empty() {
            for item in text.split(',') {
                array.push(spanned(DeValue::String(Cow::Borrowed(item.trim()))));
            }
        }
        Ok(DeValue::Array(array))
    }

    /// The name of a variable for the path so far, for messages.
    fn variable_so_far(&self) -> String {
        let path: Vec<String> = self
            .path
            .iter()
            .flat_map(|segment| {
                segment
                    .replace('[', ".")
                    .replace(']', "")
                    .split('.')
                    .map(normalized)
                    .collect::<Vec<_>>()
            })
            .collect();
        format!("{VARIABLE_PREFIX}{}", path.join(SEGMENT_SEPARATOR))
    }

    fn table_message(&self, keys: &[Key]) -> String {
        match keys.first() {
            Some(first) => format!(
                "is a table: set its keys, e.g. {}{SEGMENT_SEPARATOR}{}",
                self.variable_so_far(),
                first.name.to_ascii_uppercase()
            ),
            None => format!(
                "is a table: set its keys, {}{SEGMENT_SEPARATOR}<KEY>",
                self.variable_so_far()
            ),
        }
    }
}

/// A name as a variable can spell it: upper case, every run of characters other than
/// `A-Z 0-9` one `_`, none at either end.
fn normalized(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_separator = false;
    for character in name.chars() {
        if character.is_ascii_alphanumeric() {
            if pending_separator && !out.is_empty() {
                out.push('_');
            }
            pending_separator = false;
            out.push(character.to_ascii_uppercase());
        } else {
            pending_separator = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn names_normalize_as_variables_spell_them() {
        for (name, expected) in [
            ("$connect", "CONNECT"),
            ("sendMessage", "SENDMESSAGE"),
            ("my-api.v1", "MY_API_V1"),
            (
                "integration.request.header.X-Client",
                "INTEGRATION_REQUEST_HEADER_X_CLIENT",
            ),
            ("a--b", "A_B"),
            ("__", ""),
            ("CHAT", "CHAT"),
        ] {
            assert_eq!(normalized(name), expected, "{name}");
        }
    }
}
