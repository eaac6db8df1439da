//! `bursar.v1.PricingService`: thin handlers — validate, read the in-memory catalog or the
//! store, convert.
use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::convert;
use super::errors::store_status;
use super::placement::PlacementState;
use crate::clouds::{SOURCE_NAMES, source_kind};
use crate::domain::catalog::CatalogHandle;
use crate::proto;
use crate::proto::pricing_service_server::PricingService;
use crate::store::Store;

pub struct PricingApi {
    pub store: Store,
    pub catalog: CatalogHandle,
    /// Configured sources and whether each is enabled.
    pub sources: Vec<(String, bool)>,
    /// SelectProvider's state: the price-age limit and failing providers, so a listed
    /// price is `stale` by the same rule as a placement.
    pub state: Arc<PlacementState>,
}

#[tonic::async_trait]
impl PricingService for PricingApi {
    #[tracing::instrument(skip_all)]
    async fn list_prices(
        &self,
        request: Request<proto::ListPricesRequest>,
    ) -> Result<Response<proto::ListPricesResponse>, Status> {
        let q = convert::list_prices_query(request.get_ref())?;
        let catalog = self.catalog.load();
        let page = catalog.list(&q.filter, q.after.as_ref(), q.page_size);
        let (now, failing) = (Utc::now(), self.state.failing());
        let stale = |o: &crate::domain::Offer| self.state.model.is_stale(o, now, failing);
        Ok(Response::new(proto::ListPricesResponse {
            prices: page
                .offers
                .iter()
                .map(|o| convert::price(o, &catalog, stale(o)))
                .collect(),
            next_page_token: page
                .next_after
                .map(convert::encode_page_token)
                .unwrap_or_default(),
            total_matching: page.total_matching,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_source_status(
        &self,
        _request: Request<proto::GetSourceStatusRequest>,
    ) -> Result<Response<proto::GetSourceStatusResponse>, Status> {
        let rows = self.store.source_statuses().await.map_err(store_status)?;
        let mut out = Vec::new();
        for name in SOURCE_NAMES {
            let enabled = self.sources.iter().any(|(n, e)| n == name && *e);
            out.push(convert::source_status(
                name,
                enabled,
                rows.iter().find(|r| r.name == name),
            ));
        }
        // Offline inputs (seed, catalog import) appear once they have written prices.
        for r in rows.iter().filter(|r| source_kind(&r.name).is_none()) {
            out.push(convert::source_status(&r.name, true, Some(r)));
        }
        Ok(Response::new(proto::GetSourceStatusResponse {
            sources: out,
        }))
    }
}
