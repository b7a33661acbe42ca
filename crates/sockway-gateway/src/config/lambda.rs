//! Lambda function references: the `function`, `endpoint_url` and `region` keys that a
//! `lambda` integration and a `lambda` authorizer share, validated into a [`LambdaTarget`].
//!
//! `function` accepts what AWS's Invoke API accepts as `FunctionName`, checked against AWS's
//! own pattern (written out by hand below rather than with a regex engine), with an optional
//! `:qualifier`. Signing and sending the Invoke request belong to `gateway::integrations` and
//! `gateway::authorizers`.

use std::ops::Range;

use serde_spanned::Spanned;

use super::LambdaTarget;
use super::parse::key_path;
use super::validate::{Problems, region_problem};

/// A `function` value split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FunctionReference<'t> {
    /// Everything before the qualifier: the `FunctionName` of the Invoke API.
    pub(super) function_name: &'t str,
    /// The version or alias after the last `:`, when there is one.
    pub(super) qualifier: Option<&'t str>,
    /// The region part of an ARN, when there is one.
    pub(super) region: Option<&'t str>,
}

/// The keys of a table that locate a Lambda function, each `None` when absent.
pub(super) struct RawLambdaKeys<'r> {
    /// `function`: required.
    pub(super) function: Option<&'r Spanned<String>>,
    /// `endpoint_url`: optional.
    pub(super) endpoint_url: Option<&'r Spanned<String>>,
    /// `region`: optional.
    pub(super) region: Option<&'r Spanned<String>>,
}

/// What a missing `function` is reported against: the table's key path segments, the span
/// to locate the problem at, and who needs the key (e.g. `integrations of type "lambda"`).
pub(super) struct LambdaOwner<'o> {
    /// Key path segments of the table, e.g. `["integrations", "chat"]`.
    pub(super) table: &'o [&'o str],
    /// Where a missing `function` is reported.
    pub(super) span: Range<usize>,
    /// Who needs `function`, in the plural, for the message.
    pub(super) needed_by: &'o str,
}

/// AWS's limit on the whole `FunctionName` (with a qualifier).
const MAX_FUNCTION_LEN: usize = 170;
/// AWS's limit on a function's own name.
const MAX_NAME_LEN: usize = 64;
/// AWS's limit on a qualifier.
const MAX_QUALIFIER_LEN: usize = 128;

/// Validates the Lambda keys of `owner.table`; `None` if any has a problem (recorded).
///
/// The region is the `region` key, else the region inside an ARN, else `default_region`,
/// else none (the AWS SDK's region, when the function is called).
pub(super) fn lambda_target(
    keys: RawLambdaKeys<'_>,
    owner: LambdaOwner<'_>,
    default_region: Option<&str>,
    problems: &mut Problems<'_>,
) -> Option<LambdaTarget> {
    let path = |key: &str| {
        let mut segments = owner.table.to_vec();
        segments.push(key);
        key_path(&segments)
    };
    let before = problems.count();
    let region = problems.string(&path("region"), keys.region, region_problem);
    let endpoint_url = keys.endpoint_url.and_then(|raw| {
        let uri = problems.http_uri(&path("endpoint_url"), Some(raw))?;
        if uri.query().is_some() {
            problems.add(
                path("endpoint_url"),
                raw.span(),
                format!("endpoint URL {:?} must not have a query", raw.get_ref()),
            );
            return None;
        }
        Some(uri)
    });
    let Some(raw_function) = keys.function else {
        problems.add(
            path("function"),
            owner.span,
            format!("missing: {} need a function", owner.needed_by),
        );
        return None;
    };
    let reference = match parse_function(raw_function.get_ref()) {
        Ok(reference) => reference,
        Err(message) => {
            problems.add(path("function"), raw_function.span(), message);
            return None;
        }
    };
    if problems.count() > before {
        return None;
    }
    let region = region
        .or_else(|| reference.region.map(str::to_owned))
        .or_else(|| default_region.map(str::to_owned));
    Some(LambdaTarget {
        function_name: reference.function_name.to_owned(),
        qualifier: reference.qualifier.map(str::to_owned),
        region,
        endpoint_url,
    })
}

/// Splits a `function` value, checking it against AWS's `FunctionName` pattern with an
/// optional qualifier:
///
/// ```text
/// (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1}:)?(\d{12}:)?
/// (function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?
/// ```
///
/// None of the parts may contain `:`, so the text is matched `:`-separated segment by
/// segment. Where the pattern is ambiguous (`function:chat` could be a name and a
/// qualifier), the optional prefixes win, as they would in a regex engine: each is tried
/// present before absent. The error is a message for the user.
pub(super) fn parse_function(text: &str) -> Result<FunctionReference<'_>, String> {
    if text.is_empty() {
        return Err("function name must not be empty".to_owned());
    }
    if text.len() > MAX_FUNCTION_LEN {
        return Err(format!(
            "function is {} characters long; AWS allows at most {MAX_FUNCTION_LEN}",
            text.len()
        ));
    }
    let segments: Vec<&str> = text.split(':').collect();
    // Each bit of `absent` leaves out one optional prefix, the ARN prefix in the highest bit
    // and `function:` in the lowest; counting up tries the combinations in the order a
    // backtracking regex engine would, each prefix present before absent.
    for absent in 0u8..16 {
        let present = |prefix: u8| absent & (0b1000 >> prefix) == 0;
        let mut index = 0;
        let mut region = None;
        if present(0) {
            let arn = segments.get(index..index + 3);
            let Some(["arn", partition, "lambda"]) = arn else {
                continue;
            };
            if !is_partition(partition) {
                continue;
            }
            index += 3;
        }
        if present(1) {
            match segments.get(index) {
                Some(segment) if is_region(segment) => region = Some(*segment),
                _ => continue,
            }
            index += 1;
        }
        if present(2) {
            match segments.get(index) {
                Some(segment) if segment.len() == 12 && all_digits(segment) => {}
                _ => continue,
            }
            index += 1;
        }
        if present(3) {
            if segments.get(index) != Some(&"function") {
                continue;
            }
            index += 1;
        }
        let Some(name) = segments.get(index) else {
            continue;
        };
        if !is_name(name) {
            continue;
        }
        let qualifier = match &segments[index + 1..] {
            [] => None,
            [qualifier] if is_qualifier(qualifier) => Some(*qualifier),
            _ => continue,
        };
        if name.len() > MAX_NAME_LEN {
            return Err(format!(
                "function name {name:?} is {} characters long; AWS allows at most \
                 {MAX_NAME_LEN}",
                name.len()
            ));
        }
        if let Some(qualifier) = qualifier.filter(|qualifier| qualifier.len() > MAX_QUALIFIER_LEN) {
            return Err(format!(
                "qualifier is {} characters long; AWS allows at most {MAX_QUALIFIER_LEN}",
                qualifier.len()
            ));
        }
        let function_name = match qualifier {
            Some(qualifier) => &text[..text.len() - qualifier.len() - 1],
            None => text,
        };
        return Ok(FunctionReference {
            function_name,
            qualifier,
            region,
        });
    }
    Err(format!(
        "{text:?} is not a Lambda function name, partial ARN or ARN, optionally followed by \
         :version or :alias (e.g. \"chat\", \"chat:prod\", \"123456789012:function:chat\" or \
         \"arn:aws:lambda:us-east-1:123456789012:function:chat\")"
    ))
}

/// `(aws[a-zA-Z-]*)?`: an ARN partition, possibly empty.
fn is_partition(segment: &str) -> bool {
    segment.is_empty()
        || segment.strip_prefix("aws").is_some_and(|rest| {
            rest.bytes()
                .all(|byte| byte.is_ascii_alphabetic() || byte == b'-')
        })
}

/// `[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1}`: a region such as `us-east-1`,
/// `us-gov-west-1` or `us-isob-east-1`.
fn is_region(segment: &str) -> bool {
    let Some((area, rest)) = segment.split_at_checked(2) else {
        return false;
    };
    if !area.bytes().all(|byte| byte.is_ascii_lowercase()) {
        return false;
    }
    // The optional partition marker is a prefix of the rest; try each, longest first, as
    // the rest must then be exactly `-[a-z]+-\d`.
    ["-gov", "-isob", "-iso", ""].iter().any(|marker| {
        rest.strip_prefix(marker)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(direction, number)| {
                !direction.is_empty()
                    && direction.bytes().all(|byte| byte.is_ascii_lowercase())
                    && number.len() == 1
                    && all_digits(number)
            })
    })
}

/// `[a-zA-Z0-9-_\.]+`: a function's own name.
fn is_name(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// `\$LATEST|[a-zA-Z0-9-_]+`: a version or alias.
fn is_qualifier(segment: &str) -> bool {
    segment == "$LATEST"
        || (!segment.is_empty()
            && segment
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_')))
}

fn all_digits(segment: &str) -> bool {
    segment.bytes().all(|byte| byte.is_ascii_digit())
}
