//! The one mapping from domain/store errors to gRPC status codes. Field errors name the field.
use tonic::Status;

use crate::store::StoreError;

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Status {
        Status::invalid_argument(format!("{}: {}", e.field, e.message))
    }
}

pub fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "store error");
    match e {
        StoreError::Connect { .. } => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}
