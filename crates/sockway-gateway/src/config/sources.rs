//! Where each value of a config came from: a line of a TOML text (the config file, an imported
//! template, an overrides file), an environment variable, or a file named by a `*_file` key.
//!
//! Every value of the merged document carries a span, and every source owns a range of one
//! offset space: the texts first, each at its own base, then one range per environment
//! variable and per file read. A span therefore locates its value, whatever the layer, which
//! is how problems name the line, variable or file they concern and how `explain` names each
//! key's source. Reading the variables and files is `environment`'s and `layers`'s.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::ops::Range;

use super::ConfigProblem;
use super::parse::line_of;

/// One TOML text a config is loaded from, and the name messages give it (a path, or
/// `"template.yaml (imported)"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigText {
    /// The name problems and `explain` give the text.
    pub origin: String,
    /// The TOML.
    pub text: String,
}

/// The environment a config is loaded in: every variable, read once by the caller (the
/// binary passes `std::env::vars_os()`; tests pass their own).
///
/// Variables whose names start with `SOCKWAY_` and contain `__` set config keys
/// (`SOCKWAY_GATEWAY__LISTEN`); the `*_env` keys read any variable by name.
///
/// `Debug` shows the names only: the values hold secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment {
    variables: BTreeMap<OsString, OsString>,
}

/// Where the value of a key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A line of a TOML text.
    Text {
        /// The text's name: a path, or the imported template's.
        origin: String,
        /// 1-based line.
        line: usize,
    },
    /// A `SOCKWAY_…__…` environment variable.
    Environment {
        /// Its name.
        variable: String,
    },
    /// The variable a `*_env` key names (`secret_access_key_env`).
    NamedEnvironment {
        /// The variable.
        variable: String,
        /// The `*_env` key.
        key_path: String,
        /// Where the `*_env` key was set.
        named_by: Box<Source>,
    },
    /// A file a `*_file` key names.
    File {
        /// The path, as written.
        path: String,
        /// The `*_file` key.
        key_path: String,
        /// Where the `*_file` key was set.
        named_by: Box<Source>,
    },
    /// Not set anywhere: the default.
    Default,
}

/// The sources of the values of a loaded config, by key path: what `sockway validate
/// --explain` prints beside each value.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub(super) origins: Origins,
    /// The span of every value of the merged document, by key path (`gateway.listen`,
    /// `management.credentials[0].secret_access_key`).
    pub(super) spans: BTreeMap<String, Range<usize>>,
    /// The variable each `*_env` key names, by the `*_env` key's path.
    pub(super) named_variables: BTreeMap<String, String>,
}

/// The ranges of the offset space and what each is.
#[derive(Debug, Clone, Default)]
pub(super) struct Origins {
    /// In increasing order of `start`; each region ends where the next begins.
    regions: Vec<Region>,
    /// The first free offset.
    end: usize,
}

/// `Debug` shows where each region comes from, never what it holds.
#[derive(Clone)]
struct Region {
    start: usize,
    what: RegionKind,
}

#[derive(Clone)]
enum RegionKind {
    Text {
        origin: String,
        text: String,
    },
    Variable {
        name: String,
        /// The value, when it is a secret's, to keep it out of messages.
        secret: Option<String>,
    },
    File {
        path: String,
        key_path: String,
        /// The start of the `*_file` key's value, to locate where it was set.
        named_at: usize,
        /// What was read, to keep it out of messages.
        content: String,
    },
}

/// Where a problem is, as [`ConfigProblem`] reports it.
pub(super) struct Location {
    pub(super) origin: String,
    pub(super) line: Option<usize>,
}

/// Prefix of the environment variables that set config keys.
pub(super) const VARIABLE_PREFIX: &str = "SOCKWAY_";

/// What separates the segments of such a variable's name.
pub(super) const SEGMENT_SEPARATOR: &str = "__";

impl Environment {
    /// The environment made of `variables`: `std::env::vars_os()`, or a test's own.
    pub fn new<K, V>(variables: impl IntoIterator<Item = (K, V)>) -> Environment
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        Environment {
            variables: variables
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        }
    }

    /// The value of the variable `name`, if set.
    pub fn get(&self, name: &str) -> Option<OsString> {
        self.variables.get(OsStr::new(name)).cloned()
    }

    /// The variables that set config keys: named `SOCKWAY_…` with `__` in the name. Others
    /// (`SOCKWAY_MANAGEMENT_SECRET`, read through a `*_env` key) are not config.
    pub(super) fn config_variables(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.variables
            .iter()
            .filter(|(name, _)| is_config_variable(name))
            .map(|(name, value)| (name.as_os_str(), value.as_os_str()))
    }
}

/// Whether a variable named `name` sets a config key.
fn is_config_variable(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(VARIABLE_PREFIX.as_bytes())
        && bytes[VARIABLE_PREFIX.len()..]
            .windows(SEGMENT_SEPARATOR.len())
            .any(|window| window == SEGMENT_SEPARATOR.as_bytes())
}

impl Origins {
    /// Reserves the offsets of `text`; its spans are shifted by the returned base.
    pub(super) fn add_text(&mut self, origin: &str, text: &str) -> usize {
        self.reserve(
            text.len(),
            RegionKind::Text {
                origin: origin.to_owned(),
                text: text.to_owned(),
            },
        )
        .start
    }

    /// Reserves a range for `value`, the value of the variable `name`; `secret` when it sets
    /// a secret, which messages then never quote.
    pub(super) fn add_variable(&mut self, name: &str, value: &str, secret: bool) -> Range<usize> {
        self.reserve(
            value.len(),
            RegionKind::Variable {
                name: name.to_owned(),
                secret: secret.then(|| value.to_owned()),
            },
        )
    }

    /// Reserves a range for what was read from `path`, which the `*_file` key `key_path`,
    /// whose value starts at `named_at`, names.
    pub(super) fn add_file(
        &mut self,
        path: &str,
        key_path: &str,
        named_at: usize,
        content: &str,
    ) -> Range<usize> {
        self.reserve(
            content.len(),
            RegionKind::File {
                path: path.to_owned(),
                key_path: key_path.to_owned(),
                named_at,
                content: content.to_owned(),
            },
        )
    }

    /// One more offset than `length`, so that an empty value still has a place of its own.
    fn reserve(&mut self, length: usize, what: RegionKind) -> Range<usize> {
        let start = self.end;
        self.end = start + length + 1;
        self.regions.push(Region { start, what });
        start..start + length.max(1)
    }

    fn region(&self, offset: usize) -> Option<&Region> {
        let index = self
            .regions
            .partition_point(|region| region.start <= offset)
            .checked_sub(1)?;
        self.regions.get(index)
    }

    /// The origin and line of `offset`, for a problem.
    pub(super) fn locate(&self, offset: usize) -> Location {
        match self
            .region(offset)
            .map(|region| (region.start, &region.what))
        {
            Some((start, RegionKind::Text { origin, text })) => Location {
                origin: origin.clone(),
                line: Some(line_of(text, offset - start)),
            },
            Some((_, RegionKind::Variable { name, .. })) => Location {
                origin: format!("environment variable {name}"),
                line: None,
            },
            Some((_, RegionKind::File { path, .. })) => Location {
                origin: format!("file {path}"),
                line: None,
            },
            None => Location {
                origin: String::new(),
                line: None,
            },
        }
    }

    /// A problem no span locates (a key missing from the whole document): named after the
    /// first text.
    pub(super) fn unlocated(&self, key_path: String, message: String) -> ConfigProblem {
        let origin = self
            .regions
            .iter()
            .find_map(|region| match &region.what {
                RegionKind::Text { origin, .. } => Some(origin.clone()),
                _ => None,
            })
            .unwrap_or_default();
        ConfigProblem {
            key_path,
            origin,
            line: None,
            message,
        }
    }

    /// The source of the value at `offset`.
    pub(super) fn source(&self, offset: usize) -> Source {
        match self
            .region(offset)
            .map(|region| (region.start, &region.what))
        {
            Some((start, RegionKind::Text { origin, text })) => Source::Text {
                origin: origin.clone(),
                line: line_of(text, offset - start),
            },
            Some((_, RegionKind::Variable { name, .. })) => Source::Environment {
                variable: name.clone(),
            },
            Some((
                _,
                RegionKind::File {
                    path,
                    key_path,
                    named_at,
                    ..
                },
            )) => Source::File {
                path: path.clone(),
                key_path: key_path.clone(),
                named_by: Box::new(self.source(*named_at)),
            },
            None => Source::Default,
        }
    }

    /// Whether the value at `offset` was read from a file, and so is never printed.
    pub(super) fn is_from_file(&self, offset: usize) -> bool {
        matches!(
            self.region(offset).map(|region| &region.what),
            Some(RegionKind::File { .. })
        )
    }

    /// A problem about the value at `span`: located, and with the content of a file it was
    /// read from replaced by `****` if the message quotes it.
    pub(super) fn problem(
        &self,
        key_path: String,
        span: &Range<usize>,
        message: String,
    ) -> ConfigProblem {
        let Location { origin, line } = self.locate(span.start);
        let hidden = match self.region(span.start).map(|region| &region.what) {
            Some(RegionKind::File { content, .. }) => Some(content),
            Some(RegionKind::Variable {
                secret: Some(value),
                ..
            }) => Some(value),
            _ => None,
        };
        let message = match hidden {
            Some(value) if !value.is_empty() => message
                .replace(&format!("{value:?}"), "\"****\"")
                .replace(value.as_str(), "****"),
            _ => message,
        };
        ConfigProblem {
            key_path,
            origin,
            line,
            message,
        }
    }
}

impl Sources {
    /// Where the value of `key_path` came from: the key itself, else the variable its `*_env`
    /// sibling names, else the default.
    pub fn source_of(&self, key_path: &str) -> Source {
        if let Some(span) = self.spans.get(key_path) {
            return self.origins.source(span.start);
        }
        let env_key = format!("{key_path}{}", super::schema::ENV_SUFFIX);
        match (self.spans.get(&env_key), self.named_variables.get(&env_key)) {
            (Some(span), Some(variable)) => Source::NamedEnvironment {
                variable: variable.clone(),
                key_path: env_key,
                named_by: Box::new(self.origins.source(span.start)),
            },
            _ => Source::Default,
        }
    }

    /// Whether the value of `key_path` was read from a file (and so is never printed).
    pub(super) fn is_from_file(&self, key_path: &str) -> bool {
        self.spans
            .get(key_path)
            .is_some_and(|span| self.origins.is_from_file(span.start))
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Environment")
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.what {
            RegionKind::Text { origin, .. } => format!("text {origin}"),
            RegionKind::Variable { name, .. } => format!("environment variable {name}"),
            RegionKind::File { path, .. } => format!("file {path}"),
        };
        write!(formatter, "{}: {what}", self.start)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Text { origin, line } => write!(formatter, "{origin}:{line}"),
            Source::Environment { variable } => {
                write!(formatter, "environment variable {variable}")
            }
            Source::NamedEnvironment {
                variable,
                key_path,
                named_by,
            } => write!(
                formatter,
                "environment variable {variable}, named by {key_path} ({named_by})"
            ),
            Source::File {
                path,
                key_path,
                named_by,
            } => write!(formatter, "file {path}, named by {key_path} ({named_by})"),
            Source::Default => formatter.write_str("default"),
        }
    }
}
