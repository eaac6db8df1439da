//! One panel query, expanded as Grafana would send it to Postgres: the template variables
//! first (the browser's step, with the built-in `$__interval`, `$__interval_ms`, `$__from`
//! and `$__to`), then the SQL engine's replacements and the Postgres macros (the server's).
use std::time::Duration;

use super::interval::{auto_interval, parse_interval};
use super::macros::{MacroError, engine_replacements, expand_macros};
use super::model::Panel;
use super::range::TimeRange;
use super::variables::{Binding, Bindings, VarError, interpolate};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(transparent)]
    Variable(#[from] VarError),
    #[error(transparent)]
    Macro(#[from] MacroError),
}

/// What a query is expanded for: the range, the panel's interval and the variables.
#[derive(Clone, Debug)]
pub struct QueryContext<'a> {
    pub range: TimeRange,
    pub interval: Duration,
    pub vars: &'a Bindings,
}

/// The resolution Grafana divides a range by when a panel sets no max data points (about a
/// panel's width in pixels).
pub const DEFAULT_RESOLUTION: u32 = 1000;

impl<'a> QueryContext<'a> {
    /// The context Grafana gives `panel`'s queries: its interval is the range over the
    /// panel's max data points, rounded, at least the panel's "Min interval".
    pub fn for_panel(
        panel: &Panel,
        range: TimeRange,
        vars: &'a Bindings,
    ) -> Result<QueryContext<'a>, ExpandError> {
        let min = match &panel.interval {
            Some(text) => Some(parse_interval(text, range.to).map_err(|detail| MacroError {
                name: "__interval".into(),
                detail: format!("panel {:?}'s min interval: {detail}", panel.title),
            })?),
            None => None,
        };
        let resolution = panel.max_data_points.unwrap_or(DEFAULT_RESOLUTION);
        Ok(QueryContext {
            range,
            interval: auto_interval(range.from, range.to, resolution, min),
            vars,
        })
    }
}

/// `sql` with its variables and macros expanded.
pub fn expand(sql: &str, ctx: &QueryContext<'_>) -> Result<String, ExpandError> {
    let mut vars = ctx.vars.clone();
    for (name, value) in builtins(ctx) {
        if vars.get(name).is_none() {
            vars.insert(name, Binding::single(value));
        }
    }
    let sql = interpolate(sql, &vars)?;
    let sql = engine_replacements(&sql, &ctx.range, ctx.interval);
    Ok(expand_macros(&sql, &ctx.range)?)
}

/// Grafana's global variables that a query may use.
pub const BUILTIN_VARIABLES: [&str; 4] = ["__interval", "__interval_ms", "__from", "__to"];

fn builtins(ctx: &QueryContext<'_>) -> [(&'static str, String); 4] {
    [
        ("__interval", super::interval::format_interval(ctx.interval)),
        ("__interval_ms", ctx.interval.as_millis().to_string()),
        ("__from", ctx.range.from.timestamp_millis().to_string()),
        ("__to", ctx.range.to.timestamp_millis().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboards::variables::Selection;

    #[test]
    fn variables_then_macros() {
        let mut vars = Bindings::new();
        vars.insert(
            "provider",
            Binding {
                multi: true,
                include_all: true,
                all_value: Some("'__all__'".into()),
                options: vec![],
                selection: Selection::Values(vec!["aws".into(), "O'Brien".into()]),
            },
        );
        let ctx = QueryContext {
            range: TimeRange {
                from: "2026-10-01T00:00:00Z".parse().unwrap(),
                to: "2026-11-01T00:00:00Z".parse().unwrap(),
            },
            interval: Duration::from_secs(86_400),
            vars: &vars,
        };
        let sql = "SELECT $__timeGroupAlias(day, $__interval), SUM(x) FROM cost_day \
                   WHERE $__timeFilter(day) AND ('__all__' IN (${provider:sqlstring}) \
                   OR provider_name IN (${provider:sqlstring})) AND $__interval_ms > 0 \
                   AND $__from < $__to";
        assert_eq!(
            expand(sql, &ctx).unwrap(),
            "SELECT floor(extract(epoch from day)/86400)*86400 AS \"time\", SUM(x) FROM cost_day \
             WHERE day BETWEEN '2026-10-01T00:00:00Z' AND '2026-11-01T00:00:00Z' AND \
             ('__all__' IN ('aws','O''Brien') OR provider_name IN ('aws','O''Brien')) \
             AND 86400000 > 0 AND 1790812800000 < 1793491200000"
        );
        assert!(matches!(
            expand("${provider:bogus}", &ctx),
            Err(ExpandError::Variable(_))
        ));
        // "All" with its custom value, inserted as written whatever the format.
        let all = vars.clone().with("provider", Selection::All).unwrap();
        let ctx = QueryContext { vars: &all, ..ctx };
        assert_eq!(
            expand("p IN (${provider:sqlstring})", &ctx).unwrap(),
            "p IN ('__all__')"
        );
        assert_eq!(expand("${provider:bogus}", &ctx).unwrap(), "'__all__'");
        assert!(matches!(
            expand("$__bogus(x)", &ctx),
            Err(ExpandError::Macro(_))
        ));
    }
}
