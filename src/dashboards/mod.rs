//! Grafana dashboards as data, and their queries as Grafana would run them. Pure: no I/O
//! beyond reading the JSON files.
//!
//! `model` reads a dashboard's JSON (`Dashboard`, `Panel`, `Target`, `Variable`, rows'
//! nested panels included); `variables` replaces template variables as Grafana's front end
//! does for a Postgres data source (`Bindings`, `Selection`, the `sqlstring`/`csv`/... formats,
//! multi-value and "All"); `macros` expands the Postgres macros as Grafana's back end does
//! (`$__timeFilter`, `$__timeGroupAlias`, `$__timeFrom`, ...); `range` holds `TimeRange` and
//! resolves `now-30d`; `interval` parses, formats and picks intervals; `expand` chains them for one query (`expand`,
//! `QueryContext`). Used by `tests/dashboards.rs` and `bursar bench dashboards`.
//!
//! ```
//! use bursar::dashboards::{Dashboard, QueryContext, Selection, TimeRange, expand};
//! let d = Dashboard::from_json(r#"{"uid": "x", "templating": {"list": [{"name": "p",
//!     "type": "query", "multi": true, "includeAll": true, "allValue": "'__all__'"}]},
//!     "panels": [{"id": 1, "type": "stat", "targets": [{"refId": "A", "rawSql":
//!     "SELECT COUNT(*) FROM cost_day WHERE $__timeFilter(day) AND ('__all__' IN (${p:sqlstring}) OR provider_name IN (${p:sqlstring}))"}]}]}"#).unwrap();
//! let vars = d.bindings().with("p", Selection::one("aws")).unwrap();
//! let range = TimeRange { from: "2026-10-01T00:00:00Z".parse().unwrap(),
//!     to: "2026-11-01T00:00:00Z".parse().unwrap() };
//! let ctx = QueryContext { range, interval: std::time::Duration::from_secs(86_400), vars: &vars };
//! let (_, _, sql) = d.sql_queries().next().unwrap();
//! assert!(expand(sql, &ctx).unwrap().ends_with("provider_name IN ('aws'))"));
//! ```
pub mod expand;
pub mod interval;
pub mod macros;
pub mod model;
pub mod range;
pub mod variables;

pub use expand::{BUILTIN_VARIABLES, DEFAULT_RESOLUTION, ExpandError, QueryContext, expand};
pub use interval::{auto_interval, format_interval, parse_interval};
pub use macros::MacroError;
pub use model::{Dashboard, DataSource, LoadError, Panel, Target, Variable};
pub use range::{TimeRange, relative_time};
pub use variables::{Binding, Bindings, Selection, VarError, VarRef, references};
