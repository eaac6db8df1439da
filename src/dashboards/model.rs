//! A dashboard's JSON model, read as Grafana reads it: the panels (rows' nested panels
//! included, collapsed or not), their data source and queries, and the template variables
//! with their current values. Only what running the queries needs is kept.
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::variables::{Binding, Bindings, Selection};

/// The data source type of Grafana's built-in Postgres plugin (and its older name).
pub const POSTGRES_TYPES: [&str; 2] = ["grafana-postgresql-datasource", "postgres"];

#[derive(Clone, Debug, PartialEq)]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    /// The default time range as written (`now-30d`, `now`).
    pub time_from: String,
    pub time_to: String,
    pub variables: Vec<Variable>,
    /// Every panel, rows' children flattened in order (rows themselves excluded).
    pub panels: Vec<Panel>,
}

/// A data source reference: the uid and type, either of which may be missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSource {
    pub uid: Option<String>,
    pub kind: Option<String>,
}

impl DataSource {
    fn from_json(v: &Value) -> Option<DataSource> {
        match v {
            Value::Null => None,
            // Before Grafana 8.3 a panel named its data source by name.
            Value::String(s) => Some(DataSource {
                uid: Some(s.clone()),
                kind: None,
            }),
            Value::Object(o) => Some(DataSource {
                uid: o.get("uid").and_then(Value::as_str).map(String::from),
                kind: o.get("type").and_then(Value::as_str).map(String::from),
            }),
            _ => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| POSTGRES_TYPES.contains(&k))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub id: Option<i64>,
    pub title: String,
    /// `timeseries`, `stat`, `gauge`, `table`, `barchart`, `bargauge`, `piechart`, ...
    pub kind: String,
    pub datasource: Option<DataSource>,
    /// "Min interval" (`1d`), the floor of `$__interval` for this panel.
    pub interval: Option<String>,
    pub max_data_points: Option<u32>,
    pub targets: Vec<Target>,
    /// The row this panel sits in, if any.
    pub row: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub ref_id: String,
    /// `rawSql`, for SQL data sources.
    pub raw_sql: Option<String>,
    /// `time_series` or `table`.
    pub format: Option<String>,
    /// The target's own data source, when it overrides the panel's.
    pub datasource: Option<DataSource>,
    /// Any other query text (`expr` for Prometheus), so that references can be checked.
    pub other_text: Vec<String>,
}

impl Target {
    /// The data source this query goes to.
    pub fn datasource<'a>(&'a self, panel: &'a Panel) -> Option<&'a DataSource> {
        self.datasource.as_ref().or(panel.datasource.as_ref())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    pub name: String,
    /// `query`, `custom`, `textbox`, `constant`, `interval`, `datasource`, `adhoc`.
    pub kind: String,
    /// The query text: SQL for a `query` variable, the comma-separated options of a
    /// `custom` one, the value of a `constant` or `textbox`.
    pub query: Option<String>,
    pub datasource: Option<DataSource>,
    pub multi: bool,
    pub include_all: bool,
    pub all_value: Option<String>,
    /// The saved current value(s); `["$__all"]` for "All".
    pub current: Vec<String>,
    /// The saved options' values (without "All").
    pub options: Vec<String>,
}

impl Variable {
    /// The saved current selection.
    pub fn current_selection(&self) -> Selection {
        if self.current.iter().any(|v| v == "$__all") {
            Selection::All
        } else {
            Selection::Values(self.current.clone())
        }
    }

    /// The options written in the variable itself: a custom variable's list
    /// (`a, b` or `label : value`), else the saved options.
    pub fn static_options(&self) -> Vec<String> {
        match (self.kind.as_str(), &self.query) {
            ("custom", Some(q)) => q
                .split(',')
                .map(|o| {
                    let o = o.trim();
                    o.split_once(" : ").map_or(o, |(_, v)| v.trim()).to_string()
                })
                .filter(|o| !o.is_empty())
                .collect(),
            _ => self.options.clone(),
        }
    }
}

/// A dashboard that cannot be read: the file (when known) and what is wrong, naming the
/// panel or variable.
#[derive(Debug, thiserror::Error)]
#[error("{}{detail}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct LoadError {
    pub file: Option<PathBuf>,
    pub detail: String,
}

fn load_err(detail: impl Into<String>) -> LoadError {
    LoadError {
        file: None,
        detail: detail.into(),
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A saved value: a string, a list of strings, or a number.
fn values(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Dashboard {
    pub fn from_json(json: &str) -> Result<Dashboard, LoadError> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| load_err(format!("not JSON: {e}")))?;
        Dashboard::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Dashboard, LoadError> {
        if !v.is_object() {
            return Err(load_err("a dashboard is a JSON object"));
        }
        let uid = text(v, "uid").ok_or_else(|| load_err("no uid"))?;
        let title = text(v, "title").unwrap_or_default();
        let time = v.get("time").cloned().unwrap_or(Value::Null);
        let mut panels = Vec::new();
        if let Some(list) = v.get("panels") {
            let list = list
                .as_array()
                .ok_or_else(|| load_err("panels is not a list"))?;
            collect_panels(list, None, &mut panels)?;
        }
        let mut variables = Vec::new();
        if let Some(list) = v.pointer("/templating/list") {
            let list = list
                .as_array()
                .ok_or_else(|| load_err("templating.list is not a list"))?;
            for (i, var) in list.iter().enumerate() {
                variables.push(variable(var).map_err(|d| load_err(format!("variable {i}: {d}")))?);
            }
        }
        Ok(Dashboard {
            uid,
            title,
            time_from: text(&time, "from").unwrap_or_else(|| "now-6h".into()),
            time_to: text(&time, "to").unwrap_or_else(|| "now".into()),
            variables,
            panels,
        })
    }

    /// Reads one dashboard file.
    pub fn load(path: &Path) -> Result<Dashboard, LoadError> {
        let with_file = |e: LoadError| LoadError {
            file: Some(path.to_path_buf()),
            detail: e.detail,
        };
        let json = std::fs::read_to_string(path).map_err(|e| with_file(load_err(e.to_string())))?;
        Dashboard::from_json(&json).map_err(with_file)
    }

    /// Every `*.json` file of `dir`, sorted by file name.
    pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Dashboard)>, LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
            file: Some(dir.to_path_buf()),
            detail: e.to_string(),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| Dashboard::load(&p).map(|d| (p, d)))
            .collect()
    }

    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }

    /// Every SQL query on a Postgres data source: (panel, target, rawSql).
    pub fn sql_queries(&self) -> impl Iterator<Item = (&Panel, &Target, &str)> {
        self.panels.iter().flat_map(|p| {
            p.targets.iter().filter_map(move |t| {
                let sql = t.raw_sql.as_deref()?;
                let postgres = t.datasource(p).is_none_or(DataSource::is_postgres);
                postgres.then_some((p, t, sql))
            })
        })
    }

    /// The variables at their saved current values. A variable with "All" and no saved
    /// value is at "All"; one without either is at its first static option.
    pub fn bindings(&self) -> Bindings {
        let mut b = Bindings::new();
        for v in &self.variables {
            if matches!(v.kind.as_str(), "datasource" | "adhoc") {
                continue;
            }
            let options = v.static_options();
            let selection = match v.current_selection() {
                Selection::Values(vals) if vals.is_empty() => {
                    if v.include_all {
                        Selection::All
                    } else if let Some(q) = v
                        .query
                        .clone()
                        .filter(|_| matches!(v.kind.as_str(), "textbox" | "constant"))
                    {
                        Selection::one(q)
                    } else {
                        Selection::Values(options.iter().take(1).cloned().collect())
                    }
                }
                s => s,
            };
            b.insert(
                v.name.clone(),
                Binding {
                    multi: v.multi,
                    include_all: v.include_all,
                    all_value: v.all_value.clone(),
                    options,
                    selection,
                },
            );
        }
        b
    }
}

fn collect_panels(
    list: &[Value],
    row: Option<&str>,
    out: &mut Vec<Panel>,
) -> Result<(), LoadError> {
    let mut current_row = row.map(String::from);
    for (i, p) in list.iter().enumerate() {
        let title = text(p, "title").unwrap_or_default();
        let kind = text(p, "type").unwrap_or_default();
        let at = || format!("panel {i} ({title:?})");
        if kind == "row" {
            if let Some(children) = p.get("panels") {
                let children = children
                    .as_array()
                    .ok_or_else(|| load_err(format!("{}: panels is not a list", at())))?;
                collect_panels(children, Some(&title), out)?;
            }
            // An expanded row's panels follow it, up to the next row.
            current_row = Some(title);
            continue;
        }
        let id = match p.get("id") {
            None | Some(Value::Null) => None,
            Some(x) => Some(
                x.as_i64()
                    .ok_or_else(|| load_err(format!("{}: id is not an integer", at())))?,
            ),
        };
        let mut targets = Vec::new();
        if let Some(ts) = p.get("targets") {
            let ts = ts
                .as_array()
                .ok_or_else(|| load_err(format!("{}: targets is not a list", at())))?;
            for t in ts {
                let other_text = ["expr", "query", "rawQueryText"]
                    .iter()
                    .filter_map(|k| t.get(*k).and_then(Value::as_str).map(String::from))
                    .collect();
                targets.push(Target {
                    ref_id: text(t, "refId").unwrap_or_default(),
                    raw_sql: text(t, "rawSql"),
                    format: text(t, "format"),
                    datasource: t.get("datasource").and_then(DataSource::from_json),
                    other_text,
                });
            }
        }
        out.push(Panel {
            id,
            title,
            kind,
            datasource: p.get("datasource").and_then(DataSource::from_json),
            interval: text(p, "interval").filter(|s| !s.is_empty()),
            max_data_points: p
                .get("maxDataPoints")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            targets,
            row: current_row.clone(),
        });
    }
    Ok(())
}

fn variable(v: &Value) -> Result<Variable, String> {
    let name = text(v, "name").ok_or("no name")?;
    let query = match v.get("query") {
        Some(Value::String(s)) => Some(s.clone()),
        // Newer Grafana saves a query variable's query as an object.
        Some(Value::Object(o)) => o
            .get("rawSql")
            .or_else(|| o.get("query"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    };
    let options = v
        .get("options")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .flat_map(|o| values(o.get("value")))
                .filter(|x| x != "$__all")
                .collect()
        })
        .unwrap_or_default();
    Ok(Variable {
        kind: text(v, "type").unwrap_or_else(|| "query".into()),
        query,
        datasource: v.get("datasource").and_then(DataSource::from_json),
        multi: v.get("multi").and_then(Value::as_bool).unwrap_or(false),
        include_all: v
            .get("includeAll")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        all_value: text(v, "allValue").filter(|s| !s.is_empty()),
        current: values(v.pointer("/current/value")),
        options,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DASH: &str = r#"{
      "uid": "u1", "title": "T", "time": {"from": "now-90d", "to": "now"},
      "templating": {"list": [
        {"name": "provider", "type": "query", "query": "SELECT 1", "multi": true,
         "includeAll": true, "allValue": "'__all__'",
         "current": {"text": "All", "value": ["$__all"]}},
        {"name": "team_tag", "type": "textbox", "query": "team",
         "current": {"text": "team", "value": "team"}},
        {"name": "unit", "type": "custom", "query": "USD : usd, GB : gb"},
        {"name": "q", "type": "query", "query": {"rawSql": "SELECT 2", "refId": "A"},
         "includeAll": true}
      ]},
      "panels": [
        {"id": 1, "title": "a", "type": "stat",
         "datasource": {"type": "grafana-postgresql-datasource", "uid": "bursar-postgres"},
         "targets": [{"refId": "A", "rawSql": "SELECT 1", "format": "table"}]},
        {"id": 2, "title": "r", "type": "row", "collapsed": true, "panels": [
          {"id": 3, "title": "b", "type": "timeseries", "interval": "1d",
           "datasource": {"type": "prometheus", "uid": "prom"},
           "targets": [{"refId": "A", "expr": "up"},
                       {"refId": "B", "rawSql": "SELECT 2",
                        "datasource": {"type": "grafana-postgresql-datasource", "uid": "x"}}]}
        ]},
        {"id": 4, "title": "c", "type": "table", "targets": []}
      ]
    }"#;

    #[test]
    fn loads_panels_rows_and_variables() {
        let d = Dashboard::from_json(DASH).unwrap();
        assert_eq!(d.uid, "u1");
        assert_eq!(d.time_from, "now-90d");
        let titles: Vec<_> = d.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["a", "b", "c"]);
        assert_eq!(d.panels[1].row.as_deref(), Some("r"));
        assert_eq!(d.panels[1].interval.as_deref(), Some("1d"));
        // The Prometheus target is not SQL; the Postgres override is.
        let sql: Vec<_> = d
            .sql_queries()
            .map(|(p, t, s)| (p.id, t.ref_id.as_str(), s))
            .collect();
        assert_eq!(
            sql,
            [(Some(1), "A", "SELECT 1"), (Some(3), "B", "SELECT 2")]
        );
        assert_eq!(d.panels[1].targets[0].other_text, ["up"]);
        assert_eq!(d.variable("q").unwrap().query.as_deref(), Some("SELECT 2"));
    }

    #[test]
    fn bindings_start_at_the_saved_values() {
        let d = Dashboard::from_json(DASH).unwrap();
        let b = d.bindings();
        assert_eq!(b.get("provider").unwrap().selection, Selection::All);
        assert_eq!(b.get("team_tag").unwrap().selection, Selection::one("team"));
        assert_eq!(b.get("unit").unwrap().options, ["usd", "gb"]);
        assert_eq!(b.get("unit").unwrap().selection, Selection::one("usd"));
        assert_eq!(b.get("q").unwrap().selection, Selection::All);
    }

    #[test]
    fn bad_json_names_the_part() {
        for (json, want) in [
            ("[]", "JSON object"),
            ("{", "not JSON"),
            ("{\"title\": \"x\"}", "no uid"),
            (
                "{\"uid\": \"x\", \"panels\": [{\"id\": \"one\", \"title\": \"p\"}]}",
                "panel 0 (\"p\")",
            ),
            (
                "{\"uid\": \"x\", \"templating\": {\"list\": [{}]}}",
                "variable 0: no name",
            ),
        ] {
            let e = Dashboard::from_json(json).unwrap_err();
            assert!(e.to_string().contains(want), "{json}: {e}");
        }
    }
}
