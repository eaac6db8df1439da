//! `bursar.v1.FleetService`: the GPU fleet, the idle policy's audit log, snoozes, savings,
//! and the utilisation node agents push (`utilization.rs` does that one's work).
use tonic::{Request, Response, Status};

use super::utilization;
use crate::proto;
use crate::proto::fleet_service_server::FleetService;
use crate::store::Store;

pub struct FleetApi {
    pub store: Store,
    /// Where pushed samples are stored (group commit).
    pub samples: utilization::SampleWriter,
}

fn lands_later(rpc: &str) -> Status {
    Status::unimplemented(format!("FleetService/{rpc} lands with the fleet task"))
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn list_instances(
        &self,
        _req: Request<proto::ListInstancesRequest>,
    ) -> Result<Response<proto::ListInstancesResponse>, Status> {
        Err(lands_later("ListInstances"))
    }

    async fn list_actions(
        &self,
        _req: Request<proto::ListActionsRequest>,
    ) -> Result<Response<proto::ListActionsResponse>, Status> {
        Err(lands_later("ListActions"))
    }

    async fn keep(
        &self,
        _req: Request<proto::KeepRequest>,
    ) -> Result<Response<proto::KeepResponse>, Status> {
        Err(lands_later("Keep"))
    }

    async fn get_savings(
        &self,
        _req: Request<proto::GetSavingsRequest>,
    ) -> Result<Response<proto::GetSavingsResponse>, Status> {
        Err(lands_later("GetSavings"))
    }

    async fn report_gpu_utilization(
        &self,
        req: Request<proto::ReportGpuUtilizationRequest>,
    ) -> Result<Response<proto::ReportGpuUtilizationResponse>, Status> {
        let (resp, _stored) = self
            .samples
            .report(req.into_inner(), chrono::Utc::now())
            .await?;
        utilization::rejection_status(resp).map(Response::new)
    }
}
