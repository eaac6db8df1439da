//! The one mapping from domain/store errors to gRPC status codes. Field errors name the field.
use tonic::Status;

use crate::domain::quote::clip;
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
    /// The message is clipped (`quote::clip`): a message that quotes an input whole would
    /// otherwise pass the 8 KB some gRPC clients accept and reach them as RESOURCE_EXHAUSTED.
    fn from(e: FieldError) -> Status {
        Status::invalid_argument(format!("{}: {}", e.field, clip(&e.message)))
    }
}

pub fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "store error");
    match e {
        StoreError::Connect { .. } => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}
