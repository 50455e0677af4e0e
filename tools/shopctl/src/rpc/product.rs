//! `shopctl product ...`: every RPC of `ecommerce.ProductInfo`.
//!
//! ```text
//! shopctl product add --name "Tea pot" --description "Cast iron" --price 39.50 --currency EUR --stock 10
//! shopctl product get 75a899c2-46a3-53d2-9115-5d10bab6bdef
//! shopctl product get-many ID1 ID2 --name "Green Tea"
//! shopctl product list tea --page-size 5          # one page; --all for every page
//! shopctl product search --category kitchen       # streamed, a row per product as it arrives
//! shopctl product adjust-stock ID --delta -2 --reason breakage
//! shopctl product reserve ORDER_ID --line ID=2    # the order service's token only
//! shopctl product release ORDER_ID
//! ```

use serde::Serialize;
use shop_proto::ecommerce::{
    AdjustStockRequest, GetProductsRequest, ListProductsRequest, Money, Product, ProductId,
    ReleaseStockRequest, ReserveStockRequest, SearchProductsRequest, StockLine,
};

use super::{
    ConnectArgs,
    output::{Format, OutputArgs, Printer},
    parse_amount, parse_line,
    view::{
        self, ProductJson, print_id, print_product, print_reservation, product_json, product_table,
    },
    within,
};

/// The catalog: products, prices and stock (ecommerce.ProductInfo).
#[derive(clap::Args, Debug)]
pub struct ProductArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: ProductCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ProductCommand {
    /// Add a product and print its id (addProduct; role admin).
    Add(AddArgs),
    /// Show one product (getProduct).
    Get {
        /// The product's id.
        id: String,
    },
    /// Show several products by id and/or exact name in one call
    /// (getProducts); unknown ones are listed as missing.
    GetMany {
        /// Product ids.
        ids: Vec<String>,
        /// An exact product name (repeatable).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
    /// One page of the catalog ordered by name (listProducts); --all follows
    /// every page.
    List(ListArgs),
    /// Every matching product, printed as each arrives (searchProducts,
    /// server streaming).
    Search(SearchArgs),
    /// Add units to (or, with a negative delta, remove from) a product's
    /// stock (adjustStock; role admin).
    AdjustStock {
        /// The product's id.
        id: String,
        /// Units to add, or to remove when negative (never zero).
        #[arg(long, allow_negative_numbers = true)]
        delta: i64,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Reserve stock for an order, all lines or none (reserveStock; only the
    /// order service's own token may).
    Reserve {
        /// The order the reservation belongs to (the idempotency key).
        order_id: String,
        /// PRODUCT_ID=QUANTITY (repeatable; a bare id means 1).
        #[arg(long = "line", value_name = "ID=QTY", required = true, value_parser = parse_line)]
        lines: Vec<(String, i64)>,
    },
    /// Give an order's reserved stock back (releaseStock; only the order
    /// service's own token may).
    Release {
        /// The order whose reservation to release.
        order_id: String,
    },
}

/// Options of `product add`.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Product name.
    #[arg(long)]
    pub name: String,
    /// Description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Exact price, e.g. 19.99 (no rounding: more decimals than the
    /// currency has are refused by the service).
    #[arg(long, value_parser = parse_amount, allow_negative_numbers = true)]
    pub price: (i64, i32),
    /// ISO 4217 currency of --price.
    #[arg(long, env = "SHOP_CURRENCY", default_value = "USD")]
    pub currency: String,
    /// Units in stock; leave out for a product that does not track stock
    /// (always available, as the book's products are).
    #[arg(long, allow_negative_numbers = true)]
    pub stock: Option<i64>,
    /// Category, e.g. kitchen.
    #[arg(long, default_value = "")]
    pub category: String,
    /// Picture: an absolute URL or a path on the storefront.
    #[arg(long, default_value = "")]
    pub image_url: String,
    /// Choose the id (a UUID) instead of letting the service pick one; makes
    /// a retry safe (the second attempt is ALREADY_EXISTS).
    #[arg(long)]
    pub id: Option<String>,
}

/// Options of `product list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Case-insensitive part of name, description or category; empty: all.
    #[arg(default_value = "")]
    pub query: String,
    /// Exact category.
    #[arg(long, default_value = "")]
    pub category: String,
    /// Products per page, 1..100 (the service's default: 20).
    #[arg(long)]
    pub page_size: Option<i32>,
    /// Token of the page to show, as printed after the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
}

/// Options of `product search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Case-insensitive part of name, description or category; empty: all.
    #[arg(default_value = "")]
    pub query: String,
    /// Exact category.
    #[arg(long, default_value = "")]
    pub category: String,
    /// Stop after this many products.
    #[arg(long)]
    pub limit: Option<i64>,
}

/// One page of listProducts.
#[derive(Serialize)]
struct PageJson {
    products: Vec<ProductJson>,
    next_page_token: String,
}

/// getProducts' reply.
#[derive(Serialize)]
struct FoundJson {
    products: Vec<ProductJson>,
    missing: Vec<String>,
}

/// Runs one `product` subcommand.
pub async fn run(args: ProductArgs) -> anyhow::Result<()> {
    let clients = args.connect.clients()?;
    let mut client = clients.productinfo.clone();
    let p = Printer::new(args.output.output);
    match args.command {
        ProductCommand::Add(add) => {
            let product = Product {
                id: add.id.unwrap_or_default(),
                name: add.name,
                description: add.description,
                unit_price: Some(Money {
                    currency_code: add.currency,
                    units: add.price.0,
                    nanos: add.price.1,
                }),
                stock: add.stock,
                image_url: add.image_url,
                category: add.category,
                ..Default::default()
            };
            let id = client
                .add_product(clients.request(product))
                .await?
                .into_inner();
            print_id(&p, &id.value)
        }
        ProductCommand::Get { id } => {
            let product = client
                .get_product(clients.request(ProductId { value: id }))
                .await?
                .into_inner();
            print_product(&p, &product)
        }
        ProductCommand::GetMany { ids, names } => {
            let found = client
                .get_products(clients.request(GetProductsRequest { ids, names }))
                .await?
                .into_inner();
            match p.format {
                Format::Json => p.json(&FoundJson {
                    products: found.products.iter().map(product_json).collect(),
                    missing: found.missing,
                }),
                Format::Id => found.products.iter().try_for_each(|x| p.line(&x.id)),
                Format::Table => {
                    if !found.products.is_empty() {
                        p.table(&product_table(&found.products))?;
                    }
                    if !found.missing.is_empty() {
                        p.details(&[("missing", found.missing.join(", "))])?;
                    }
                    Ok(())
                }
            }
        }
        ProductCommand::List(list) => {
            let mut token = list.page_token;
            let mut rows = view::product_rows();
            loop {
                let page = client
                    .list_products(clients.request(ListProductsRequest {
                        query: list.query.clone(),
                        category: list.category.clone(),
                        page_size: list.page_size.unwrap_or(0),
                        page_token: token,
                    }))
                    .await?
                    .into_inner();
                match p.format {
                    Format::Json => p.json(&PageJson {
                        products: page.products.iter().map(product_json).collect(),
                        next_page_token: page.next_page_token.clone(),
                    })?,
                    Format::Table if !list.all => {
                        if page.products.is_empty() {
                            eprintln!("no products match");
                        } else {
                            p.table(&product_table(&page.products))?;
                        }
                    }
                    _ => {
                        for product in &page.products {
                            rows.print(&p, product)?;
                        }
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                if !list.all {
                    if p.format == Format::Table {
                        eprintln!("next page: --page-token {}", page.next_page_token);
                    }
                    break;
                }
                token = page.next_page_token;
            }
            Ok(())
        }
        ProductCommand::Search(search) => {
            let request = clients.request(SearchProductsRequest {
                query: search.query,
                category: search.category,
                limit: search.limit.unwrap_or(0),
            });
            within(clients.timeout, async {
                let mut stream = client.search_products(request).await?.into_inner();
                let mut rows = view::product_rows();
                while let Some(product) = stream.message().await? {
                    rows.print(&p, &product)?;
                }
                if rows.count() == 0 && p.format == Format::Table {
                    eprintln!("no products match");
                }
                Ok(())
            })
            .await
        }
        ProductCommand::AdjustStock { id, delta, reason } => {
            let product = client
                .adjust_stock(clients.request(AdjustStockRequest {
                    product_id: id,
                    delta,
                    reason,
                }))
                .await?
                .into_inner();
            print_product(&p, &product)
        }
        ProductCommand::Reserve { order_id, lines } => {
            let lines = lines
                .into_iter()
                .map(|(product_id, quantity)| StockLine {
                    product_id,
                    quantity,
                })
                .collect();
            let reservation = client
                .reserve_stock(clients.request(ReserveStockRequest { order_id, lines }))
                .await?
                .into_inner();
            print_reservation(&p, &reservation)
        }
        ProductCommand::Release { order_id } => {
            let reservation = client
                .release_stock(clients.request(ReleaseStockRequest { order_id }))
                .await?
                .into_inner();
            print_reservation(&p, &reservation)
        }
    }
}
