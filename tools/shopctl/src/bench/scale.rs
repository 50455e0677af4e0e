//! The benchmark's scale section: the catalog and the orders grown to each
//! size straight in the databases (generated rows, seconds), then the calls
//! whose cost could grow with them timed one at a time: a catalog search
//! that finds a few products and one that finds none, a category page,
//! `getProduct`, and `searchOrders` of everyone's orders; at the largest
//! size also how many searches one replica answers per second.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use serde::Serialize;
use shop_proto::ecommerce::{
    ListProductsRequest, ProductId, order_management_client::OrderManagementClient,
    product_info_client::ProductInfoClient,
};
use tonic::transport::Channel;

use crate::connect::Bearer;

type Catalog = ProductInfoClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;
type Orders =
    OrderManagementClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A word only a handful of products and orders have: what a search that
/// finds something looks for.
const NEEDLE: &str = "zanzibar";
/// A word nothing has.
const MISSING: &str = "quetzalcoatl";
/// Calls timed per measurement.
const CALLS: usize = 100;

/// Latency of one kind of call, one caller, in µs.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Every timed call at one size.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub products: u64,
    pub orders: u64,
    /// Seconds it took to add this step's rows and their index entries.
    pub fill_s: f64,
    pub search_hit: Timing,
    pub search_miss: Timing,
    pub category_page: Timing,
    pub get_product: Timing,
    pub search_orders: Timing,
}

/// The whole section.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub steps: Vec<Step>,
    /// Searches (`listProducts` with the needle) answered per second by one
    /// replica at the largest size, with `callers` callers.
    pub searches_per_s: f64,
    pub callers: usize,
}

/// Grows the catalog (`catalog_db`) and the orders (`order_db`) to each of
/// `sizes` in turn and times the calls through `catalog` (one replica) and
/// `orders`, as an admin.
pub async fn run(
    sizes: &[u64],
    catalog_db: &str,
    order_db: &str,
    catalog: Catalog,
    orders: Orders,
    callers: usize,
    duration: Duration,
) -> anyhow::Result<Scale> {
    let catalog_pool = sqlx::PgPool::connect(catalog_db).await?;
    let order_pool = sqlx::PgPool::connect(order_db).await?;
    needles(&catalog_pool, &order_pool).await?;
    let mut steps = Vec::new();
    let mut have = 0;
    for &size in sizes {
        eprintln!("bench: scale, growing the catalog and the orders to {size}");
        let began = Instant::now();
        fill(&catalog_pool, &order_pool, have + 1, size).await?;
        have = size;
        let fill_s = began.elapsed().as_secs_f64();
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM products LIMIT 200")
            .fetch_all(&catalog_pool)
            .await?;
        let step = Step {
            products: count(&catalog_pool, "products").await?,
            orders: count(&order_pool, "orders").await?,
            fill_s,
            search_hit: time(|| search(catalog.clone(), NEEDLE, "")).await?,
            search_miss: time(|| search(catalog.clone(), MISSING, "")).await?,
            category_page: time(|| search(catalog.clone(), "", "scale 7")).await?,
            get_product: {
                let mut n = 0;
                time(|| {
                    n += 1;
                    get(catalog.clone(), ids[n % ids.len()].to_string())
                })
                .await?
            },
            search_orders: time(|| search_orders(orders.clone())).await?,
        };
        eprintln!(
            "bench: {} products, {} orders (+{fill_s:.0} s): search p99 {:.1} ms hit, {:.1} ms miss; searchOrders p99 {:.1} ms",
            step.products,
            step.orders,
            step.search_hit.p99_us as f64 / 1000.0,
            step.search_miss.p99_us as f64 / 1000.0,
            step.search_orders.p99_us as f64 / 1000.0
        );
        steps.push(step);
    }
    eprintln!("bench: scale, {callers} callers searching for {duration:?}");
    let ends = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let catalog = catalog.clone();
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < ends {
                search(catalog.clone(), NEEDLE, "").await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(Scale {
        steps,
        searches_per_s: total as f64 / duration.as_secs_f64(),
        callers,
    })
}

/// Five products and five orders with the needle, found at every size.
async fn needles(catalog: &sqlx::PgPool, orders: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO products (id, name, description, currency, price_minor, stock, category) \
         SELECT gen_random_uuid(), 'Zanzibar spice ' || k, 'Cloves from the island', 'EUR', 900, 100, 'spices' \
         FROM generate_series(1, 5) AS k ON CONFLICT DO NOTHING",
    )
    .execute(catalog)
    .await
    .context("needle products")?;
    sqlx::query(
        "WITH o AS ( \
           INSERT INTO orders (id, customer, fingerprint, status, description, destination, \
                               currency, total_minor) \
           SELECT gen_random_uuid(), 'scale-needle', 'scale', 'confirmed', '', \
                  'Zanzibar harbour ' || k, 'EUR', 900 \
           FROM generate_series(1, 5) AS k RETURNING id) \
         INSERT INTO order_lines (order_id, line_no, product_id, name, quantity, unit_price_minor) \
         SELECT id, 1, gen_random_uuid(), 'Cloves', 1, 900 FROM o",
    )
    .execute(orders)
    .await
    .context("needle orders")?;
    Ok(())
}

/// Generated products and orders number `from` to `to`, then the tables
/// vacuumed (the trigram indexes take in their pending entries) and
/// analysed, as autovacuum would soon.
async fn fill(
    catalog: &sqlx::PgPool,
    orders: &sqlx::PgPool,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let (from, to) = (from as i64, to as i64);
    sqlx::query(
        "INSERT INTO products (id, name, description, currency, price_minor, stock, category) \
         SELECT gen_random_uuid(), 'Scale product ' || i, \
                'Generated for the scale run: lot ' || (i % 1000) || ', shelf ' || (i % 37), \
                'EUR', 100 + i % 900, 1000, 'scale ' || (i % 50) \
         FROM generate_series($1::bigint, $2::bigint) AS i",
    )
    .bind(from)
    .bind(to)
    .execute(catalog)
    .await
    .context("generated products")?;
    sqlx::query(
        "WITH o AS ( \
           INSERT INTO orders (id, customer, fingerprint, status, description, destination, \
                               currency, total_minor, created_at) \
           SELECT gen_random_uuid(), 'scale-' || (i % 5000), 'scale', 'confirmed', \
                  'scale order ' || i, 'City ' || (i % 300), 'EUR', 500, \
                  now() - make_interval(secs => i) \
           FROM generate_series($1::bigint, $2::bigint) AS i RETURNING id) \
         INSERT INTO order_lines (order_id, line_no, product_id, name, quantity, unit_price_minor) \
         SELECT id, 1, gen_random_uuid(), 'Scale item', 1, 500 FROM o",
    )
    .bind(from)
    .bind(to)
    .execute(orders)
    .await
    .context("generated orders")?;
    for (pool, table) in [
        (catalog, "products"),
        (orders, "orders"),
        (orders, "order_lines"),
    ] {
        let vacuum = match table {
            "products" => "VACUUM ANALYZE products",
            "orders" => "VACUUM ANALYZE orders",
            _ => "VACUUM ANALYZE order_lines",
        };
        sqlx::query(vacuum).execute(pool).await?;
    }
    Ok(())
}

async fn count(pool: &sqlx::PgPool, table: &str) -> anyhow::Result<u64> {
    let sql = match table {
        "products" => "SELECT count(*) FROM products",
        _ => "SELECT count(*) FROM orders",
    };
    let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await?;
    Ok(n as u64)
}

/// p50 and p99 of [`CALLS`] calls of `call`, one after another (after a
/// few untimed ones).
async fn time<F, Fut>(mut call: F) -> anyhow::Result<Timing>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..5 {
        call().await?;
    }
    let mut us = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let began = Instant::now();
        call().await?;
        us.push(began.elapsed().as_micros() as u64);
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    Ok(Timing {
        p50_us: at(0.5),
        p99_us: at(0.99),
    })
}

async fn search(mut catalog: Catalog, query: &str, category: &str) -> anyhow::Result<()> {
    catalog
        .list_products(ListProductsRequest {
            query: query.into(),
            category: category.into(),
            page_size: 20,
            ..Default::default()
        })
        .await
        .context("listProducts")?;
    Ok(())
}

async fn get(mut catalog: Catalog, id: String) -> anyhow::Result<()> {
    catalog
        .get_product(ProductId { value: id })
        .await
        .context("getProduct")?;
    Ok(())
}

/// `searchOrders` of everyone's orders for the needle, read to the end.
async fn search_orders(mut orders: Orders) -> anyhow::Result<()> {
    let mut stream = orders
        .search_orders(NEEDLE.to_owned())
        .await
        .context("searchOrders")?
        .into_inner();
    let mut found = 0;
    while let Some(order) = stream.next().await {
        order.context("searchOrders")?;
        found += 1;
    }
    anyhow::ensure!(found >= 5, "searchOrders found {found} of the 5 needles");
    Ok(())
}
