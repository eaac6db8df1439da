//! The one table of which role each RPC needs. Every method of `proto/bursar/v1/*.proto` is
//! in it exactly once (a test checks it against the served descriptor sets); health and
//! reflection are open. A path in neither needs a valid token of any role (and then gets
//! UNIMPLEMENTED from the router), so an unauthenticated caller learns nothing from it.
use std::collections::HashMap;

use crate::domain::auth::Role;

/// (service, method, role).
pub const METHOD_ROLES: &[(&str, &str, Role)] = &[
    ("bursar.v1.PricingService", "ListPrices", Role::Placement),
    (
        "bursar.v1.PricingService",
        "GetSourceStatus",
        Role::Placement,
    ),
    (
        "bursar.v1.PlacementService",
        "SelectProvider",
        Role::Placement,
    ),
    (
        "bursar.v1.PlacementService",
        "ListUnavailable",
        Role::Placement,
    ),
    ("bursar.v1.PlacementService", "MarkUnavailable", Role::Admin),
    (
        "bursar.v1.PlacementService",
        "ClearUnavailable",
        Role::Admin,
    ),
    ("bursar.v1.SpendService", "GetSpend", Role::Finance),
    ("bursar.v1.SpendService", "ListIngestRuns", Role::Finance),
    ("bursar.v1.SpendService", "ListQuarantine", Role::Finance),
    ("bursar.v1.BudgetService", "ListBudgets", Role::Finance),
    ("bursar.v1.BudgetService", "GetBudgetStatus", Role::Finance),
    ("bursar.v1.BudgetService", "CreateBudget", Role::Admin),
    ("bursar.v1.BudgetService", "UpdateBudget", Role::Admin),
    ("bursar.v1.BudgetService", "DeleteBudget", Role::Admin),
    ("bursar.v1.FleetService", "ListInstances", Role::Finance),
    ("bursar.v1.FleetService", "ListActions", Role::Finance),
    ("bursar.v1.FleetService", "GetSavings", Role::Finance),
    ("bursar.v1.FleetService", "Keep", Role::Admin),
    (
        "bursar.v1.FleetService",
        "ReportGpuUtilization",
        Role::Fleet,
    ),
];

/// Services anyone may call: health checks (probes, load balancers) and reflection (it
/// shows the API's shape, never data).
pub const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// What a request path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Open,
    Role(Role),
    /// Not a method of the table: a valid token of any role.
    AnyToken,
}

/// The table by request path (`/bursar.v1.PricingService/ListPrices`), made once per
/// server.
pub struct Routes {
    by_path: HashMap<String, Role>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            by_path: METHOD_ROLES
                .iter()
                .map(|(s, m, r)| (format!("/{s}/{m}"), *r))
                .collect(),
        }
    }
}

impl Routes {
    pub fn access(&self, path: &str) -> Access {
        if let Some(r) = self.by_path.get(path) {
            return Access::Role(*r);
        }
        if is_open(path) {
            Access::Open
        } else {
            Access::AnyToken
        }
    }
}

/// Health and reflection: open, and outside the concurrency limit and default deadline
/// (reflection and Watch are streams).
pub fn is_open(path: &str) -> bool {
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    OPEN_SERVICES.contains(&service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_has_exactly_one_role_or_is_open() {
        let served = super::super::rpc_metrics::served_methods();
        assert!(served.len() > METHOD_ROLES.len());
        let routes = Routes::default();
        for (service, method) in &served {
            let in_table = METHOD_ROLES
                .iter()
                .filter(|(s, m, _)| s == service && m == method)
                .count();
            let open = OPEN_SERVICES.contains(&service.as_str());
            assert!(
                (in_table == 1) ^ open,
                "{service}/{method}: {in_table} table rows, open: {open}"
            );
            let access = routes.access(&format!("/{service}/{method}"));
            assert_eq!(access == Access::Open, open, "{service}/{method}");
        }
        for (s, m, _) in METHOD_ROLES {
            assert!(
                served.iter().any(|(ss, mm)| ss == s && mm == m),
                "{s}/{m} is not served"
            );
        }
        assert_eq!(routes.access("/bursar.v1.Nope/X"), Access::AnyToken);
        assert_eq!(routes.access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(
            routes.access("/bursar.v1.FleetService/ReportGpuUtilization"),
            Access::Role(Role::Fleet)
        );
    }
}
