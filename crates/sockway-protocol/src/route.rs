//! Route keys and the route selection expression (reference §3.1).
//!
//! A WebSocket API picks the route for each inbound message by evaluating its route
//! selection expression against the message body and comparing the result, exactly and
//! case-sensitively, with the route keys. This module parses expressions and evaluates
//! them. Looking the result up in the route table, and falling back to `$default`, belongs
//! to the gateway's routing module.
//!
//! Grammar, as AWS documents it ("selection expressions"): static text plus variables.
//!
//! * `$request.body.PATH` runs to the end of a path token: letters, digits, `_`, `-`, `.`
//!   followed by a name, and bracket segments `[0]`, `['key']`, `["key"]`.
//! * `${request.body.PATH}` is the same variable, explicitly delimited.
//! * `\$` is a literal `$`, so `\$default` is the static key `$default`. A backslash before
//!   anything else is kept as it is.
//!
//! Evaluation is a single pass: the text a variable produces is never evaluated again.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

/// The key of a route: `$connect`, `$disconnect`, `$default` or a custom key such as
/// `sendMessage`. Compared exactly, case included.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RouteKey(String);

/// A parsed route selection expression, such as `$request.body.action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSelectionExpression {
    /// The text the expression was parsed from.
    text: String,
    parts: Vec<Part>,
}

/// Why a route selection expression cannot be parsed. Offsets are byte offsets into the
/// expression text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionExpressionError {
    /// The expression is the empty string.
    #[error("route selection expression is empty")]
    Empty,
    /// A `$` starts something other than `request.body`.
    #[error(
        "route selection expression variable `${variable}` at byte {offset} is not supported: only `$request.body` JSON paths are (write `\\$` for a literal `$`)"
    )]
    UnsupportedVariable {
        /// The variable's name as written after `$` or `${`.
        variable: String,
        /// Where its `$` is.
        offset: usize,
    },
    /// A `$` is followed by nothing that could name a variable.
    #[error(
        "route selection expression has a `$` at byte {offset} that starts no variable (write `\\$` for a literal `$`)"
    )]
    DanglingDollar {
        /// Where the `$` is.
        offset: usize,
    },
    /// A `${` is never closed by `}`.
    #[error("route selection expression has a `${{` at byte {offset} that is never closed")]
    UnterminatedBrace {
        /// Where its `$` is.
        offset: usize,
    },
    /// `request.body` is not followed by a path.
    #[error(
        "route selection expression needs a JSON path after request.body (variable at byte {offset})"
    )]
    MissingPath {
        /// Where the variable's `$` is.
        offset: usize,
    },
    /// A `.` inside `${...}` is not followed by a name.
    #[error("route selection expression has an empty path segment at byte {offset}")]
    EmptySegment {
        /// Where the `.` is.
        offset: usize,
    },
    /// A `[` is never closed by `]`.
    #[error("route selection expression has a `[` at byte {offset} that is never closed")]
    UnterminatedBracket {
        /// Where the `[` is.
        offset: usize,
    },
    /// A bracket segment holds neither an array index nor a quoted key.
    #[error(
        "route selection expression bracket at byte {offset} must hold an array index or a quoted key"
    )]
    InvalidBracket {
        /// Where the `[` is.
        offset: usize,
    },
    /// Something other than a path segment or `}` follows a path inside `${...}`.
    #[error("route selection expression has an unexpected {character:?} at byte {offset}")]
    UnexpectedCharacter {
        /// The character found.
        character: char,
        /// Where it is.
        offset: usize,
    },
}

/// One piece of a parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Static(String),
    /// A `request.body` JSON path.
    Variable(Vec<Segment>),
}

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// An object member: `.name`, `['name']` or `["name"]`.
    Key(String),
    /// An array element: `[3]`.
    Index(usize),
}

impl RouteKey {
    /// The route run when a client connects.
    pub const CONNECT: &'static str = "$connect";
    /// The route run after a connection ended.
    pub const DISCONNECT: &'static str = "$disconnect";
    /// The route for messages whose selected key matches no other route.
    pub const DEFAULT: &'static str = "$default";
    /// The route told when a suspended connection is resumed (a sockway extension, with
    /// `[resume]`).
    pub const RESUME: &'static str = "$resume";

    /// Wraps a route key as written in the configuration or produced by an expression.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The `$connect` key.
    pub fn connect() -> Self {
        Self::new(Self::CONNECT)
    }

    /// The `$disconnect` key.
    pub fn disconnect() -> Self {
        Self::new(Self::DISCONNECT)
    }

    /// The `$resume` key.
    pub fn resume() -> Self {
        Self::new(Self::RESUME)
    }

    /// The `$default` key.
    pub fn default_route() -> Self {
        Self::new(Self::DEFAULT)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a key AWS reserves (it starts with `$`); custom keys must not.
    pub fn is_predefined(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RouteSelectionExpression {
    /// Parses an expression such as `$request.body.action` or
    /// `${request.body.service}/${request.body.action}`.
    pub fn parse(expression: &str) -> Result<Self, SelectionExpressionError> {
        if expression.is_empty() {
            return Err(SelectionExpressionError::Empty);
        }
        let mut cursor = Cursor {
            text: expression,
            position: 0,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        while let Some(character) = cursor.peek() {
            if cursor.rest().starts_with("\\$") {
                literal.push('$');
                cursor.advance(2);
            } else if character == '$' {
                if !literal.is_empty() {
                    parts.push(Part::Static(std::mem::take(&mut literal)));
                }
                parts.push(Part::Variable(parse_variable(&mut cursor)?));
            } else {
                literal.push(character);
                cursor.advance(character.len_utf8());
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Static(literal));
        }
        Ok(Self {
            text: expression.to_owned(),
            parts,
        })
    }

    /// The text the expression was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression against one message body.
    ///
    /// Returns `None` when the expression has variables and the body is not JSON: the
    /// caller routes such a message to `$default`. A path that does not resolve yields `""`.
    /// Resolved values are stringified as follows: a string gives its contents; a number or
    /// boolean its JSON text (`12`, `true`); null gives `""`; an object its compact JSON
    /// text; an array `[` + its elements, each stringified this same way, joined by `, ` +
    /// `]` (AWS documents `[item1, item2]`). Only the string case is verified against AWS.
    ///
    /// An expression made only of static text yields itself for every body, JSON or not:
    /// it reads nothing from the body, so sockway does not require the body to parse.
    /// Whether AWS sends a non-JSON message to `$default` even then is UNVERIFIED.
    pub fn evaluate(&self, body: &str) -> Option<String> {
        let needs_body = self
            .parts
            .iter()
            .any(|part| matches!(part, Part::Variable(_)));
        let value = if needs_body {
            serde_json::from_str::<Value>(body).ok()?
        } else {
            Value::Null
        };
        let mut selected = String::new();
        for part in &self.parts {
            match part {
                Part::Static(text) => selected.push_str(text),
                Part::Variable(path) => {
                    if let Some(found) = resolve(&value, path) {
                        stringify(found, &mut selected);
                    }
                }
            }
        }
        Some(selected)
    }
}

impl FromStr for RouteSelectionExpression {
    type Err = SelectionExpressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RouteSelectionExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The only variable source AWS supports in route selection expressions.
const REQUEST_BODY: &str = "request.body";

/// A position in the expression text; always on a character boundary.
struct Cursor<'a> {
    text: &'a str,
    position: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.position..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    /// Moves past `bytes` bytes, which the caller has checked end on a character boundary.
    fn advance(&mut self, bytes: usize) {
        self.position += bytes;
    }

    /// Consumes characters while `keep` holds and returns them.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &str {
        let start = self.position;
        let length = self
            .rest()
            .find(|character: char| !keep(character))
            .unwrap_or(self.rest().len());
        self.position += length;
        &self.text[start..self.position]
    }
}

/// Characters that make up a name in a dotted path.
fn is_name_character(character: char) -> bool {
    character.is_alphanumeric() || character == '_' || character == '-'
}

/// Parses one variable; the cursor is on its `$`.
fn parse_variable(cursor: &mut Cursor<'_>) -> Result<Vec<Segment>, SelectionExpressionError> {
    let offset = cursor.position;
    cursor.advance(1);
    let braced = cursor.peek() == Some('{');
    if braced {
        if !cursor.rest().contains('}') {
            return Err(SelectionExpressionError::UnterminatedBrace { offset });
        }
        cursor.advance(1);
    }
    let rest = cursor.rest();
    let names_request_body = rest.starts_with(REQUEST_BODY)
        && !rest[REQUEST_BODY.len()..]
            .chars()
            .next()
            .is_some_and(is_name_character);
    if !names_request_body {
        let variable =
            cursor.take_while(|character| is_name_character(character) || character == '.');
        return Err(if variable.is_empty() {
            SelectionExpressionError::DanglingDollar { offset }
        } else {
            SelectionExpressionError::UnsupportedVariable {
                variable: variable.to_owned(),
                offset,
            }
        });
    }
    cursor.advance(REQUEST_BODY.len());
    let path = parse_path(cursor, braced)?;
    if path.is_empty() {
        return Err(SelectionExpressionError::MissingPath { offset });
    }
    if braced {
        match cursor.peek() {
            Some('}') => cursor.advance(1),
            Some(character) => {
                return Err(SelectionExpressionError::UnexpectedCharacter {
                    character,
                    offset: cursor.position,
                });
            }
            None => return Err(SelectionExpressionError::UnterminatedBrace { offset }),
        }
    }
    Ok(path)
}

/// Parses the segments after `request.body`. Outside braces a `.` that no name follows
/// ends the variable and stays static text; inside braces it is an error.
fn parse_path(
    cursor: &mut Cursor<'_>,
    braced: bool,
) -> Result<Vec<Segment>, SelectionExpressionError> {
    let mut path = Vec::new();
    loop {
        match cursor.peek() {
            Some('.') => {
                if !cursor.peek_second().is_some_and(is_name_character) {
                    if braced {
                        return Err(SelectionExpressionError::EmptySegment {
                            offset: cursor.position,
                        });
                    }
                    break;
                }
                cursor.advance(1);
                let name = cursor.take_while(is_name_character);
                path.push(Segment::Key(name.to_owned()));
            }
            Some('[') => path.push(parse_bracket(cursor)?),
            _ => break,
        }
    }
    Ok(path)
}

/// Parses `[0]`, `['key']` or `["key"]`; the cursor is on the `[`. Inside quotes a
/// backslash makes the next character literal.
fn parse_bracket(cursor: &mut Cursor<'_>) -> Result<Segment, SelectionExpressionError> {
    let offset = cursor.position;
    if !cursor.rest().contains(']') {
        return Err(SelectionExpressionError::UnterminatedBracket { offset });
    }
    cursor.advance(1);
    let segment = match cursor.peek() {
        Some(quote @ ('\'' | '"')) => {
            cursor.advance(1);
            let mut key = String::new();
            loop {
                match cursor.peek() {
                    None => return Err(SelectionExpressionError::UnterminatedBracket { offset }),
                    Some(character) if character == quote => {
                        cursor.advance(1);
                        break;
                    }
                    Some('\\') => {
                        cursor.advance(1);
                        let Some(escaped) = cursor.peek() else {
                            return Err(SelectionExpressionError::UnterminatedBracket { offset });
                        };
                        key.push(escaped);
                        cursor.advance(escaped.len_utf8());
                    }
                    Some(character) => {
                        key.push(character);
                        cursor.advance(character.len_utf8());
                    }
                }
            }
            Segment::Key(key)
        }
        Some(digit) if digit.is_ascii_digit() => {
            let digits = cursor.take_while(|character| character.is_ascii_digit());
            let index = digits
                .parse()
                .map_err(|_| SelectionExpressionError::InvalidBracket { offset })?;
            Segment::Index(index)
        }
        _ => return Err(SelectionExpressionError::InvalidBracket { offset }),
    };
    if cursor.peek() != Some(']') {
        return Err(SelectionExpressionError::InvalidBracket { offset });
    }
    cursor.advance(1);
    Ok(segment)
}

/// Follows `path` from `value`; `None` when a step does not exist.
fn resolve<'v>(value: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |current, segment| match segment {
            Segment::Key(key) => current.as_object()?.get(key),
            Segment::Index(index) => current.as_array()?.get(*index),
        })
}

/// Appends the route-selection text of `value` to `out`.
fn stringify(value: &Value, out: &mut String) {
    match value {
        Value::Null => {}
        Value::String(text) => out.push_str(text),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => out.push_str(&value.to_string()),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                stringify(item, out);
            }
            out.push(']');
        }
    }
}

#[cfg(test)]
mod tests;
