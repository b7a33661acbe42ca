//! From the merged TOML document to the raw config, and how problems are located in it.
//!
//! Parsing stops at the first serde error (unknown key, wrong type, missing key), because
//! serde cannot go on after one. The error becomes a single [`ConfigProblem`] with the key
//! path from `serde_path_to_error`, located by the span of the value it concerns (a line of a
//! text, an environment variable, a file: see `sources`). Merging the texts and variables
//! into the document is `layers`'s; checking values is `validate`'s.

use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::ConfigProblem;
use super::raw::RawConfig;
use super::sources::Origins;

/// Deserialises the raw config from the merged `document`, turning the first type error into
/// a problem, with its offset.
pub(super) fn parse(
    document: &DeTable<'_>,
    origins: &Origins,
) -> Result<RawConfig, (usize, ConfigProblem)> {
    let deserializer = toml::de::Deserializer::from(Spanned::new(0..0, document.clone()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let inner = err.inner();
        let span = inner.span();
        let key_path = error_key_path(document, err.path(), span.clone());
        let message = inner.message().to_owned();
        match span {
            Some(span) => (span.start, origins.problem(key_path, &span, message)),
            None => (usize::MAX, origins.unlocated(key_path, message)),
        }
    })
}

/// Writes a key path the way TOML does: dotted, with keys that are not bare keys quoted,
/// e.g. `routes."$connect".integration`.
pub(super) fn key_path<S: AsRef<str>>(segments: &[S]) -> String {
    let quoted: Vec<String> = segments
        .iter()
        .map(|segment| quote_key(segment.as_ref()))
        .collect();
    quoted.join(".")
}

/// The 1-based line holding byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

/// A key as TOML needs it written: bare if it only has `[A-Za-z0-9_-]`, quoted otherwise.
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The key path of a serde error, with array indices written as `[n]` after their key, e.g.
/// `management.credentials[1].access_key_id`.
///
/// `serde_path_to_error` cannot see map keys deserialised as `Spanned<String>` (route keys,
/// integration names, header names): it reports them as unknown segments. Those are filled
/// in from the document itself, by finding the entry whose text holds the error's span.
fn error_key_path(
    document: &DeTable<'_>,
    path: &serde_path_to_error::Path,
    error_span: Option<Range<usize>>,
) -> String {
    let mut table: Option<&DeTable<'_>> = Some(document);
    // The array the last key named, for a following index to step into.
    let mut array: Option<&DeArray<'_>> = None;
    let mut segments: Vec<String> = Vec::new();
    for segment in path.iter() {
        let key = match segment {
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => Some(key.clone()),
            serde_path_to_error::Segment::Seq { index } => {
                let item = array.and_then(|array| array.get(*index));
                table = item.and_then(|item| item.get_ref().as_table());
                array = item.and_then(|item| item.get_ref().as_array());
                match segments.last_mut() {
                    Some(last) => last.push_str(&format!("[{index}]")),
                    None => segments.push(format!("[{index}]")),
                }
                continue;
            }
            serde_path_to_error::Segment::Unknown => table
                .zip(error_span.as_ref())
                .and_then(|(table, span)| entry_holding(table, span.start))
                .map(|key| key.get_ref().to_string()),
        };
        let Some(key) = key else {
            table = None;
            array = None;
            continue;
        };
        // `Spanned` deserialises through a private struct; its field names are not keys.
        if key.starts_with("$__serde_spanned_private") {
            continue;
        }
        let value = table.and_then(|table| table.get(key.as_str()));
        table = value.and_then(|value| value.get_ref().as_table());
        array = value.and_then(|value| value.get_ref().as_array());
        segments.push(quote_key(&key));
    }
    segments.join(".")
}

/// The key of the entry of `table` whose key, value or nested entries hold byte `offset`.
fn entry_holding<'t, 'i>(
    table: &'t DeTable<'i>,
    offset: usize,
) -> Option<&'t Spanned<std::borrow::Cow<'i, str>>> {
    table
        .iter()
        .find(|(key, value)| span_holds(&key.span(), offset) || value_holds(value, offset))
        .map(|(key, _)| key)
}

/// Whether `value` or anything nested in it covers byte `offset`. Tables defined by a
/// `[header]` span only their header, so their entries are searched too.
fn value_holds(value: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    if span_holds(&value.span(), offset) {
        return true;
    }
    match value.get_ref() {
        DeValue::Table(table) => entry_holding(table, offset).is_some(),
        DeValue::Array(array) => array.iter().any(|item| value_holds(item, offset)),
        _ => false,
    }
}

fn span_holds(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}
