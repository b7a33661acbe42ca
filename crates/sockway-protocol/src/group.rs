//! Group names: the sockway extension that lets a backend address many connections at once.
//!
//! AWS has no groups; sockway names them in management paths
//! (`/{stage}/@groups/{group}`, `/{stage}/@connections/{id}/groups/{group}`) and in the
//! `X-Sockway-Groups` header of a `$connect` integration's answer. A name is 1 to
//! [`MAX_GROUP_NAME`] characters from `A-Z a-z 0-9 - _ . : ~ @`, so it needs no escaping in a
//! URL path, a header list or a log line, and is compared byte for byte.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest group name, in characters.
pub const MAX_GROUP_NAME: usize = 128;

/// A valid group name. Cloning it is cheap: the text is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(Arc<str>);

/// Why a string is not a valid group name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupNameError {
    /// The name is empty.
    #[error("group name is empty")]
    Empty,
    /// The name is longer than [`MAX_GROUP_NAME`].
    #[error("group name is {length} characters long; at most {MAX_GROUP_NAME} are allowed")]
    TooLong {
        /// The length of the rejected input in bytes.
        length: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error(
        "group name has {character:?} at position {position}; allowed are A-Z a-z 0-9 - _ . : ~ @"
    )]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its zero-based position in characters.
        position: usize,
    },
}

impl GroupName {
    /// Checks `name` and keeps it.
    pub fn parse(name: &str) -> Result<GroupName, GroupNameError> {
        if name.is_empty() {
            return Err(GroupNameError::Empty);
        }
        if let Some((position, character)) = name
            .chars()
            .enumerate()
            .find(|(_, character)| !is_allowed(*character))
        {
            return Err(GroupNameError::InvalidCharacter {
                character,
                position,
            });
        }
        if name.len() > MAX_GROUP_NAME {
            return Err(GroupNameError::TooLong { length: name.len() });
        }
        Ok(GroupName(Arc::from(name)))
    }

    /// Parses a comma-separated list such as the value of `X-Sockway-Groups`
    /// (`"room:1, admins"`); blanks around names and empty items are ignored, and a name
    /// listed twice is kept once.
    pub fn parse_list(list: &str) -> Result<Vec<GroupName>, GroupNameError> {
        let mut names: Vec<GroupName> = Vec::new();
        for item in list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let name = GroupName::parse(item)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_allowed(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.' | ':' | '~' | '@')
}

impl Serialize for GroupName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GroupName {
    /// Reads a group name and checks it, so a deserialized name is as valid as a parsed one.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        GroupName::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in [
            "a",
            "room:42",
            "user@example.com",
            "x-y_z.~",
            &"g".repeat(128),
        ] {
            assert_eq!(GroupName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_what_would_need_escaping() {
        assert_eq!(GroupName::parse(""), Err(GroupNameError::Empty));
        assert_eq!(
            GroupName::parse(&"g".repeat(129)),
            Err(GroupNameError::TooLong { length: 129 })
        );
        for (name, character, position) in [
            ("a/b", '/', 1),
            ("a b", ' ', 1),
            ("ü", 'ü', 0),
            ("a,b", ',', 1),
            ("%41", '%', 0),
        ] {
            assert_eq!(
                GroupName::parse(name),
                Err(GroupNameError::InvalidCharacter {
                    character,
                    position
                }),
                "{name}"
            );
        }
    }

    #[test]
    fn names_deserialize_only_when_valid() {
        let name: GroupName = serde_json::from_str("\"room:1\"").unwrap();
        assert_eq!(name.as_str(), "room:1");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"room:1\"");
        for json in ["\"\"", "\"a/b\"", "1", "null"] {
            assert!(serde_json::from_str::<GroupName>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn lists_are_trimmed_and_deduplicated() {
        let names = GroupName::parse_list(" room:1 ,admins,, room:1 ").unwrap();
        let names: Vec<&str> = names.iter().map(GroupName::as_str).collect();
        assert_eq!(names, ["room:1", "admins"]);
        assert_eq!(GroupName::parse_list("").unwrap(), Vec::<GroupName>::new());
        assert!(GroupName::parse_list("ok, not ok").is_err());
    }
}
