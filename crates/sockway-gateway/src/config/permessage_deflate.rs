//! Validation of `[permessage_deflate]` into the protocol crate's [`DeflateConfig`]: whether
//! the gateway accepts RFC 7692 compression, and how it compresses.

use sockway_protocol::websocket::deflate::DeflateConfig;

use super::raw::RawPermessageDeflate;
use super::validate::Problems;

/// Validates `[permessage_deflate]`; `None` when compression is off (the default) or a key
/// is invalid (which is then recorded).
pub(super) fn validate_permessage_deflate(
    raw: &RawPermessageDeflate,
    problems: &mut Problems<'_>,
) -> Option<DeflateConfig> {
    let defaults = DeflateConfig::default();
    let before = problems.count();
    let level = problems.integer("permessage_deflate.level", raw.level.as_ref(), 0..=9, "");
    let min_message_bytes = problems.integer(
        "permessage_deflate.min_message_bytes",
        raw.min_message_bytes.as_ref(),
        0..=i64::from(u32::MAX),
        " bytes",
    );
    let client_max_window_bits = problems.integer(
        "permessage_deflate.client_max_window_bits",
        raw.client_max_window_bits.as_ref(),
        8..=15,
        "",
    );
    let enabled = raw
        .enabled
        .as_ref()
        .is_some_and(|enabled| *enabled.get_ref());
    if !enabled || problems.count() > before {
        return None;
    }
    // The ranges were checked above, so the conversions hold.
    Some(DeflateConfig {
        level: level.map_or(defaults.level, |level| level as u32),
        min_message_bytes: min_message_bytes
            .map_or(defaults.min_message_bytes, |bytes| bytes as usize),
        client_max_window_bits: client_max_window_bits
            .map_or(defaults.client_max_window_bits, |bits| bits as u8),
    })
}

#[cfg(test)]
mod tests {
    use sockway_protocol::websocket::deflate::DeflateConfig;

    use super::super::validate::parse_and_validate;

    #[test]
    fn off_unless_enabled_and_checked() {
        let parse = |text: &str| parse_and_validate(text, &|_| None);
        assert_eq!(parse("").unwrap().permessage_deflate, None);
        assert_eq!(
            parse("[permessage_deflate]\nlevel = 5\n")
                .unwrap()
                .permessage_deflate,
            None
        );
        assert_eq!(
            parse("[permessage_deflate]\nenabled = true\n")
                .unwrap()
                .permessage_deflate,
            Some(DeflateConfig::default())
        );
        assert_eq!(
            parse(
                "[permessage_deflate]\nenabled = true\nlevel = 6\nmin_message_bytes = 0\nclient_max_window_bits = 10\n"
            )
            .unwrap()
            .permessage_deflate,
            Some(DeflateConfig {
                level: 6,
                min_message_bytes: 0,
                client_max_window_bits: 10,
            })
        );
        let problems = parse("[permessage_deflate]\nenabled = true\nclient_max_window_bits = 16\n")
            .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].key_path,
            "permessage_deflate.client_max_window_bits"
        );
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0].message.contains("between 8 and 15"),
            "{problems:?}"
        );
        let problems = parse("[permessage_deflate]\nlevel = 10\n").unwrap_err();
        assert_eq!(problems[0].key_path, "permessage_deflate.level");
    }
}
