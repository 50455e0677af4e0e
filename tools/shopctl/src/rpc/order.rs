//! `shopctl order ...`: every RPC of `ecommerce.OrderManagement`, all four
//! kinds of gRPC call.
//!
//! ```text
//! shopctl order add --line ID=2 --destination Lisbon      # unary; prints the order id
//! shopctl order add --item "Green Tea" --item "Ceramic Mug" --destination Lisbon
//! shopctl order get ORDER_ID
//! shopctl order search tea                                 # server streaming
//! echo '{"id": "ORDER_ID", "destination": "Porto"}' | shopctl order update    # client streaming
//! shopctl order process ID1 ID2 ID3 --interval 1s          # bidirectional streaming
//! shopctl order search Lisbon -o id | shopctl order process
//! shopctl order cancel ORDER_ID --reason "changed my mind"
//! shopctl order watch ORDER_ID                             # until final, or Ctrl-C
//! ```

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use prost::Message as _;
use serde::Deserialize;
use shop_proto::ecommerce::{CancelOrderRequest, Order, OrderLine, UpdateOrdersResult};
use shop_runtime::config::parse_duration;
use tokio::sync::mpsc;
use tonic::Request;

use super::{
    ConnectArgs,
    output::{Format, OutputArgs, Printer},
    parse_line, read_lines, stdin_lines,
    view::{self, print_id, print_order, print_update},
    within,
};

/// Orders: placing, reading, changing, shipping and watching them
/// (ecommerce.OrderManagement).
#[derive(clap::Args, Debug)]
pub struct OrderArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: OrderCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum OrderCommand {
    /// Place an order and print its id (addOrder). Prices come from the
    /// catalog; stock is reserved before the order is confirmed.
    Add(AddArgs),
    /// Show one order (getOrder).
    Get {
        /// The order's id.
        id: String,
    },
    /// Every order whose items, description or destination contain the
    /// query, printed as each arrives (searchOrders, server streaming).
    Search {
        /// Case-insensitive text to look for; empty: every order.
        #[arg(default_value = "")]
        query: String,
    },
    /// Change the destination and/or description of orders, sent one by one
    /// in one call; prints what happened to each (updateOrders, client
    /// streaming; role admin). Exits with 1 if any order was not updated.
    Update(UpdateArgs),
    /// Ship orders: sends order ids and prints each combined shipment as it
    /// arrives (processOrders, bidirectional streaming; role admin). Exits
    /// with 1 if any id was rejected.
    Process(ProcessArgs),
    /// Cancel a confirmed order and give its stock back (cancelOrder).
    Cancel {
        /// The order's id.
        id: String,
        /// Why (stored with the order).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Print an order now and after every change of its status, until it is
    /// final (shipped or cancelled) or Ctrl-C (watchOrder, server streaming).
    Watch {
        /// The order's id.
        id: String,
        /// Give up after this long (the call's deadline).
        #[arg(long = "for", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        duration: Duration,
    },
}

/// Options of `order add`.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// PRODUCT_ID=QUANTITY (repeatable; a bare id means 1).
    #[arg(long = "line", value_name = "ID=QTY", value_parser = parse_line)]
    pub lines: Vec<(String, i64)>,
    /// Book style: a product id or exact product name, one unit each
    /// (repeatable).
    #[arg(long = "item", value_name = "ID_OR_NAME")]
    pub items: Vec<String>,
    /// Where to ship it.
    #[arg(long)]
    pub destination: String,
    /// A note stored with the order.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Makes a retry safe: the same key places one order.
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
}

/// Options of `order update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// JSON lines, one order each: {"id": ..., "destination": ..., "description": ...}
    /// (other fields are ignored, so `order get -o json` output works);
    /// "-" or no --file and no --id: stdin.
    #[arg(long, conflicts_with = "id")]
    pub file: Option<PathBuf>,
    /// Update just this order, with --destination and/or --description.
    #[arg(long)]
    pub id: Option<String>,
    /// New destination of --id.
    #[arg(long, requires = "id")]
    pub destination: Option<String>,
    /// New description of --id.
    #[arg(long, requires = "id")]
    pub description: Option<String>,
}

/// Options of `order process`.
#[derive(clap::Args, Debug)]
pub struct ProcessArgs {
    /// Order ids to ship. Without any, ids are read from stdin, one per
    /// line, and each is sent as soon as it is read.
    pub ids: Vec<String>,
    /// Pause between sends, to watch shipments arrive while the stream is
    /// open. The call's deadline grows by this much per id given as an
    /// argument; raise --timeout when typing ids by hand.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// One line of `order update`'s input.
#[derive(Deserialize, Debug)]
struct OrderChange {
    id: String,
    #[serde(default)]
    destination: String,
    #[serde(default)]
    description: String,
}

/// Runs one `order` subcommand.
pub async fn run(args: OrderArgs) -> anyhow::Result<()> {
    let clients = args.connect.clients()?;
    let mut client = clients.order.clone();
    let p = Printer::new(args.output.output);
    match args.command {
        OrderCommand::Add(add) => {
            let order = Order {
                items: add.items,
                lines: add
                    .lines
                    .into_iter()
                    .map(|(product_id, quantity)| OrderLine {
                        product_id,
                        quantity,
                        ..Default::default()
                    })
                    .collect(),
                destination: add.destination,
                description: add.description,
                idempotency_key: add.idempotency_key,
                ..Default::default()
            };
            let id = client.add_order(clients.request(order)).await?.into_inner();
            print_id(&p, &id)
        }
        OrderCommand::Get { id } => {
            let order = client.get_order(clients.request(id)).await?.into_inner();
            print_order(&p, &order)
        }
        OrderCommand::Search { query } => {
            let request = clients.request(query);
            within(clients.timeout, async {
                let mut stream = client.search_orders(request).await?.into_inner();
                let mut rows = view::order_rows();
                while let Some(order) = stream.message().await? {
                    rows.print(&p, &order)?;
                }
                if rows.count() == 0 && p.format == Format::Table {
                    eprintln!("no orders match");
                }
                Ok(())
            })
            .await
        }
        OrderCommand::Update(update) => {
            let orders = match update.id {
                Some(id) => vec![Order {
                    id,
                    destination: update.destination.unwrap_or_default(),
                    description: update.description.unwrap_or_default(),
                    ..Default::default()
                }],
                None => parse_changes(&read_lines(
                    update.file.as_deref(),
                    "orders as JSON objects",
                )?)?,
            };
            let sent = orders.len();
            let response = client
                .update_orders(clients.request(futures::stream::iter(orders)))
                .await?;
            let result = match response.metadata().get_bin("order-update-results-bin") {
                Some(value) => Some(
                    UpdateOrdersResult::decode(
                        value
                            .to_bytes()
                            .context("order-update-results-bin is not base64")?,
                    )
                    .context("order-update-results-bin is not an UpdateOrdersResult")?,
                ),
                None => None,
            };
            print_update(&p, response.get_ref(), result.as_ref())?;
            if let Some(failed) = result.map(|r| r.failed.len()).filter(|n| *n > 0) {
                bail!("{failed} of {sent} orders were not updated");
            }
            Ok(())
        }
        OrderCommand::Process(process) => {
            let mut deadline = clients.timeout;
            let rx = if process.ids.is_empty() {
                stdin_lines("order ids")
            } else {
                deadline += process.interval * u32::try_from(process.ids.len()).unwrap_or(0);
                let (tx, rx) = mpsc::channel(process.ids.len());
                for id in process.ids {
                    tx.try_send(id).context("queue the order ids")?;
                }
                rx
            };
            let mut request = Request::new(paced(rx, process.interval));
            request.set_timeout(deadline);
            let rejected = within(deadline, async {
                let mut stream = client.process_orders(request).await?.into_inner();
                let mut rows = view::shipment_rows();
                let mut rejected = 0;
                while let Some(shipment) = stream.message().await? {
                    if shipment.status == "REJECTED" {
                        rejected += shipment.orders_list.len().max(1);
                    }
                    rows.print(&p, &shipment)?;
                }
                if rows.count() == 0 && p.format == Format::Table {
                    eprintln!("nothing was shipped");
                }
                Ok(rejected)
            })
            .await?;
            if rejected > 0 {
                bail!("{rejected} order id(s) rejected; see the reasons above");
            }
            Ok(())
        }
        OrderCommand::Cancel { id, reason } => {
            let order = client
                .cancel_order(clients.request(CancelOrderRequest {
                    order_id: id,
                    reason,
                }))
                .await?
                .into_inner();
            print_order(&p, &order)
        }
        OrderCommand::Watch { id, duration } => {
            let mut request = Request::new(id);
            request.set_timeout(duration);
            let watch = within(duration, async {
                let mut stream = client.watch_order(request).await?.into_inner();
                let mut rows = view::status_rows();
                while let Some(order) = stream.message().await? {
                    rows.print(&p, &order)?;
                }
                Ok(())
            });
            tokio::select! {
                result = watch => result,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
    }
}

/// `order update`'s JSON lines as the orders to send; a bad line stops
/// everything before any order is sent.
fn parse_changes(lines: &[String]) -> anyhow::Result<Vec<Order>> {
    if lines.is_empty() {
        bail!("no orders to update: give --id, or JSON lines on stdin or in --file");
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let change: OrderChange = serde_json::from_str(line)
                .with_context(|| format!("line {}: expected {{\"id\": ...}}", i + 1))?;
            Ok(Order {
                id: change.id,
                destination: change.destination,
                description: change.description,
                ..Default::default()
            })
        })
        .collect()
}

/// The ids of `rx` as a request stream, `interval` apart; it ends (the
/// client half-closes) when `rx` does.
fn paced(
    rx: mpsc::Receiver<String>,
    interval: Duration,
) -> impl futures::Stream<Item = String> + Send + 'static {
    futures::stream::unfold((rx, true), move |(mut rx, first)| async move {
        if !first && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let id = rx.recv().await?;
        Some((id, (rx, false)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_lines_keep_id_destination_and_description_and_ignore_the_rest() {
        let orders = parse_changes(&[
            r#"{"id": "o1", "destination": "Porto"}"#.to_owned(),
            r#"{"id": "o2", "description": "gift", "status": "CONFIRMED", "total": null}"#
                .to_owned(),
        ])
        .expect("valid lines");

        assert_eq!(orders.len(), 2);
        assert_eq!(
            (orders[0].id.as_str(), orders[0].destination.as_str()),
            ("o1", "Porto")
        );
        assert_eq!(
            (orders[1].id.as_str(), orders[1].description.as_str()),
            ("o2", "gift")
        );
    }

    #[test]
    fn a_bad_update_line_is_named_by_its_number() {
        let error = parse_changes(&[r#"{"id": "o1"}"#.to_owned(), "{oops".to_owned()])
            .expect_err("line 2 is not JSON");
        assert!(format!("{error:#}").starts_with("line 2:"), "{error:#}");
    }
}
