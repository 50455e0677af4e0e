//! Every RPC of the shop from the command line, in three groups named after
//! what they act on:
//!
//! - `shopctl product ...`: `ecommerce.ProductInfo` ([`product`]);
//! - `shopctl order ...`: `ecommerce.OrderManagement`, all four kinds of
//!   call ([`order`]);
//! - `shopctl store ...`: `ecommerce.Storefront`: accounts, cart and
//!   checkout ([`store`]).
//!
//! Each group takes the connection flags of [`ConnectArgs`] and
//! `--output table|json|id` ([`output`]) anywhere after its name.
//! Streams are printed message by message as they arrive. A failed call
//! prints `error: CODE: message` and the status details on stderr and exits
//! with 1 ([`error`]); clap exits with 2 on a usage error.
//!
//! ```text
//! shopctl product add --name "Tea pot" --price 39.50 --currency EUR --stock 10
//! shopctl product search tea
//! shopctl order add --line 75a899c2-46a3-53d2-9115-5d10bab6bdef=2 --destination Lisbon
//! shopctl order search Lisbon -o id | shopctl order process --interval 1s
//! ```

pub mod error;
pub mod order;
pub mod output;
pub mod product;
pub mod store;
mod view;

use std::{
    future::Future,
    io::{BufRead as _, IsTerminal as _},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tonic::Status;

use crate::connect::ConnectArgs;

/// Runs a whole streaming call, to its last message, within `deadline`.
/// The grpc-timeout a request carries bounds a streaming call only until
/// its response headers, so the deadline of the stream itself is kept here.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "the stream did not end within {deadline:?}"
        ))
        .into()),
    }
}

/// An exact decimal amount (`19.99`, `-0.5`, `500`) as google.type.Money's
/// `units` and `nanos`; no floating point on the way.
pub fn parse_amount(text: &str) -> Result<(i64, i32), String> {
    let bad = || format!("{text:?} is not an amount such as 19.99");
    let (negative, digits) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(bad());
    }
    if digits.contains('.') && fraction.is_empty() {
        return Err(bad());
    }
    if fraction.len() > 9 {
        return Err(format!("{text:?} has more than 9 decimal places"));
    }
    let units: i64 = whole
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let nanos: i32 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
    Ok(if negative {
        (-units, -nanos)
    } else {
        (units, nanos)
    })
}

/// `PRODUCT_ID=QUANTITY`, or just `PRODUCT_ID` for one unit.
pub fn parse_line(text: &str) -> Result<(String, i64), String> {
    match text.rsplit_once('=') {
        Some((id, quantity)) => {
            let quantity = quantity
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: the quantity after '=' must be a whole number"))?;
            Ok((id.trim().to_owned(), quantity))
        }
        None => Ok((text.trim().to_owned(), 1)),
    }
}

/// The lines of `path`, or of stdin when `path` is `None` or `-`; blank
/// lines are skipped. Read whole before any call is made.
fn read_lines(path: Option<&Path>, what: &str) -> anyhow::Result<Vec<String>> {
    let text = match path {
        Some(path) if path != Path::new("-") => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        _ => {
            hint_stdin(what);
            std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
        }
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The non-blank lines of stdin, delivered as they are typed or piped in.
/// A plain thread reads them: a blocked read must not keep the runtime from
/// shutting down when the call ends first.
fn stdin_lines(what: &str) -> mpsc::Receiver<String> {
    hint_stdin(what);
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if !line.is_empty() && tx.blocking_send(line.to_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Tells a person at a terminal that input is awaited.
fn hint_stdin(what: &str) {
    if std::io::stdin().is_terminal() {
        eprintln!("reading {what} from stdin, one per line; Ctrl-D ends");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_into_units_and_nanos() {
        assert_eq!(parse_amount("19.99"), Ok((19, 990_000_000)));
        assert_eq!(parse_amount("500"), Ok((500, 0)));
        assert_eq!(parse_amount("0.05"), Ok((0, 50_000_000)));
        assert_eq!(parse_amount("-1.5"), Ok((-1, -500_000_000)));
        assert_eq!(parse_amount("1.000000001"), Ok((1, 1)));
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for bad in [
            "",
            "abc",
            "1.",
            ".5",
            "1,50",
            "1.2.3",
            "1e3",
            "--1",
            "1.0000000001",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn lines_take_a_quantity_after_the_last_equals_sign() {
        assert_eq!(parse_line("p1=3"), Ok(("p1".into(), 3)));
        assert_eq!(parse_line("p1"), Ok(("p1".into(), 1)));
        assert!(parse_line("p1=three").is_err());
    }
}
