//! CloudFormation's intrinsic functions, evaluated as CloudFormation would at deploy time,
//! except that references to resources stay references.
//!
//! `Ref`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::If` (with `Conditions`:
//! `Fn::Equals`, `Fn::And`, `Fn::Or`, `Fn::Not`, `Condition`), `Fn::FindInMap`,
//! `Fn::GetAZs`, `Fn::Base64` and `Fn::Length` are evaluated against the parameters (their
//! defaults and `--parameter-overrides`), the pseudo parameters and `Mappings`. A `Ref` or
//! `Fn::GetAtt` of a resource cannot have its deployed value, so it stays a
//! [`Segment::Resource`] inside the [`Text`] it is part of: the translator then sees that an
//! integration URI names `OnConnectFunction.Arn`, whatever function built the string.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::yaml::{Map, Value};

/// A string under construction: literal text and references to resources.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Text(pub(crate) Vec<Segment>);

/// A piece of a [`Text`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    /// Literal characters.
    Literal(String),
    /// `Ref` (no attribute) or `Fn::GetAtt` of a resource.
    Resource {
        logical_id: String,
        attribute: Option<String>,
    },
}

/// An evaluated value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Evaluated {
    Null,
    Bool(bool),
    Number(String),
    Text(Text),
    List(Vec<Evaluated>),
    Map(Vec<(String, Evaluated)>),
    /// `AWS::NoValue`: the property is removed.
    NoValue,
}

/// A parameter's value.
#[derive(Debug, Clone)]
pub(crate) enum Parameter {
    /// Set (a default or an override).
    Value(Evaluated),
    /// Declared without a default and not overridden.
    Missing,
}

/// What intrinsics are evaluated against.
pub(crate) struct Context<'t> {
    pub(crate) parameters: BTreeMap<String, Parameter>,
    pub(crate) pseudo: BTreeMap<&'static str, String>,
    pub(crate) mappings: Option<&'t Map>,
    pub(crate) conditions: Option<&'t Map>,
    pub(crate) resources: Vec<String>,
    /// Conditions evaluated so far (and those being evaluated, as `None`, to catch cycles).
    pub(crate) condition_cache: RefCell<BTreeMap<String, Option<bool>>>,
}

impl Text {
    /// A text of literal characters.
    pub(crate) fn literal(text: impl Into<String>) -> Text {
        Text(vec![Segment::Literal(text.into())])
    }

    /// The text when it holds no resource reference.
    pub(crate) fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Resource { .. } => return None,
            }
        }
        Some(out)
    }

    fn push(&mut self, segment: Segment) {
        match (self.0.last_mut(), segment) {
            (_, Segment::Literal(text)) if text.is_empty() => {}
            (Some(Segment::Literal(last)), Segment::Literal(text)) => last.push_str(&text),
            (_, segment) => self.0.push(segment),
        }
    }

    fn append(&mut self, other: Text) {
        for segment in other.0 {
            self.push(segment);
        }
    }

    /// How the text reads, resources shown as `${Id}` or `${Id.Attribute}`.
    pub(crate) fn display(&self) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Resource {
                    logical_id,
                    attribute: None,
                } => out.push_str(&format!("${{{logical_id}}}")),
                Segment::Resource {
                    logical_id,
                    attribute: Some(attribute),
                } => out.push_str(&format!("${{{logical_id}.{attribute}}}")),
            }
        }
        out
    }
}

impl Evaluated {
    /// The value as text: strings, numbers and booleans.
    pub(crate) fn as_text(&self) -> Option<Text> {
        match self {
            Evaluated::Text(text) => Some(text.clone()),
            Evaluated::Number(number) => Some(Text::literal(number.clone())),
            Evaluated::Bool(flag) => Some(Text::literal(flag.to_string())),
            _ => None,
        }
    }

    /// The value as literal text (no resource references).
    pub(crate) fn as_literal(&self) -> Option<String> {
        self.as_text().and_then(|text| text.as_literal())
    }

    /// The entry `key` of a map.
    pub(crate) fn get(&self, key: &str) -> Option<&Evaluated> {
        match self {
            Evaluated::Map(entries) => entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }
}

impl Context<'_> {
    /// Evaluates every intrinsic in `value`.
    pub(crate) fn evaluate(&self, value: &Value) -> Result<Evaluated, String> {
        match value {
            Value::Null => Ok(Evaluated::Null),
            Value::Bool(flag) => Ok(Evaluated::Bool(*flag)),
            Value::Number(number) => Ok(Evaluated::Number(number.clone())),
            Value::String(text) => Ok(Evaluated::Text(Text::literal(text.clone()))),
            Value::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match self.evaluate(item)? {
                        Evaluated::NoValue => {}
                        value => out.push(value),
                    }
                }
                Ok(Evaluated::List(out))
            }
            Value::Map(map) => {
                if let [(name, argument)] = map.0.as_slice() {
                    if name == "Ref" || name.starts_with("Fn::") {
                        return self.function(name, argument);
                    }
                }
                let mut out = Vec::new();
                for (name, item) in map.iter() {
                    match self.evaluate(item)? {
                        Evaluated::NoValue => {}
                        value => out.push((name.clone(), value)),
                    }
                }
                Ok(Evaluated::Map(out))
            }
        }
    }

    /// Whether the condition `name` of `Conditions` holds.
    pub(crate) fn condition(&self, name: &str) -> Result<bool, String> {
        if let Some(cached) = self.condition_cache.borrow().get(name) {
            return cached.ok_or_else(|| format!("condition {name:?} depends on itself"));
        }
        let definition = self
            .conditions
            .and_then(|conditions| conditions.get(name))
            .ok_or_else(|| format!("condition {name:?} is not defined in Conditions"))?;
        self.condition_cache
            .borrow_mut()
            .insert(name.to_owned(), None);
        let value = self.condition_value(definition)?;
        self.condition_cache
            .borrow_mut()
            .insert(name.to_owned(), Some(value));
        Ok(value)
    }

    fn condition_value(&self, value: &Value) -> Result<bool, String> {
        let Some(map) = value.as_map().filter(|map| map.0.len() == 1) else {
            return match value {
                Value::Bool(flag) => Ok(*flag),
                _ => Err(
                    "a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition"
                        .to_owned(),
                ),
            };
        };
        let (name, argument) = &map.0[0];
        let arguments = || match argument {
            Value::List(items) => Ok(items.as_slice()),
            _ => Err(format!("{name} takes a list")),
        };
        match name.as_str() {
            "Condition" => self.condition(&literal_argument(argument, "Condition")?),
            "Fn::Equals" => {
                let [left, right] = arguments()? else {
                    return Err("Fn::Equals takes two values".to_owned());
                };
                Ok(self.comparable(left)? == self.comparable(right)?)
            }
            "Fn::And" => {
                for item in arguments()? {
                    if !self.condition_value(item)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "Fn::Or" => {
                for item in arguments()? {
                    if self.condition_value(item)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            "Fn::Not" => match arguments()? {
                [item] => Ok(!self.condition_value(item)?),
                _ => Err("Fn::Not takes one condition".to_owned()),
            },
            other => Err(format!("{other} is not a condition function")),
        }
    }

    /// A value as `Fn::Equals` compares it.
    fn comparable(&self, value: &Value) -> Result<String, String> {
        let evaluated = self.evaluate(value)?;
        evaluated
            .as_text()
            .map(|text| text.display())
            .ok_or_else(|| "Fn::Equals compares strings".to_owned())
    }

    fn function(&self, name: &str, argument: &Value) -> Result<Evaluated, String> {
        match name {
            "Ref" => self.reference(&literal_argument(argument, "Ref")?),
            "Fn::GetAtt" => {
                let (resource, attribute) = match argument {
                    Value::List(items) => match items.as_slice() {
                        [resource, attribute] => (
                            literal_argument(resource, "Fn::GetAtt")?,
                            self.evaluate(attribute)?
                                .as_literal()
                                .ok_or("Fn::GetAtt's attribute must be a string")?,
                        ),
                        _ => return Err("Fn::GetAtt takes [resource, attribute]".to_owned()),
                    },
                    Value::String(text) => match text.split_once('.') {
                        Some((resource, attribute)) => (resource.to_owned(), attribute.to_owned()),
                        None => return Err(format!("Fn::GetAtt {text:?} has no attribute")),
                    },
                    _ => return Err("Fn::GetAtt takes [resource, attribute]".to_owned()),
                };
                if !self.resources.contains(&resource) {
                    return Err(format!(
                        "Fn::GetAtt names {resource:?}, which is not a resource of the template"
                    ));
                }
                Ok(Evaluated::Text(Text(vec![Segment::Resource {
                    logical_id: resource,
                    attribute: Some(attribute),
                }])))
            }
            "Fn::Sub" => self.sub(argument),
            "Fn::Join" => {
                let Value::List(items) = argument else {
                    return Err("Fn::Join takes [delimiter, [values]]".to_owned());
                };
                let [delimiter, values] = items.as_slice() else {
                    return Err("Fn::Join takes [delimiter, [values]]".to_owned());
                };
                let delimiter = self
                    .evaluate(delimiter)?
                    .as_literal()
                    .ok_or("Fn::Join's delimiter must be a string")?;
                let Evaluated::List(values) = self.evaluate(values)? else {
                    return Err("Fn::Join joins a list".to_owned());
                };
                let mut joined = Text::default();
                for (index, value) in values.into_iter().enumerate() {
                    if index > 0 {
                        joined.push(Segment::Literal(delimiter.clone()));
                    }
                    joined.append(value.as_text().ok_or("Fn::Join joins strings")?);
                }
                Ok(Evaluated::Text(joined))
            }
            "Fn::Select" => {
                let Value::List(items) = argument else {
                    return Err("Fn::Select takes [index, list]".to_owned());
                };
                let [index, list] = items.as_slice() else {
                    return Err("Fn::Select takes [index, list]".to_owned());
                };
                let index: usize = self
                    .evaluate(index)?
                    .as_literal()
                    .and_then(|index| index.parse().ok())
                    .ok_or("Fn::Select's index must be a number")?;
                let Evaluated::List(values) = self.evaluate(list)? else {
                    return Err("Fn::Select selects from a list".to_owned());
                };
                values
                    .into_iter()
                    .nth(index)
                    .ok_or_else(|| format!("Fn::Select: index {index} is out of the list"))
            }
            "Fn::Split" => {
                let Value::List(items) = argument else {
                    return Err("Fn::Split takes [delimiter, string]".to_owned());
                };
                let [delimiter, text] = items.as_slice() else {
                    return Err("Fn::Split takes [delimiter, string]".to_owned());
                };
                let delimiter = self
                    .evaluate(delimiter)?
                    .as_literal()
                    .ok_or("Fn::Split's delimiter must be a string")?;
                let text = self
                    .evaluate(text)?
                    .as_literal()
                    .ok_or("Fn::Split cannot split a value that refers to a resource")?;
                Ok(Evaluated::List(
                    text.split(delimiter.as_str())
                        .map(|part| Evaluated::Text(Text::literal(part)))
                        .collect(),
                ))
            }
            "Fn::If" => {
                let Value::List(items) = argument else {
                    return Err(
                        "Fn::If takes [condition, value if true, value if false]".to_owned()
                    );
                };
                let [condition, then, otherwise] = items.as_slice() else {
                    return Err(
                        "Fn::If takes [condition, value if true, value if false]".to_owned()
                    );
                };
                if self.condition(&literal_argument(condition, "Fn::If")?)? {
                    self.evaluate(then)
                } else {
                    self.evaluate(otherwise)
                }
            }
            "Fn::FindInMap" => {
                let Value::List(items) = argument else {
                    return Err(
                        "Fn::FindInMap takes [map, top-level key, second-level key]".to_owned()
                    );
                };
                let (keys, default) = match items.as_slice() {
                    [map, top, second] => ([map, top, second], None),
                    [map, top, second, default] => ([map, top, second], Some(default)),
                    _ => {
                        return Err(
                            "Fn::FindInMap takes [map, top-level key, second-level key]".to_owned()
                        );
                    }
                };
                let mut names = Vec::new();
                for key in keys {
                    names.push(
                        self.evaluate(key)?
                            .as_literal()
                            .ok_or("Fn::FindInMap's keys must be strings")?,
                    );
                }
                let found = self
                    .mappings
                    .and_then(|mappings| mappings.get(&names[0]))
                    .and_then(|map| map.get(&names[1]))
                    .and_then(|map| map.get(&names[2]));
                match (found, default) {
                    (Some(value), _) => self.evaluate(value),
                    (None, Some(default)) => self
                        .evaluate(default)?
                        .get("DefaultValue")
                        .cloned()
                        .ok_or_else(|| {
                            "Fn::FindInMap's default must be {DefaultValue: ...}".to_owned()
                        }),
                    (None, None) => Err(format!(
                        "Fn::FindInMap: Mappings has no {}.{}.{}",
                        names[0], names[1], names[2]
                    )),
                }
            }
            "Fn::GetAZs" => {
                let region = self.pseudo.get("AWS::Region").cloned().unwrap_or_default();
                Ok(Evaluated::List(
                    ["a", "b", "c"]
                        .iter()
                        .map(|zone| Evaluated::Text(Text::literal(format!("{region}{zone}"))))
                        .collect(),
                ))
            }
            "Fn::Base64" => self.evaluate(argument),
            "Fn::Length" => match self.evaluate(argument)? {
                Evaluated::List(items) => Ok(Evaluated::Number(items.len().to_string())),
                _ => Err("Fn::Length takes a list".to_owned()),
            },
            "Fn::ImportValue" => Err(
                "Fn::ImportValue reads another stack's export, which only CloudFormation knows; \
                 write the value in the template or pass it as a parameter"
                    .to_owned(),
            ),
            other => Err(format!("{other} is not supported by sockway import")),
        }
    }

    fn reference(&self, name: &str) -> Result<Evaluated, String> {
        if name == "AWS::NoValue" {
            return Ok(Evaluated::NoValue);
        }
        if let Some(value) = self.pseudo.get(name) {
            return Ok(Evaluated::Text(Text::literal(value.clone())));
        }
        if let Some(parameter) = self.parameters.get(name) {
            return match parameter {
                Parameter::Value(value) => Ok(value.clone()),
                Parameter::Missing => Err(format!(
                    "parameter {name:?} has no Default; pass --parameter-overrides {name}=VALUE"
                )),
            };
        }
        if self.resources.iter().any(|resource| resource == name) {
            return Ok(Evaluated::Text(Text(vec![Segment::Resource {
                logical_id: name.to_owned(),
                attribute: None,
            }])));
        }
        Err(format!(
            "Ref to {name:?}, which is neither a parameter nor a resource of the template"
        ))
    }

    fn sub(&self, argument: &Value) -> Result<Evaluated, String> {
        let (template, variables) = match argument {
            Value::String(template) => (template.clone(), Vec::new()),
            Value::List(items) => match items.as_slice() {
                [Value::String(template), Value::Map(variables)] => {
                    let mut evaluated = Vec::new();
                    for (name, value) in variables.iter() {
                        evaluated.push((name.clone(), self.evaluate(value)?));
                    }
                    (template.clone(), evaluated)
                }
                _ => return Err("Fn::Sub takes a string or [string, {variables}]".to_owned()),
            },
            _ => return Err("Fn::Sub takes a string or [string, {variables}]".to_owned()),
        };
        let mut out = Text::default();
        let mut rest = template.as_str();
        while let Some(start) = rest.find("${") {
            out.push(Segment::Literal(rest[..start].to_owned()));
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("Fn::Sub: `${{` without `}}` in {template:?}"))?;
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push(Segment::Literal(format!("${{{literal}}}")));
                continue;
            }
            if let Some((_, value)) = variables.iter().find(|(variable, _)| variable == name) {
                out.append(
                    value
                        .as_text()
                        .ok_or_else(|| format!("Fn::Sub variable {name:?} is not a string"))?,
                );
                continue;
            }
            // `${stageVariables.x}` is API Gateway's, not CloudFormation's: kept for the
            // gateway to substitute.
            if name.starts_with("stageVariables.") {
                out.push(Segment::Literal(format!("${{{name}}}")));
                continue;
            }
            let value = match name.split_once('.') {
                Some((resource, attribute)) if !name.starts_with("AWS::") => {
                    if !self.resources.iter().any(|known| known == resource) {
                        return Err(format!(
                            "Fn::Sub: ${{{name}}} names {resource:?}, which is not a resource of the template"
                        ));
                    }
                    Evaluated::Text(Text(vec![Segment::Resource {
                        logical_id: resource.to_owned(),
                        attribute: Some(attribute.to_owned()),
                    }]))
                }
                _ => self.reference(name)?,
            };
            out.append(
                value
                    .as_text()
                    .ok_or_else(|| format!("Fn::Sub: ${{{name}}} is not a string"))?,
            );
        }
        out.push(Segment::Literal(rest.to_owned()));
        Ok(Evaluated::Text(out))
    }
}

/// The literal string argument of `Ref`, `Condition` and the like.
fn literal_argument(value: &Value, function: &str) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        _ => Err(format!("{function} takes a name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn context(document: &Value) -> Context<'_> {
        let mut parameters = BTreeMap::new();
        parameters.insert(
            "Env".to_owned(),
            Parameter::Value(Evaluated::Text(Text::literal("prod"))),
        );
        parameters.insert("NoDefault".to_owned(), Parameter::Missing);
        parameters.insert(
            "Names".to_owned(),
            Parameter::Value(Evaluated::List(vec![
                Evaluated::Text(Text::literal("a")),
                Evaluated::Text(Text::literal("b")),
            ])),
        );
        Context {
            parameters,
            pseudo: [
                ("AWS::Region", "eu-west-1".to_owned()),
                ("AWS::Partition", "aws".to_owned()),
                ("AWS::StackName", "chat".to_owned()),
            ]
            .into_iter()
            .collect(),
            mappings: document.get("Mappings").and_then(Value::as_map),
            conditions: document.get("Conditions").and_then(Value::as_map),
            resources: vec!["Fn".to_owned(), "Integ".to_owned()],
            condition_cache: RefCell::new(BTreeMap::new()),
        }
    }

    /// Evaluates `expression` (YAML) against a template with a few conditions and mappings;
    /// `expected` is the result as `Text::display` shows it, or `Err(fragment)`.
    #[track_caller]
    fn check(expression: &str, expected: Result<&str, &str>) {
        let document = parse(
            "Conditions:\n  IsProd: !Equals [!Ref Env, prod]\n  IsDev: !Not [!Condition IsProd]\n\
             \x20 Both: !And [!Condition IsProd, !Equals [a, a]]\n  Loop: !Condition Loop\n\
             Mappings:\n  Sizes:\n    prod: {Rate: 100}\n",
        )
        .unwrap();
        let context = context(&document);
        let value = parse(&format!("v: {expression}")).unwrap();
        let result = context.evaluate(value.get("v").unwrap());
        match (result, expected) {
            (Ok(value), Ok(expected)) => {
                let shown = match &value {
                    Evaluated::List(items) => items
                        .iter()
                        .map(|item| item.as_text().unwrap().display())
                        .collect::<Vec<_>>()
                        .join("|"),
                    Evaluated::NoValue => "<no value>".to_owned(),
                    other => other.as_text().unwrap().display(),
                };
                assert_eq!(shown, expected, "{expression}");
            }
            (Err(error), Err(fragment)) => {
                assert!(error.contains(fragment), "{expression}: {error}")
            }
            (result, expected) => panic!("{expression}: got {result:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn intrinsics_evaluate_as_cloudformation_does() {
        check("!Ref Env", Ok("prod"));
        check("!Ref AWS::Region", Ok("eu-west-1"));
        check("!Ref Integ", Ok("${Integ}"));
        check("!GetAtt Fn.Arn", Ok("${Fn.Arn}"));
        check(
            "!Sub 'arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations'",
            Ok(
                "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations",
            ),
        );
        check(
            "!Sub ['${Name}-${!Literal}', {Name: !Ref AWS::StackName}]",
            Ok("chat-${Literal}"),
        );
        check(
            "!Sub 'fn-${stageVariables.version}'",
            Ok("fn-${stageVariables.version}"),
        );
        check(
            "!Join ['/', [integrations, !Ref Integ]]",
            Ok("integrations/${Integ}"),
        );
        check("!Select [1, !Ref Names]", Ok("b"));
        check("!Select [1, !Split [',', 'x,y,z']]", Ok("y"));
        check("!If [IsProd, big, small]", Ok("big"));
        check("!If [IsDev, big, small]", Ok("small"));
        check("!If [Both, !Ref AWS::NoValue, small]", Ok("<no value>"));
        check("!FindInMap [Sizes, !Ref Env, Rate]", Ok("100"));
        check("!GetAZs ''", Ok("eu-west-1a|eu-west-1b|eu-west-1c"));
        check("[a, !Ref AWS::NoValue, b]", Ok("a|b"));
        check(
            "{'Fn::Join': ['', ['arn:', {Ref: 'AWS::Partition'}, ':x:', {'Fn::GetAtt': [Fn, Arn]}]]}",
            Ok("arn:aws:x:${Fn.Arn}"),
        );
    }

    #[test]
    fn intrinsic_errors_say_what_is_wrong() {
        check(
            "!Ref NoDefault",
            Err("--parameter-overrides NoDefault=VALUE"),
        );
        check("!Ref Nothing", Err("neither a parameter nor a resource"));
        check("!GetAtt Missing.Arn", Err("not a resource of the template"));
        check("!If [Loop, a, b]", Err("depends on itself"));
        check("!If [Unknown, a, b]", Err("not defined in Conditions"));
        check(
            "!FindInMap [Sizes, dev, Rate]",
            Err("Mappings has no Sizes.dev.Rate"),
        );
        check("!ImportValue shared-table", Err("another stack's export"));
        check(
            "!Sub '${Missing.Arn}'",
            Err("not a resource of the template"),
        );
    }
}
