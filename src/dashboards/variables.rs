//! Template variables as Grafana's front end replaces them in a Postgres query, before the
//! query leaves the browser: `$name`, `${name}`, `${name:format}` and `[[name]]`,
//! `[[name:format]]`; multi-value selections; "All" (the variable's custom `allValue`,
//! inserted as written, or else every option); and the formats `sqlstring` (each value in
//! single quotes, `'` doubled, joined by commas), `csv`, `raw`, `singlequote`, `doublequote`,
//! `pipe`, `json` and `text`. Without a format the Postgres data source quotes a value like
//! `sqlstring` when the variable is multi-value or has "All", and inserts it as written when
//! not. A name that is not a variable is left as it is, as Grafana leaves it.
use std::collections::BTreeMap;

/// What a variable is set to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Grafana's "All" (`$__all`).
    All,
    /// The selected values (one for a single-value variable).
    Values(Vec<String>),
}

impl Selection {
    pub fn one(value: impl Into<String>) -> Selection {
        Selection::Values(vec![value.into()])
    }
}

/// One template variable as the expansion needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub multi: bool,
    pub include_all: bool,
    /// The custom "All" value: SQL inserted as written (its own variables replaced).
    pub all_value: Option<String>,
    /// Every option's value: what "All" stands for when there is no `all_value`.
    pub options: Vec<String>,
    pub selection: Selection,
}

impl Binding {
    /// A single-value variable (a textbox, a constant) set to `value`.
    pub fn single(value: impl Into<String>) -> Binding {
        Binding {
            multi: false,
            include_all: false,
            all_value: None,
            options: Vec::new(),
            selection: Selection::one(value),
        }
    }
}

/// The variables of one dashboard, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bindings {
    vars: BTreeMap<String, Binding>,
}

impl Bindings {
    pub fn new() -> Bindings {
        Bindings::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, binding: Binding) {
        self.vars.insert(name.into(), binding);
    }

    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.vars.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// Sets `name` to `selection`; an error when there is no such variable, or "All" on one
    /// that has none.
    pub fn select(&mut self, name: &str, selection: Selection) -> Result<(), VarError> {
        let b = self.vars.get_mut(name).ok_or_else(|| VarError {
            name: name.into(),
            detail: "no such variable".into(),
        })?;
        if selection == Selection::All && !b.include_all {
            return Err(VarError {
                name: name.into(),
                detail: "has no \"All\" option".into(),
            });
        }
        b.selection = selection;
        Ok(())
    }

    /// The same bindings with `name` set to `selection`.
    pub fn with(mut self, name: &str, selection: Selection) -> Result<Bindings, VarError> {
        self.select(name, selection)?;
        Ok(self)
    }
}

/// A variable that cannot be replaced: the name and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template variable ${name}: {detail}")]
pub struct VarError {
    pub name: String,
    pub detail: String,
}

/// A reference found in a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarRef<'a> {
    /// The whole reference as written (`${team:sqlstring}`).
    pub text: &'a str,
    pub name: &'a str,
    pub format: Option<&'a str>,
}

/// Every `$name`, `${name…}` and `[[name…]]` in `sql`, in order, as Grafana's variable regex
/// finds them (dollar-words that are macros, such as `$__timeFilter`, included).
pub fn references(sql: &str) -> Vec<VarRef<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sql.len() {
        match reference_at(sql, i) {
            Some(r) => {
                i += r.text.len();
                out.push(r);
            }
            None => i += sql[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

fn word_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count()
}

/// The reference starting at byte `i`, if one does.
fn reference_at(sql: &str, i: usize) -> Option<VarRef<'_>> {
    let rest = &sql[i..];
    if let Some(after) = rest.strip_prefix('$') {
        let n = word_len(after);
        if n > 0 {
            return Some(VarRef {
                text: &rest[..1 + n],
                name: &after[..n],
                format: None,
            });
        }
        // ${name(.fieldPath)?(:format)?}
        let inner = after.strip_prefix('{')?;
        let n = word_len(inner);
        if n == 0 {
            return None;
        }
        let name = &inner[..n];
        let mut j = n;
        if inner[j..].starts_with('.') {
            let path = inner[j + 1..]
                .find([':', '^', '}'])
                .unwrap_or(inner.len() - j - 1);
            if path == 0 {
                return None;
            }
            j += 1 + path;
        }
        let mut format = None;
        if inner[j..].starts_with(':') {
            let f = inner[j + 1..].find('}')?;
            if f == 0 {
                return None;
            }
            format = Some(&inner[j + 1..j + 1 + f]);
            j += 1 + f;
        }
        if !inner[j..].starts_with('}') {
            return None;
        }
        return Some(VarRef {
            text: &rest[..2 + j + 1],
            name,
            format,
        });
    }
    // [[name(:format)?]]
    let inner = rest.strip_prefix("[[")?;
    let n = word_len(inner);
    if n == 0 {
        return None;
    }
    let name = &inner[..n];
    let mut j = n;
    let mut format = None;
    if inner[j..].starts_with(':') {
        let f = word_len(&inner[j + 1..]);
        if f == 0 {
            return None;
        }
        format = Some(&inner[j + 1..j + 1 + f]);
        j += 1 + f;
    }
    if !inner[j..].starts_with("]]") {
        return None;
    }
    Some(VarRef {
        text: &rest[..2 + j + 2],
        name,
        format,
    })
}

/// Replaces the variables of `vars` in `sql`; other references stay as written.
pub fn interpolate(sql: &str, vars: &Bindings) -> Result<String, VarError> {
    interpolate_depth(sql, vars, 0)
}

fn interpolate_depth(sql: &str, vars: &Bindings, depth: usize) -> Result<String, VarError> {
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < sql.len() {
        let Some(r) = reference_at(sql, i) else {
            let c = sql[i..].chars().next().expect("i < len");
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        i += r.text.len();
        match vars.get(r.name) {
            Some(b) => out.push_str(&value_text(r.name, b, r.format, vars, depth)?),
            None => out.push_str(r.text),
        }
    }
    Ok(out)
}

/// Formats that take a custom "All" value as it is written (Grafana formats it only for
/// these three).
const ALL_VALUE_FORMATTED: [&str; 3] = ["text", "percentencode", "queryparam"];

fn value_text(
    name: &str,
    b: &Binding,
    format: Option<&str>,
    vars: &Bindings,
    depth: usize,
) -> Result<String, VarError> {
    let err = |detail: String| VarError {
        name: name.into(),
        detail,
    };
    let values: Vec<String> = match &b.selection {
        Selection::All => {
            if format == Some("text") {
                return Ok("All".into());
            }
            match &b.all_value {
                Some(all) if !format.is_some_and(|f| ALL_VALUE_FORMATTED.contains(&f)) => {
                    if depth > 8 {
                        return Err(err("its \"All\" value refers to itself".into()));
                    }
                    return interpolate_depth(all, vars, depth + 1);
                }
                Some(all) => vec![all.clone()],
                None if b.options.is_empty() => {
                    return Err(err(
                        "\"All\" needs an allValue or the variable's options".into()
                    ));
                }
                None => b.options.clone(),
            }
        }
        Selection::Values(v) => v.clone(),
    };
    // A multi-value variable holds an array; "All" without a custom value is every option.
    let array = b.multi || b.selection == Selection::All;
    let quote = |v: &String| format!("'{}'", v.replace('\'', "''"));
    let joined = |sep: &str| values.join(sep);
    Ok(match format {
        None => {
            if array {
                values.iter().map(quote).collect::<Vec<_>>().join(",")
            } else {
                let v = values.first().cloned().unwrap_or_default();
                if b.include_all { quote(&v) } else { v }
            }
        }
        Some("sqlstring") => values.iter().map(quote).collect::<Vec<_>>().join(","),
        Some("csv") | Some("raw") | Some("text") => joined(","),
        Some("pipe") => joined("|"),
        Some("singlequote") => values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(","),
        Some("doublequote") => values
            .iter()
            .map(|v| format!("\"{}\"", v.replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(","),
        Some("json") => {
            if array {
                serde_json::to_string(&values).expect("strings serialize")
            } else {
                serde_json::to_string(values.first().map_or("", String::as_str))
                    .expect("a string serializes")
            }
        }
        Some(other) => return Err(err(format!("unknown format {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multi(all_value: Option<&str>, options: &[&str], selection: Selection) -> Binding {
        Binding {
            multi: true,
            include_all: true,
            all_value: all_value.map(String::from),
            options: options.iter().map(|s| s.to_string()).collect(),
            selection,
        }
    }

    fn vals(v: &[&str]) -> Selection {
        Selection::Values(v.iter().map(|s| s.to_string()).collect())
    }

    fn vars() -> Bindings {
        let mut b = Bindings::new();
        b.insert(
            "provider",
            multi(Some("'__all__'"), &["aws", "gcp"], vals(&["aws", "gcp"])),
        );
        b.insert("team", multi(None, &["ml", "O'Brien"], vals(&["O'Brien"])));
        b.insert("team_tag", Binding::single("team"));
        b.insert(
            "region",
            Binding {
                multi: false,
                include_all: true,
                all_value: None,
                options: vec!["us-east-1".into()],
                selection: Selection::one("us-east-1"),
            },
        );
        b
    }

    fn expand(sql: &str, b: &Bindings) -> String {
        interpolate(sql, b).unwrap()
    }

    #[test]
    fn formats_values_as_grafana_does() {
        let b = vars();
        let cases = [
            ("p IN (${provider:sqlstring})", "p IN ('aws','gcp')"),
            ("p IN ($provider)", "p IN ('aws','gcp')"),
            ("p IN ([[provider]])", "p IN ('aws','gcp')"),
            ("${provider:csv}", "aws,gcp"),
            ("${provider:raw}", "aws,gcp"),
            ("${provider:pipe}", "aws|gcp"),
            ("${provider:json}", "[\"aws\",\"gcp\"]"),
            ("${provider:doublequote}", "\"aws\",\"gcp\""),
            ("[[provider:csv]]", "aws,gcp"),
            // A quote is doubled by sqlstring and by the default format.
            ("t IN (${team:sqlstring})", "t IN ('O''Brien')"),
            ("t IN ($team)", "t IN ('O''Brien')"),
            ("${team:singlequote}", "'O\\'Brien'"),
            // A single-value variable without "All" goes in as written.
            ("tags ->> '$team_tag'", "tags ->> 'team'"),
            ("tags ->> ${team_tag:sqlstring}", "tags ->> 'team'"),
            ("${team_tag}", "team"),
            // Single value with "All": quoted.
            ("$region", "'us-east-1'"),
            ("${region:json}", "\"us-east-1\""),
            // Not variables: left alone.
            (
                "$__timeFilter(day) AND $nope ${nope:csv} [[nope]]",
                "$__timeFilter(day) AND $nope ${nope:csv} [[nope]]",
            ),
            ("$ 1 ${} [[ ]] $", "$ 1 ${} [[ ]] $"),
        ];
        for (sql, want) in cases {
            assert_eq!(expand(sql, &b), want, "{sql}");
        }
    }

    #[test]
    fn longest_word_wins_and_field_paths_are_skipped() {
        let mut b = vars();
        b.insert("team_tag2", Binding::single("x"));
        assert_eq!(expand("$team_tag2 $team_tag", &b), "x team");
        assert_eq!(expand("${team_tag.foo:sqlstring}", &b), "'team'");
    }

    #[test]
    fn all_uses_the_custom_value_as_written_or_every_option() {
        let b = vars()
            .with("provider", Selection::All)
            .unwrap()
            .with("team", Selection::All)
            .unwrap();
        assert_eq!(
            expand("${provider:sqlstring} $provider [[provider:csv]]", &b),
            "'__all__' '__all__' '__all__'"
        );
        assert_eq!(expand("${provider:text}", &b), "All");
        assert_eq!(expand("${team:sqlstring}", &b), "'ml','O''Brien'");
        assert_eq!(expand("$team", &b), "'ml','O''Brien'");
        assert_eq!(expand("${team:csv}", &b), "ml,O'Brien");
    }

    #[test]
    fn a_custom_all_value_has_its_own_variables_replaced() {
        let mut b = vars();
        b.insert(
            "svc",
            multi(Some("${team_tag:sqlstring}"), &[], Selection::All),
        );
        assert_eq!(expand("${svc:sqlstring}", &b), "'team'");
        b.insert("loop", multi(Some("$loop"), &[], Selection::All));
        assert!(interpolate("$loop", &b).is_err());
    }

    #[test]
    fn errors_name_the_variable() {
        let b = vars();
        let e = interpolate("${provider:nosuch}", &b).unwrap_err();
        assert_eq!(e.name, "provider");
        assert!(e.to_string().contains("nosuch"), "{e}");
        let mut b = vars();
        assert!(b.select("team_tag", Selection::All).is_err());
        assert!(b.select("missing", Selection::All).is_err());
        b.insert("empty", multi(None, &[], Selection::All));
        assert!(interpolate("$empty", &b).is_err());
    }

    #[test]
    fn references_lists_what_the_regex_finds() {
        let refs: Vec<(&str, Option<&str>)> =
            references("SELECT $__timeGroupAlias(day, '1d'), ${a:csv}, [[b]], [[c:raw]] FROM t$")
                .into_iter()
                .map(|r| (r.name, r.format))
                .collect();
        assert_eq!(
            refs,
            vec![
                ("__timeGroupAlias", None),
                ("a", Some("csv")),
                ("b", None),
                ("c", Some("raw"))
            ]
        );
        // Multi-byte text around references is kept intact.
        let b = vars();
        assert_eq!(expand("é $team_tag ü", &b), "é team ü");
    }
}
