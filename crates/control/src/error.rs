//! The API's errors: a status code and a JSON body `{"error": message, "kind": name}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::model::ErrorBody;
use pilot_core::supervisor::{ControlError, ReloadError};

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable name of the kind of error.
    pub kind: &'static str,
    /// What went wrong, and the fix.
    pub message: String,
}

impl ApiError {
    /// A request the API cannot read (400).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_request",
            message: message.into(),
        }
    }

    /// A path or method the API does not have (404).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found",
            message: message.into(),
        }
    }

    /// A request without the right bearer token (401).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: message.into(),
        }
    }

    /// A body above the cap (413).
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too_large",
            message: format!(
                "the request body is larger than {} KiB; send less",
                limit / 1024
            ),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let (status, kind) = match e {
            ControlError::UnknownProcess { .. } => (StatusCode::NOT_FOUND, "unknown_process"),
            ControlError::DependencyDown { .. } => (StatusCode::CONFLICT, "dependency_down"),
            ControlError::ShuttingDown => (StatusCode::CONFLICT, "shutting_down"),
            ControlError::Reloading { .. } => (StatusCode::CONFLICT, "reloading"),
            ControlError::Failed { .. } => (StatusCode::CONFLICT, "failed"),
        };
        ApiError {
            status,
            kind,
            message: e.to_string(),
        }
    }
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> ApiError {
        match e {
            ReloadError::Refused(e) => e.into(),
            ReloadError::Invalid(_) | ReloadError::Plugins(_) => ApiError {
                status: StatusCode::BAD_REQUEST,
                kind: "invalid_manifest",
                message: e.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            kind: self.kind.to_string(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
