//! A lenient parser for one line of the Prometheus text exposition format (0.0.4), as
//! dcgm-exporter writes it: `name{label="value",...} value [timestamp]`. Lenient where real
//! output differs from `promtool`'s taste (camelCase label names, counters without
//! `_total`, a trailing comma in the label set, `\r\n` endings, `# TYPE`/`# HELP`/`# EOF`
//! comments), strict where a reading could be misread: a line that does not have exactly
//! that shape is an error naming what is wrong, never a guessed value.
//!
//! No crate fits: the parsers on crates.io either skip a line they cannot read without
//! saying so (a bad line must be counted) or reject the whole scrape for one bad line.
use std::borrow::Cow;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series<'a> {
    pub name: &'a str,
    /// In the order written; values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// As written: may be NaN or ±Inf (the caller decides what it accepts).
    pub value: f64,
}

impl Series<'_> {
    /// The value of the first label named `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// Parses one line: `Ok(None)` for a blank line or a comment, `Ok(Some)` for a sample, and
/// `Err` describing what is malformed.
pub fn parse_line(line: &str) -> Result<Option<Series<'_>>, String> {
    let line = line.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0, true))
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err("does not start with a metric name".into());
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels).map_err(|e| format!("{name}: {e}"))?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let Some(value_text) = fields.next() else {
        return Err(format!("{name}: no value"));
    };
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("{name}: expected a space before the value"));
    }
    let value = parse_value(value_text)
        .ok_or_else(|| format!("{name}: value {value_text:?} is not a number"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("{name}: timestamp {ts:?} is not an integer"));
    }
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected {extra:?} after the value"));
    }
    Ok(Some(Series {
        name,
        labels,
        value,
    }))
}

/// A number as the format writes it: decimal or exponent notation, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        // Rust's parser would also take "inf", "infinity" and "nan" in any case.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

fn is_name_char(c: char, first: bool, colon_ok: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (colon_ok && c == ':') || (!first && c.is_ascii_digit())
}

/// Reads `name="value", ...}` (after the `{`), pushing each label; returns what follows
/// the `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    out: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let end = s
            .char_indices()
            .find(|&(i, c)| !is_name_char(c, i == 0, false))
            .map_or(s.len(), |(i, _)| i);
        if end == 0 {
            return Err(match s.chars().next() {
                None => "label set not closed".into(),
                Some(c) => format!("expected a label name, found {c:?}"),
            });
        }
        let key = &s[..end];
        s = s[end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {key}: expected ="))?
            .trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: value not in double quotes"))?;
        let (value, rest) = quoted(s).ok_or_else(|| format!("label {key}: value not closed"))?;
        out.push((key, value));
        s = rest.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if s.is_empty() {
            return Err("label set not closed".into());
        } else if !s.starts_with('}') {
            return Err(format!("after label {key}: expected , or }}"));
        }
    }
}

/// The body of a quoted label value (after the opening quote), unescaped, and what follows
/// its closing quote. `None` when it is not closed.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    None => Cow::Borrowed(&s[..i]),
                    Some(mut o) => {
                        o.push_str(&s[copied..i]);
                        Cow::Owned(o)
                    }
                };
                return Some((value, &s[i + 1..]));
            }
            b'\\' if i + 1 < bytes.len() => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&s[copied..i]);
                match bytes[i + 1] {
                    b'n' => o.push('\n'),
                    b'\\' => o.push('\\'),
                    b'"' => o.push('"'),
                    // An unknown escape is kept as written: the backslash here, what follows
                    // it (maybe a multi-byte character) by the loop.
                    _ => {
                        o.push('\\');
                        i += 1;
                        copied = i;
                        continue;
                    }
                }
                i += 2;
                copied = i;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/run.sh` (target dcgm): a backslash before a multi-byte character in a
    /// label value sliced inside the character and panicked.
    #[test]
    fn an_unknown_escape_before_a_multi_byte_character_is_kept_as_written() {
        let s = parse_line("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",Hostname=\"h\\é\\\\\\\"x\"} 7")
            .unwrap()
            .unwrap();
        assert_eq!(s.label("Hostname"), Some("h\\é\\\"x"));
        assert_eq!(s.value, 7.0);
    }

    #[test]
    fn a_dcgm_line_with_camel_case_labels_parses() {
        let s = parse_line(
            r#"DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-a8",modelName="NVIDIA RTX 4000 Ada Generation",Hostname="lke5",pod_uid=""} 0.004656"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.name, "DCGM_FI_PROF_GR_ENGINE_ACTIVE");
        assert_eq!(s.label("gpu"), Some("0"));
        assert_eq!(s.label("modelName"), Some("NVIDIA RTX 4000 Ada Generation"));
        assert_eq!(s.label("pod_uid"), Some(""));
        assert_eq!(s.label("missing"), None);
        assert_eq!(s.value, 0.004656);
    }

    #[test]
    fn comments_blank_lines_and_lenient_forms_are_accepted() {
        for l in ["", "   ", "# HELP x y", "# TYPE x gauge", "# EOF", "\r"] {
            assert_eq!(parse_line(l).unwrap(), None, "{l:?}");
        }
        let s = parse_line("up 1\r").unwrap().unwrap();
        assert_eq!((s.name, s.value), ("up", 1.0));
        let s = parse_line(r#"m{a="1",} 2 1700000000000"#).unwrap().unwrap();
        assert_eq!((s.label("a"), s.value), (Some("1"), 2.0));
        let s = parse_line(r#"m { a = "x" , b="y" }  3e2"#);
        assert!(
            s.is_err(),
            "a space between name and labels is not the format"
        );
        let s = parse_line(r#"m{ a = "x" , b="y" }  3e2"#).unwrap().unwrap();
        assert_eq!((s.label("b"), s.value), (Some("y"), 300.0));
        let s = parse_line("m{} -1.5").unwrap().unwrap();
        assert_eq!(s.value, -1.5);
        assert!(parse_line("m NaN").unwrap().unwrap().value.is_nan());
        assert_eq!(parse_line("m +Inf").unwrap().unwrap().value, f64::INFINITY);
    }

    #[test]
    fn escaped_label_values_are_unescaped() {
        let s = parse_line(r#"m{a="q\"b\\s\nx}",b="}"} 1"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.label("a"), Some("q\"b\\s\nx}"));
        assert_eq!(s.label("b"), Some("}"));
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_problem() {
        for (line, needle) in [
            ("{a=\"1\"} 1", "metric name"),
            ("m{a=\"1\" 1", "expected , or }"),
            ("m{a=\"1} 1", "not closed"),
            ("m{a=1} 1", "double quotes"),
            ("m{a} 1", "expected ="),
            ("m{,} 1", "label name"),
            ("m{a=\"1\"}", "no value"),
            ("m{a=\"1\"}1", "space before the value"),
            ("m", "no value"),
            ("m abc", "not a number"),
            ("m inf", "not a number"),
            ("m 1 2 3", "unexpected"),
            ("m 1 soon", "timestamp"),
            ("m{a=\"1\"", "not closed"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(needle), "{line:?}: {e}");
        }
    }
}
