//! The shapes of errors clients see.
//!
//! Services keep one `thiserror` enum each and convert it to [`tonic::Status`]
//! in one place; these helpers give those conversions the same shape
//! everywhere:
//!
//! - bad input → `INVALID_ARGUMENT` carrying `google.rpc.BadRequest` with one
//!   field violation per problem, and the same text in the message for
//!   humans reading `grpcurl` output;
//! - a broken precondition → `FAILED_PRECONDITION` with
//!   `google.rpc.PreconditionFailure`;
//! - anything unexpected → `INTERNAL` with the opaque message "internal
//!   error"; the cause chain goes to the log, never to the client.

use std::fmt::Write as _;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

/// Collects field violations while validating a request.
///
/// ```ignore
/// let mut v = FieldViolations::default();
/// if name.is_empty() { v.add("name", "must not be empty"); }
/// v.finish()?; // INVALID_ARGUMENT if anything was added
/// ```
///
/// It is an error type of its own: `?` turns it into a [`Status`], or into
/// a service's error enum that wraps it.
#[derive(Debug, Default, Clone)]
pub struct FieldViolations {
    violations: Vec<FieldViolation>,
}

impl FieldViolations {
    /// Records that `field` (a path such as `lines[2].quantity`) is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        self.violations
            .push(FieldViolation::new(field.into(), description.into()));
        self
    }

    /// Checks free text: not blank when `required`, at most `max`
    /// characters, no control characters other than tab and line breaks.
    pub fn check_text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.add(field, "must not be empty");
            return;
        }
        let chars = value.chars().count();
        if chars > max {
            self.add(
                field,
                format!("must be at most {max} characters (got {chars})"),
            );
        }
        if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            self.add(field, "must not contain control characters");
        }
    }

    /// The fields recorded, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.violations.iter().map(|v| v.field.as_str()).collect()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` when nothing was recorded, the violations otherwise.
    pub fn finish(self) -> Result<(), FieldViolations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The `INVALID_ARGUMENT` status carrying every recorded violation.
    pub fn into_status(self) -> Status {
        Status::with_error_details(
            Code::InvalidArgument,
            self.to_string(),
            ErrorDetails::with_bad_request(self.violations),
        )
    }
}

impl std::fmt::Display for FieldViolations {
    /// "invalid request: field: what is wrong; other: ..." (for humans
    /// reading grpcurl output; programs read the details).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid request")?;
        for (i, v) in self.violations.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldViolations {}

impl From<FieldViolations> for Status {
    fn from(v: FieldViolations) -> Self {
        v.into_status()
    }
}

/// The fields an `INVALID_ARGUMENT` status names, in order (empty for any
/// other status): what clients, and tests, check.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// `INVALID_ARGUMENT` for a single bad field.
pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Status {
    let mut v = FieldViolations::default();
    v.add(field, description);
    v.into_status()
}

/// One unmet precondition, as `google.rpc.PreconditionFailure` describes it.
#[derive(Debug, Clone)]
pub struct Precondition {
    /// A short machine-readable kind, for example `STOCK`.
    pub kind: String,
    /// What it is about, for example a product id.
    pub subject: String,
    /// What is wrong, for humans.
    pub description: String,
}

/// `FAILED_PRECONDITION` with a summary and one violation per unmet precondition.
pub fn failed_precondition(summary: &str, preconditions: Vec<Precondition>) -> Status {
    let mut message = summary.to_owned();
    for (i, p) in preconditions.iter().enumerate() {
        let sep = if i == 0 { ": " } else { "; " };
        let _ = write!(message, "{sep}{}", p.description);
    }
    let violations: Vec<PreconditionViolation> = preconditions
        .into_iter()
        .map(|p| PreconditionViolation::new(p.kind, p.subject, p.description))
        .collect();
    Status::with_error_details(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_precondition_failure(violations),
    )
}

/// Logs `error` with its whole cause chain and returns an opaque `INTERNAL`.
pub fn internal(error: &(dyn std::error::Error + 'static)) -> Status {
    log_internal(error);
    Status::internal("internal error")
}

/// Logs `error`, a bug or broken invariant, with its whole cause chain (for
/// callers that answer with something other than a gRPC status).
pub fn log_internal(error: &(dyn std::error::Error + 'static)) {
    tracing::error!(error = %ErrorChain(error), "internal error");
}

/// Displays an error followed by each of its sources: `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_violations_become_invalid_argument_with_bad_request_details() {
        let mut v = FieldViolations::default();
        v.add("name", "must not be empty")
            .add("price", "must not be negative");

        let status = v.finish().unwrap_err().into_status();

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: name: must not be empty; price: must not be negative"
        );
        let details = status
            .get_details_bad_request()
            .expect("BadRequest details");
        let fields: Vec<_> = details
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "price"]);
    }

    #[test]
    fn no_violations_is_ok() {
        assert!(FieldViolations::default().finish().is_ok());
    }

    #[test]
    fn failed_precondition_names_each_subject() {
        let status = failed_precondition(
            "not enough stock",
            vec![Precondition {
                kind: "STOCK".into(),
                subject: "p1".into(),
                description: "p1: 3 requested, 1 available".into(),
            }],
        );
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("p1: 3 requested"));
        let pf = status.get_details_precondition_failure().expect("details");
        assert_eq!(pf.violations[0].subject, "p1");
    }

    #[test]
    fn internal_errors_are_opaque() {
        let io = std::io::Error::other("password=hunter2 leaked in a driver message");
        let status = internal(&io);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
