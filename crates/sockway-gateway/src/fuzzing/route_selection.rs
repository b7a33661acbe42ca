//! The `route_selection` target: parsing a route selection expression and evaluating it
//! against a message body.

use sockway_protocol::route::{RouteSelectionExpression, SelectionExpressionError};

use super::first_line;

/// Input: the expression on the first line, the message body after it (UTF-8, as a text
/// frame is).
///
/// Checks: an expression that parses displays as its own text and re-parses to an equal
/// value; every error offset points at the character the error names; a JSON body always
/// selects a key; an expression that selects a key for a non-JSON body reads nothing from the
/// body, so selects that same key for every body; text without `$` selects itself.
pub fn route_selection(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expression, body) = first_line(text);
    let parsed = match RouteSelectionExpression::parse(expression) {
        Ok(parsed) => parsed,
        Err(error) => {
            check_error(expression, &error);
            return;
        }
    };
    let shown = parsed.to_string();
    assert_eq!(shown, expression, "an expression displays as its text");
    assert_eq!(parsed.as_str(), expression);
    assert_eq!(
        RouteSelectionExpression::parse(&shown).as_ref(),
        Ok(&parsed),
        "a displayed expression re-parses to the same value"
    );

    let selected = parsed.evaluate(body);
    assert_eq!(
        parsed.evaluate(body),
        selected,
        "evaluation is deterministic"
    );
    if serde_json::from_str::<serde_json::Value>(body).is_ok() {
        assert!(selected.is_some(), "a JSON body always selects a key");
    }
    if let Some(fixed) = parsed.evaluate("\u{0} is not JSON") {
        assert_eq!(
            selected.as_deref(),
            Some(fixed.as_str()),
            "an expression that reads nothing from the body selects the same key for every body"
        );
        assert_eq!(parsed.evaluate("{}").as_deref(), Some(fixed.as_str()));
    }
    if !expression.contains('$') {
        assert_eq!(
            selected.as_deref(),
            Some(expression),
            "static text selects itself"
        );
    }
}

/// An error's offset is on a character boundary of the expression and at the character the
/// error is about.
fn check_error(expression: &str, error: &SelectionExpressionError) {
    assert!(!error.to_string().is_empty());
    let (offset, expected) = match error {
        SelectionExpressionError::Empty => {
            assert!(expression.is_empty(), "only the empty expression is empty");
            return;
        }
        SelectionExpressionError::UnsupportedVariable { offset, .. }
        | SelectionExpressionError::DanglingDollar { offset }
        | SelectionExpressionError::UnterminatedBrace { offset }
        | SelectionExpressionError::MissingPath { offset } => (*offset, '$'),
        SelectionExpressionError::EmptySegment { offset } => (*offset, '.'),
        SelectionExpressionError::UnterminatedBracket { offset }
        | SelectionExpressionError::InvalidBracket { offset } => (*offset, '['),
        SelectionExpressionError::UnexpectedCharacter { character, offset } => {
            (*offset, *character)
        }
    };
    assert!(
        expression
            .get(offset..)
            .is_some_and(|rest| rest.starts_with(expected)),
        "{error:?}: byte {offset} of {expression:?} is not {expected:?}"
    );
}
