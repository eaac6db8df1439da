//! Bearer-token authentication: `AuthHandle` holds the current `Gate` (enforced or open, the
//! token table) in an `ArcSwap`, so SIGHUP swaps tokens without a restart (`reload`);
//! `AuthLayer` is the tower layer that checks every gRPC call against `roles::METHOD_ROLES`
//! before it reaches a service. A missing or unknown token is UNAUTHENTICATED, a token
//! without the method's role PERMISSION_DENIED; the caller (`domain::auth::Caller`: the
//! token's name, never the token) goes into the request's extensions.
//!
//! The hot path is one `ArcSwap` load, one header lookup, one SHA-256 of the presented token
//! and two hash-map probes; nothing is allocated unless the call is refused. An open gate
//! (`auth.required = false`, or the loopback quick start) checks nothing.
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures::future::{Either, Ready, ready};
use http::header::AUTHORIZATION;

use super::roles::{Access, Routes};
use crate::config::{AuthConfig, ConfigError};
use crate::domain::auth::{Caller, Enforcement, OpenReason, Role, TokenTable, bearer, enforcement};

/// What the server checks now.
#[derive(Debug)]
pub struct Gate {
    pub enforcement: Enforcement,
    pub table: TokenTable,
    /// `/metrics` answers without a token.
    pub metrics_open: bool,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `authorization: Bearer …` header.
    Missing,
    /// A token that is not configured.
    Unknown,
    /// A valid token without the role the method needs.
    Role { name: Arc<str>, needs: Role },
}

impl Denied {
    /// The message sent to the client (never the token).
    pub fn message(&self, what: &str) -> String {
        // `what` is the request's path: a client's text, kept short.
        let what = crate::domain::quote::clip(what);
        match self {
            Denied::Missing => format!(
                "{what} needs a bearer token (authorization: Bearer <token>; bursar --token or BURSAR_TOKEN)"
            ),
            Denied::Unknown => format!("{what}: the bearer token is not valid"),
            Denied::Role { name, needs } => format!(
                "{what} needs the {} role, which token {name:?} does not have",
                needs.as_str()
            ),
        }
    }

    pub fn status(&self, path: &str) -> tonic::Status {
        let what = path.strip_prefix('/').unwrap_or(path);
        match self {
            Denied::Missing | Denied::Unknown => tonic::Status::unauthenticated(self.message(what)),
            Denied::Role { .. } => tonic::Status::permission_denied(self.message(what)),
        }
    }
}

/// The current gate, swapped whole on reload.
pub struct AuthHandle {
    gate: ArcSwap<Gate>,
    /// Every listener is on loopback (the rule for running open without tokens).
    loopback_only: bool,
}

impl AuthHandle {
    /// The gate of `cfg`; an error when tokens are required but none is configured and the
    /// service listens beyond loopback.
    pub fn new(cfg: &AuthConfig, loopback_only: bool) -> Result<Arc<AuthHandle>, ConfigError> {
        let gate = gate_of(cfg, loopback_only)?;
        announce(&gate);
        Ok(Arc::new(AuthHandle {
            gate: ArcSwap::from_pointee(gate),
            loopback_only,
        }))
    }

    /// Replaces the gate with `cfg`'s; on an error the old gate stays and the error (naming
    /// the field) is returned.
    pub fn reload(&self, cfg: &AuthConfig) -> Result<(), ConfigError> {
        let gate = gate_of(cfg, self.loopback_only)?;
        announce(&gate);
        self.gate.store(Arc::new(gate));
        Ok(())
    }

    pub fn gate(&self) -> arc_swap::Guard<Arc<Gate>> {
        self.gate.load()
    }

    /// Checks `authorization` (the header's value) for `access`: `Ok(Some(caller))` when a
    /// token was checked, `Ok(None)` when nothing needed checking.
    pub fn authorize(
        &self,
        access: Access,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Caller>, Denied> {
        let gate = self.gate.load();
        if gate.enforcement != Enforcement::Enforced || access == Access::Open {
            return Ok(None);
        }
        let token = authorization.and_then(bearer).ok_or(Denied::Missing)?;
        let caller = gate.table.authenticate(token).ok_or(Denied::Unknown)?;
        match access {
            Access::Role(r) if !caller.roles.has(r) => Err(Denied::Role {
                name: caller.name.clone(),
                needs: r,
            }),
            _ => Ok(Some(caller.clone())),
        }
    }
}

fn gate_of(cfg: &AuthConfig, loopback_only: bool) -> Result<Gate, ConfigError> {
    let table = cfg.table()?;
    let enforcement =
        enforcement(cfg.required, !table.is_empty(), loopback_only).map_err(|detail| {
            ConfigError::Field {
                field: "auth.tokens".into(),
                detail: detail.into(),
            }
        })?;
    Ok(Gate {
        enforcement,
        table,
        metrics_open: cfg.metrics_open,
    })
}

fn announce(gate: &Gate) {
    match gate.enforcement {
        Enforcement::Enforced => {
            tracing::info!(tokens = gate.table.len(), "bearer tokens required")
        }
        Enforcement::Open {
            reason: OpenReason::NotRequired,
        } => tracing::warn!(
            "AUTHENTICATION IS OFF (auth.required = false): every RPC and /report is open to anyone who can connect; for local development only"
        ),
        Enforcement::Open {
            reason: OpenReason::LoopbackWithoutTokens,
        } => tracing::warn!(
            "AUTHENTICATION IS OFF: no [[auth.tokens]] configured, so the service runs open on loopback only; configure tokens before listening on another address"
        ),
    }
}

/// The tower layer checking every gRPC call.
#[derive(Clone)]
pub struct AuthLayer {
    handle: Arc<AuthHandle>,
    routes: Arc<Routes>,
}

impl AuthLayer {
    pub fn new(handle: Arc<AuthHandle>) -> AuthLayer {
        AuthLayer {
            handle,
            routes: Arc::new(Routes::default()),
        }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authed<S>;
    fn layer(&self, inner: S) -> Authed<S> {
        Authed {
            inner,
            handle: self.handle.clone(),
            routes: self.routes.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authed<S> {
    inner: S,
    handle: Arc<AuthHandle>,
    routes: Arc<Routes>,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Authed<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let access = self.routes.access(req.uri().path());
        let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        match self.handle.authorize(access, header) {
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
                Either::Left(self.inner.call(req))
            }
            Ok(None) => Either::Left(self.inner.call(req)),
            Err(denied) => Either::Right(ready(Ok(denied.status(req.uri().path()).into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth::TokenConfig;
    use crate::domain::auth::sha256_hex;

    fn cfg(tokens: &[(&str, &str, &[&str])]) -> AuthConfig {
        AuthConfig {
            tokens: tokens
                .iter()
                .map(|(n, t, r)| TokenConfig {
                    name: n.to_string(),
                    sha256: sha256_hex(t),
                    roles: r.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn authorize_reload_and_the_open_rules() {
        let h = AuthHandle::new(&cfg(&[("a", "ta", &["placement"])]), false).unwrap();
        let place = Access::Role(Role::Placement);
        let admin = Access::Role(Role::Admin);
        assert_eq!(
            &*h.authorize(place, Some(b"Bearer ta"))
                .unwrap()
                .unwrap()
                .name,
            "a"
        );
        assert_eq!(h.authorize(place, None), Err(Denied::Missing));
        assert_eq!(h.authorize(place, Some(b"Bearer tb")), Err(Denied::Unknown));
        assert!(matches!(
            h.authorize(admin, Some(b"Bearer ta")),
            Err(Denied::Role { .. })
        ));
        assert_eq!(h.authorize(Access::Open, None), Ok(None));
        assert!(
            h.authorize(Access::AnyToken, Some(b"Bearer ta"))
                .unwrap()
                .is_some()
        );
        assert_eq!(h.authorize(Access::AnyToken, None), Err(Denied::Missing));

        // Rotation: the new token works, the old one no longer does.
        h.reload(&cfg(&[("b", "tb", &["admin"])])).unwrap();
        assert_eq!(h.authorize(place, Some(b"Bearer ta")), Err(Denied::Unknown));
        assert!(h.authorize(admin, Some(b"Bearer tb")).unwrap().is_some());
        // A bad reload keeps the gate it had.
        let mut bad = cfg(&[("c", "tc", &["root"])]);
        let e = h.reload(&bad).unwrap_err().to_string();
        assert!(e.contains("auth.tokens[0].roles"), "{e}");
        assert!(h.authorize(admin, Some(b"Bearer tb")).unwrap().is_some());
        // No tokens beyond loopback: refused, and the old gate stays.
        bad.tokens.clear();
        assert!(
            h.reload(&bad)
                .unwrap_err()
                .to_string()
                .contains("auth.tokens")
        );
        assert!(h.authorize(admin, Some(b"Bearer tb")).unwrap().is_some());

        assert!(AuthHandle::new(&cfg(&[]), false).is_err());
        let open = AuthHandle::new(&cfg(&[]), true).unwrap();
        assert_eq!(open.authorize(admin, None), Ok(None));
        let off = AuthHandle::new(
            &AuthConfig {
                required: false,
                ..cfg(&[("a", "ta", &["placement"])])
            },
            false,
        )
        .unwrap();
        assert_eq!(off.authorize(admin, Some(b"Bearer nope")), Ok(None));
    }

    #[test]
    fn statuses_and_messages_never_carry_the_token() {
        let p = "/bursar.v1.BudgetService/CreateBudget";
        let s = Denied::Missing.status(p);
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        assert!(s.message().contains("bursar.v1.BudgetService/CreateBudget"));
        assert_eq!(
            Denied::Unknown.status(p).code(),
            tonic::Code::Unauthenticated
        );
        let s = Denied::Role {
            name: "airflow".into(),
            needs: Role::Admin,
        }
        .status(p);
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert!(s.message().contains("admin") && s.message().contains("airflow"));
    }
}
