//! Template text to a [`Value`] tree: YAML (CloudFormation, SAM, `serverless.yml`) and JSON
//! (`cdk synth`), which is YAML 1.2 too, through one loader.
//!
//! The loader is built on `saphyr-parser`'s events so that it sees tags: CloudFormation's
//! short forms become the long forms JSON templates use (`!Ref X` → `{"Ref": X}`,
//! `!GetAtt A.B` → `{"Fn::GetAtt": [A, B]}`, `!Sub s` → `{"Fn::Sub": s}`, `!Condition C` →
//! `{"Condition": C}`), so evaluation has one form to deal with. Anchors, aliases and `<<`
//! merge keys (common in `serverless.yml`) are resolved here. What the values mean is for
//! `cloudformation` and `serverless`.

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

/// A YAML or JSON value, with mappings in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number as written (integers and decimals).
    Number(String),
    /// A string.
    String(String),
    /// A sequence.
    List(Vec<Value>),
    /// A mapping with string keys, in document order.
    Map(Map),
}

/// A mapping in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Map(pub(crate) Vec<(String, Value)>);

/// Why the text is not a YAML or JSON document.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What the parser found.
    pub message: String,
}

/// Parses the first document of `text`.
pub(crate) fn parse(text: &str) -> Result<Value, SyntaxError> {
    let mut loader = Loader::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|error| SyntaxError {
            line: error.marker().line(),
            column: error.marker().col() + 1,
            message: error.info().to_owned(),
        })?;
        if loader.event(event).map_err(|message| SyntaxError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message,
        })? {
            break;
        }
    }
    Ok(loader.document.unwrap_or(Value::Null))
}

/// A collection being built.
enum Frame {
    List {
        items: Vec<Value>,
        anchor: usize,
        tag: Option<Tag>,
    },
    Map {
        entries: Map,
        key: Option<String>,
        anchor: usize,
        tag: Option<Tag>,
    },
}

#[derive(Default)]
struct Loader {
    stack: Vec<Frame>,
    anchors: Vec<(usize, Value)>,
    document: Option<Value>,
}

impl Loader {
    /// Takes one event; `Ok(true)` once the first document is complete.
    fn event(&mut self, event: Event<'_>) -> Result<bool, String> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref());
                self.complete(value, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                self.stack.push(Frame::List {
                    items: Vec::new(),
                    anchor,
                    tag: tag.map(|tag| tag.into_owned()),
                });
                Ok(false)
            }
            Event::MappingStart(anchor, tag) => {
                self.stack.push(Frame::Map {
                    entries: Map::default(),
                    key: None,
                    anchor,
                    tag: tag.map(|tag| tag.into_owned()),
                });
                Ok(false)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, tag) = match self.stack.pop() {
                    Some(Frame::List { items, anchor, tag }) => (Value::List(items), anchor, tag),
                    Some(Frame::Map {
                        entries,
                        anchor,
                        tag,
                        ..
                    }) => (Value::Map(entries), anchor, tag),
                    None => return Err("unbalanced collection".to_owned()),
                };
                self.complete(tagged(value, tag.as_ref()), anchor)
            }
            Event::Alias(anchor) => {
                let value = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == anchor)
                    .map(|(_, value)| value.clone())
                    .ok_or_else(|| "alias to an unknown anchor".to_owned())?;
                self.complete(value, 0)
            }
            Event::DocumentEnd => Ok(self.document.is_some()),
            _ => Ok(false),
        }
    }

    /// Places a finished value in its parent, or makes it the document.
    fn complete(&mut self, value: Value, anchor: usize) -> Result<bool, String> {
        if anchor != 0 {
            self.anchors.push((anchor, value.clone()));
        }
        match self.stack.last_mut() {
            None => {
                self.document = Some(value);
                Ok(false)
            }
            Some(Frame::List { items, .. }) => {
                items.push(value);
                Ok(false)
            }
            Some(Frame::Map { entries, key, .. }) => {
                match key.take() {
                    None => *key = Some(key_text(value)?),
                    Some(name) if name == "<<" => merge(entries, value)?,
                    Some(name) => {
                        entries.0.retain(|(existing, _)| *existing != name);
                        entries.0.push((name, value));
                    }
                }
                Ok(false)
            }
        }
    }
}

/// A `<<` merge key: the entries of a mapping (or of each mapping of a list) the mapping
/// does not set itself.
fn merge(entries: &mut Map, value: Value) -> Result<(), String> {
    let sources = match value {
        Value::Map(map) => vec![map],
        Value::List(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Map(map) => Ok(map),
                _ => Err("`<<` merges mappings only".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("`<<` merges mappings only".to_owned()),
    };
    for source in sources {
        for (name, value) in source.0 {
            if entries.get(&name).is_none() {
                entries.0.push((name, value));
            }
        }
    }
    Ok(())
}

fn key_text(value: Value) -> Result<String, String> {
    match value {
        Value::String(text) | Value::Number(text) => Ok(text),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Null => Ok(String::new()),
        Value::List(_) | Value::Map(_) => Err("mapping keys must be scalars".to_owned()),
    }
}

/// A scalar with YAML 1.2's core schema for plain scalars; quoted ones are strings.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    let value = if style != ScalarStyle::Plain || tag.is_some_and(|tag| is_core(tag, "str")) {
        Value::String(text.to_owned())
    } else {
        match text {
            "" | "~" | "null" | "Null" | "NULL" => Value::Null,
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            _ if is_number(text) => Value::Number(text.to_owned()),
            _ => Value::String(text.to_owned()),
        }
    };
    tagged(value, tag)
}

fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty()
        && digits
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_digit())
        && digits.parse::<f64>().is_ok()
}

fn is_core(tag: &Tag, suffix: &str) -> bool {
    tag.handle == "tag:yaml.org,2002:" && tag.suffix == suffix
}

/// Rewrites a CloudFormation short-form tag as its long form.
fn tagged(value: Value, tag: Option<&Tag>) -> Value {
    let Some(tag) = tag else {
        return value;
    };
    if tag.handle != "!" || tag.suffix.is_empty() {
        return value;
    }
    let name = tag.suffix.as_str();
    let value = match (name, value) {
        ("GetAtt", Value::String(text)) => match text.split_once('.') {
            Some((resource, attribute)) => Value::List(vec![
                Value::String(resource.to_owned()),
                Value::String(attribute.to_owned()),
            ]),
            None => Value::String(text),
        },
        (_, value) => value,
    };
    let key = match name {
        "Ref" | "Condition" => name.to_owned(),
        _ => format!("Fn::{name}"),
    };
    Value::Map(Map(vec![(key, value)]))
}

impl Map {
    /// The value under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// The entries in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(name, value)| (name, value))
    }
}

impl Value {
    /// The mapping, if this is one.
    pub(crate) fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|map| map.get(key))
    }

    /// A string, number or boolean as text.
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Value::String(text) | Value::Number(text) => Some(text.clone()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(Map(entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()))
    }

    fn string(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn short_form_intrinsics_become_long_forms() {
        let value = parse(
            "a: !Ref Table\nb: !GetAtt Fn.Arn\nc: !Sub 'x-${AWS::Region}'\n\
             d: !Join ['/', [integrations, !Ref Integ]]\ne: !If [IsProd, 1, !Ref AWS::NoValue]\n\
             f: !GetAtt [Fn, Arn]\ng: !Condition IsProd\n",
        )
        .unwrap();
        assert_eq!(value.get("a"), Some(&map(vec![("Ref", string("Table"))])));
        let get_att = map(vec![(
            "Fn::GetAtt",
            Value::List(vec![string("Fn"), string("Arn")]),
        )]);
        assert_eq!(value.get("b"), Some(&get_att));
        assert_eq!(value.get("f"), Some(&get_att));
        assert_eq!(
            value.get("c"),
            Some(&map(vec![("Fn::Sub", string("x-${AWS::Region}"))]))
        );
        assert_eq!(
            value.get("d"),
            Some(&map(vec![(
                "Fn::Join",
                Value::List(vec![
                    string("/"),
                    Value::List(vec![
                        string("integrations"),
                        map(vec![("Ref", string("Integ"))])
                    ])
                ])
            )]))
        );
        assert_eq!(
            value.get("e"),
            Some(&map(vec![(
                "Fn::If",
                Value::List(vec![
                    string("IsProd"),
                    Value::Number("1".to_owned()),
                    map(vec![("Ref", string("AWS::NoValue"))])
                ])
            )]))
        );
        assert_eq!(
            value.get("g"),
            Some(&map(vec![("Condition", string("IsProd"))]))
        );
    }

    #[test]
    fn scalars_anchors_and_merge_keys() {
        let value = parse(
            "base: &base {a: 1, b: two}\nmerged:\n  <<: *base\n  b: three\n\
             flags: [true, 'true', null, ~, 1.5, '007', 007x]\nalias: *base\n",
        )
        .unwrap();
        assert_eq!(
            value.get("merged"),
            Some(&map(vec![
                ("a", Value::Number("1".to_owned())),
                ("b", string("three"))
            ]))
        );
        assert_eq!(value.get("alias"), value.get("base"));
        assert_eq!(
            value.get("flags"),
            Some(&Value::List(vec![
                Value::Bool(true),
                string("true"),
                Value::Null,
                Value::Null,
                Value::Number("1.5".to_owned()),
                string("007"),
                string("007x"),
            ]))
        );
    }

    #[test]
    fn json_is_read_by_the_same_loader() {
        let value = parse(r#"{"Resources": {"A": {"Type": "X", "N": [1, "b\/c"]}}}"#).unwrap();
        assert_eq!(
            value.get("Resources").and_then(|r| r.get("A")),
            Some(&map(vec![
                ("Type", string("X")),
                (
                    "N",
                    Value::List(vec![Value::Number("1".to_owned()), string("b/c")])
                )
            ]))
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let error = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(error.line >= 1, "{error}");
    }
}
