//! Checks on text that users type: message bodies and names.

use crate::limits::{MAX_NAME_BYTES, MAX_TEXT_BYTES};
use crate::{Error, Result};

/// A message text is valid UTF-8 (guaranteed by `&str`) of at most [`MAX_TEXT_BYTES`].
pub fn check_text(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::InvalidText(format!(
            "text is {} bytes; the limit is {MAX_TEXT_BYTES} bytes (64 KiB)",
            text.len()
        )));
    }
    Ok(())
}

/// A name must be short, free of control characters, and show at least one visible character.
pub fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidText(format!(
            "name is {} bytes; the limit is {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidText(
            "name contains control characters".into(),
        ));
    }
    if name.chars().all(is_invisible) {
        return Err(Error::InvalidText(
            "name has no visible character (only spaces or invisible characters)".into(),
        ));
    }
    Ok(())
}

/// Characters that render as nothing: white space, format controls (Unicode Cf), fillers,
/// variation selectors and tags.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x2800 | 0x3164
            | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF)
}

/// True for characters that change the direction of surrounding text.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c as u32, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

/// A name made safe to print among other text: if it holds bidirectional or invisible
/// characters, it is wrapped in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE, and any
/// unbalanced embedding inside cannot leak out.
pub fn isolate_for_display(name: &str) -> String {
    if name
        .chars()
        .any(|c| is_bidi_control(c) || is_invisible(c) && c != ' ')
    {
        let inner: String = name
            .chars()
            .map(|c| if is_bidi_control(c) { '\u{FFFD}' } else { c })
            .collect();
        format!("\u{2068}{inner}\u{2069}")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limit_is_64_kib() {
        assert!(check_text(&"a".repeat(MAX_TEXT_BYTES)).is_ok());
        assert!(check_text(&"a".repeat(MAX_TEXT_BYTES + 1)).is_err());
    }

    #[test]
    fn invisible_names_are_refused() {
        assert!(check_name("\u{200b}\u{200b}").is_err());
        assert!(check_name("   ").is_err());
        assert!(check_name("\u{2066}\u{FEFF}").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("bob").is_ok());
        assert!(check_name("שלום").is_ok());
        assert!(check_name("a\u{200b}b").is_ok());
    }

    #[test]
    fn bidi_names_are_isolated() {
        let shown = isolate_for_display("evil\u{202e}gnp.exe");
        assert!(shown.starts_with('\u{2068}') && shown.ends_with('\u{2069}'));
        assert!(!shown.contains('\u{202e}'));
        assert_eq!(isolate_for_display("bob"), "bob");
    }
}
