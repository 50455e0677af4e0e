//! What a failed command prints, and its exit code.
//!
//! A gRPC status becomes `error: NOT_FOUND: product 42` on stderr, followed
//! by one indented line per detail the service attached: each field
//! violation of a `google.rpc.BadRequest` (`  name: must not be empty`),
//! each `PreconditionFailure` violation, `ResourceInfo`, `ErrorInfo`,
//! `RetryInfo` and the rest of the standard details. Exit code 1.
//!
//! Any other error prints `error: ` and its cause chain, exit code 1; a
//! closed stdout (`shopctl product search | head -3`) ends quietly.

use std::{fmt::Write as _, process::ExitCode};

use shop_runtime::telemetry::code_name;
use tonic::Status;
use tonic_types::StatusExt as _;

/// Prints `error` for a person and returns the exit code.
pub fn report(error: &anyhow::Error) -> ExitCode {
    if let Some(status) = error.downcast_ref::<Status>() {
        eprint!("{}", describe(status));
    } else if error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    } else {
        eprintln!("error: {error:#}");
    }
    ExitCode::FAILURE
}

/// `error: CODE: message` and one indented line per detail.
pub fn describe(status: &Status) -> String {
    let mut text = format!(
        "error: {}: {}\n",
        code_name(status.code()),
        status.message()
    );
    let details = status.get_error_details();
    let mut line = |s: String| {
        let _ = writeln!(text, "  {s}");
    };
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            line(format!("{}: {}", v.field, v.description));
        }
    }
    if let Some(failure) = details.precondition_failure() {
        for v in &failure.violations {
            line(format!("{} {}: {}", v.r#type, v.subject, v.description));
        }
    }
    if let Some(r) = details.resource_info() {
        let owner = if r.owner.is_empty() {
            String::new()
        } else {
            format!(" (owner {})", r.owner)
        };
        line(format!(
            "resource {} {}{owner}: {}",
            r.resource_type, r.resource_name, r.description
        ));
    }
    if let Some(quota) = details.quota_failure() {
        for v in &quota.violations {
            line(format!("quota {}: {}", v.subject, v.description));
        }
    }
    if let Some(info) = details.error_info() {
        let mut metadata: Vec<String> = info
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        metadata.sort();
        line(
            format!(
                "reason {} ({}) {}",
                info.reason,
                info.domain,
                metadata.join(" ")
            )
            .trim_end()
            .to_owned(),
        );
    }
    if let Some(delay) = details.retry_info().and_then(|r| r.retry_delay) {
        line(format!("retry after {:.3}s", delay.as_secs_f64()));
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            line(format!("see {} {}", link.url, link.description));
        }
    }
    if let Some(m) = details.localized_message() {
        line(format!("{}: {}", m.locale, m.message));
    }
    if let Some(r) = details.request_info() {
        line(format!("request {}", r.request_id));
    }
    if let Some(d) = details.debug_info() {
        line(format!("debug: {}", d.detail));
    }
    text
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation};

    use super::*;

    #[test]
    fn field_violations_follow_the_code_and_message_one_per_line() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid request: name: must not be empty",
            ErrorDetails::with_bad_request(vec![
                FieldViolation::new("name", "must not be empty"),
                FieldViolation::new("stock", "must not be negative"),
            ]),
        );

        assert_eq!(
            describe(&status),
            "error: INVALID_ARGUMENT: invalid request: name: must not be empty\n  \
             name: must not be empty\n  \
             stock: must not be negative\n"
        );
    }

    #[test]
    fn precondition_and_resource_details_are_shown() {
        let mut details =
            ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
                "STOCK",
                "p1",
                "3 requested, 1 available",
            )]);
        details.set_resource_info("product", "p1", "", "sold out");
        let status = Status::with_error_details(Code::FailedPrecondition, "short", details);

        assert_eq!(
            describe(&status),
            "error: FAILED_PRECONDITION: short\n  \
             STOCK p1: 3 requested, 1 available\n  \
             resource product p1: sold out\n"
        );
    }

    #[test]
    fn a_plain_status_is_one_line() {
        assert_eq!(
            describe(&Status::not_found("order 7")),
            "error: NOT_FOUND: order 7\n"
        );
    }
}
