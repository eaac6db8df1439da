//! Quoting what a user gave back to them, safely. Every error that echoes an input goes
//! through `quote` (a value) or `clip` (a message a library wrote, which may embed one), so
//! a 10 KB group-by or a binary file's bytes cannot blow up an error (gRPC clients refuse
//! status messages over 8 KB) or scribble control codes on a terminal.

/// Characters of a value shown before it is cut.
pub const QUOTE_CHARS: usize = 40;
/// Characters of a message kept by `clip`.
pub const CLIP_CHARS: usize = 1000;

/// `value` in double quotes with control characters (and quotes, backslashes, invisible
/// format characters) escaped; beyond `QUOTE_CHARS` characters only that prefix, then `…`
/// and the value's length: `"abcdef…" (10240 bytes)`.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// `message` on one line with control characters escaped and at most `CLIP_CHARS`
/// characters, then `… (N bytes)`: for errors from parsers and libraries, which may quote
/// the input themselves.
pub fn clip(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(CLIP_CHARS + 32));
    for (n, c) in message.chars().enumerate() {
        if n == CLIP_CHARS {
            out.push_str(&format!("… ({} bytes)", message.len()));
            break;
        }
        if c.is_control() || is_invisible_format(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bidirectional overrides and zero-width characters: shown escaped so a message reads as
/// what it holds.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole_with_controls_escaped() {
        assert_eq!(quote("eu-west-1"), "\"eu-west-1\"");
        assert_eq!(quote("a\nb\u{1b}[31m"), "\"a\\nb\\u{1b}[31m\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn long_values_show_a_prefix_and_their_length() {
        let v = "x".repeat(10_240);
        let q = quote(&v);
        assert_eq!(q, format!("\"{}\"… (10240 bytes)", "x".repeat(QUOTE_CHARS)));
        // Cut on a character boundary, length in bytes.
        let v = "é".repeat(100);
        assert_eq!(
            quote(&v),
            format!("\"{}\"… (200 bytes)", "é".repeat(QUOTE_CHARS))
        );
    }

    #[test]
    fn messages_are_clipped_to_one_escaped_line() {
        assert_eq!(clip("line 1\nline 2\r\0"), "line 1\\nline 2\\r\\u{0}");
        assert_eq!(clip("a\u{202e}b"), "a\\u{202e}b");
        let long = format!("unknown field `{}`", "k".repeat(20_000));
        let c = clip(&long);
        assert!(c.chars().count() < CLIP_CHARS + 20, "{c}");
        assert!(c.ends_with(&format!("… ({} bytes)", long.len())), "{c}");
    }
}
