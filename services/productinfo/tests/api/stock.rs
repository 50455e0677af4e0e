//! Stock: admin adjustments, and the reservations the order service makes,
//! under concurrency.

use shop_proto::ecommerce::{
    AdjustStockRequest, ProductId, ReleaseStockRequest, ReservationState, ReserveStockRequest,
    StockLine,
};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::TestApp;

async fn stock(app: &TestApp, id: &str) -> i64 {
    stock_or_untracked(app, id)
        .await
        .expect("a product that tracks stock")
}

/// The product's stock; `None` when it does not track stock.
async fn stock_or_untracked(app: &TestApp, id: &str) -> Option<i64> {
    app.customer()
        .get_product(ProductId { value: id.into() })
        .await
        .unwrap()
        .into_inner()
        .stock
}

fn line(product_id: &str, quantity: i64) -> StockLine {
    StockLine {
        product_id: product_id.into(),
        quantity,
    }
}

#[tokio::test]
async fn admins_adjust_stock_but_never_below_zero() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 5).await;
    let adjust = |delta: i64| AdjustStockRequest {
        product_id: id.clone(),
        delta,
        reason: "stocktake".into(),
    };

    let after = app
        .admin()
        .adjust_stock(adjust(10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.stock, Some(15));
    let too_many = app.admin().adjust_stock(adjust(-16)).await.unwrap_err();
    assert_eq!(too_many.code(), Code::FailedPrecondition);
    assert_eq!(
        stock(&app, &id).await,
        15,
        "a refused adjustment changes nothing"
    );
    let zero = app.admin().adjust_stock(adjust(0)).await.unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    let ghost = app
        .admin()
        .adjust_stock(AdjustStockRequest {
            product_id: uuid::Uuid::now_v7().to_string(),
            delta: 1,
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(ghost.code(), Code::NotFound);

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let audit: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT delta, reason, actor FROM stock_adjustments ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        audit,
        [(10, "stocktake".to_string(), "admin-1".to_string())]
    );
}

#[tokio::test]
async fn a_reservation_takes_every_line_or_nothing() {
    let app = TestApp::spawn().await;
    let mug = app.add_product("Mug", 500, 5).await;
    let tea = app.add_product("Tea", 300, 1).await;
    let mut order = app.order_service();

    let short = order
        .reserve_stock(ReserveStockRequest {
            order_id: "order-1".into(),
            lines: vec![line(&mug, 2), line(&tea, 2)],
        })
        .await
        .unwrap_err();

    assert_eq!(short.code(), Code::FailedPrecondition);
    let violations = short.get_details_precondition_failure().unwrap().violations;
    assert_eq!(violations.len(), 1, "only the short product is named");
    assert_eq!(violations[0].subject, tea);
    assert!(short.message().contains("2 requested, 1 available"));
    assert_eq!(
        stock(&app, &mug).await,
        5,
        "nothing taken from the other line"
    );

    // The failed attempt did not spend the order id.
    let ok = order
        .reserve_stock(ReserveStockRequest {
            order_id: "order-1".into(),
            lines: vec![line(&mug, 2), line(&tea, 1), line(&mug, 1)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.state, ReservationState::Held as i32);
    let mut reserved: Vec<_> = ok
        .lines
        .iter()
        .map(|l| {
            (
                l.product_id.clone(),
                l.quantity,
                l.unit_price.as_ref().unwrap().to_minor().unwrap(),
            )
        })
        .collect();
    reserved.sort();
    let mut expected = vec![(mug.clone(), 3, 500), (tea.clone(), 1, 300)];
    expected.sort();
    assert_eq!(
        reserved, expected,
        "duplicate lines merged, prices from the catalog"
    );
    assert_eq!(stock(&app, &mug).await, 2);
    assert_eq!(stock(&app, &tea).await, 0);
}

#[tokio::test]
async fn repeating_a_reservation_changes_nothing_and_releasing_twice_is_harmless() {
    let app = TestApp::spawn().await;
    let mug = app.add_product("Mug", 500, 10).await;
    let mut order = app.order_service();
    let reserve = |qty| ReserveStockRequest {
        order_id: "order-7".into(),
        lines: vec![line(&mug, qty)],
    };

    let first = order.reserve_stock(reserve(4)).await.unwrap().into_inner();
    let again = order.reserve_stock(reserve(4)).await.unwrap().into_inner();
    assert_eq!(first, again, "same answer");
    assert_eq!(stock(&app, &mug).await, 6, "taken once");

    let different = order.reserve_stock(reserve(5)).await.unwrap_err();
    assert_eq!(different.code(), Code::FailedPrecondition);

    let release = ReleaseStockRequest {
        order_id: "order-7".into(),
    };
    let released = order
        .release_stock(release.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.state, ReservationState::Released as i32);
    assert_eq!(stock(&app, &mug).await, 10);
    order.release_stock(release).await.unwrap();
    assert_eq!(stock(&app, &mug).await, 10, "given back once");

    let after_release = order.reserve_stock(reserve(4)).await.unwrap_err();
    assert_eq!(after_release.code(), Code::FailedPrecondition);
    assert_eq!(stock(&app, &mug).await, 10);
}

#[tokio::test]
async fn releasing_before_reserving_blocks_a_late_reservation() {
    let app = TestApp::spawn().await;
    let mug = app.add_product("Mug", 500, 10).await;
    let mut order = app.order_service();

    let tombstone = order
        .release_stock(ReleaseStockRequest {
            order_id: "late".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tombstone.state, ReservationState::Released as i32);
    assert!(tombstone.lines.is_empty());

    let late = order
        .reserve_stock(ReserveStockRequest {
            order_id: "late".into(),
            lines: vec![line(&mug, 1)],
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(stock(&app, &mug).await, 10);
}

#[tokio::test]
async fn a_hundred_parallel_reservations_never_oversell_thirty_units() {
    let app = TestApp::spawn().await;
    let scarce = app.add_product("Scarce", 1000, 30).await;
    let plenty = app.add_product("Plenty", 100, 10_000).await;

    let attempts = (0..100).map(|i| {
        let mut order = app.order_service();
        let quantity = i % 3 + 1;
        // Lines in both orders: locking must not deadlock.
        let lines = if i % 2 == 0 {
            vec![line(&scarce, quantity), line(&plenty, 1)]
        } else {
            vec![line(&plenty, 1), line(&scarce, quantity)]
        };
        async move {
            let result = order
                .reserve_stock(ReserveStockRequest {
                    order_id: format!("parallel-{i}"),
                    lines,
                })
                .await;
            (quantity, result)
        }
    });
    let results = futures::future::join_all(attempts).await;

    let mut sold = 0;
    let mut confirmed = 0;
    for (quantity, result) in results {
        match result {
            Ok(_) => {
                sold += quantity;
                confirmed += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    let left = stock(&app, &scarce).await;
    assert!(left >= 0);
    assert_eq!(sold + left, 30, "every unit accounted for");
    assert!(left < 3, "stock left ({left}) only if no request fits");
    assert_eq!(
        stock(&app, &plenty).await,
        10_000 - confirmed,
        "the other line moved exactly with the confirmed reservations"
    );
}

#[tokio::test]
async fn bad_reservations_are_invalid_and_unknown_products_not_found() {
    let app = TestApp::spawn().await;
    let mut order = app.order_service();

    let invalid = order
        .reserve_stock(ReserveStockRequest {
            order_id: String::new(),
            lines: vec![line("nope", 0)],
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields = shop_runtime::error::violated_fields(&invalid);
    assert_eq!(
        fields,
        ["order_id", "lines[0].product_id", "lines[0].quantity"]
    );

    let ghost = uuid::Uuid::now_v7().to_string();
    let unknown = order
        .reserve_stock(ReserveStockRequest {
            order_id: "o".into(),
            lines: vec![line(&ghost, 1)],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains(&ghost));
}

#[tokio::test]
async fn a_product_without_stock_always_reserves_until_an_admin_starts_tracking_it() {
    let app = TestApp::spawn().await;
    let id = app
        .admin()
        .add_product(shop_proto::ecommerce::Product {
            name: "Poster".into(),
            price: 9.5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    let read = || stock_or_untracked(&app, &id);
    assert_eq!(read().await, None, "stock left unset is not tracked");

    let reserve = |order: &str, quantity: i64| ReserveStockRequest {
        order_id: order.into(),
        lines: vec![line(&id, quantity)],
    };
    let mut orders = app.order_service();
    orders.reserve_stock(reserve("o-1", 1000)).await.unwrap();
    orders.reserve_stock(reserve("o-2", 1000)).await.unwrap();
    assert_eq!(read().await, None, "reserving takes nothing from no count");

    let adjust = |delta: i64| AdjustStockRequest {
        product_id: id.clone(),
        delta,
        reason: "first count".into(),
    };
    let negative = app.admin().adjust_stock(adjust(-1)).await.unwrap_err();
    assert_eq!(negative.code(), Code::FailedPrecondition);
    assert!(
        negative.message().contains("does not track stock"),
        "{}",
        negative.message()
    );
    assert_eq!(read().await, None);
    let started = app
        .admin()
        .adjust_stock(adjust(5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.stock, Some(5), "a positive delta starts tracking");

    // A release gives back only what was taken: nothing, for o-1.
    orders
        .release_stock(ReleaseStockRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(read().await, Some(5));
    // Tracked now, it is never oversold.
    let short = orders.reserve_stock(reserve("o-3", 6)).await.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition);
    orders.reserve_stock(reserve("o-4", 5)).await.unwrap();
    assert_eq!(read().await, Some(0));
    orders
        .release_stock(ReleaseStockRequest {
            order_id: "o-4".into(),
        })
        .await
        .unwrap();
    assert_eq!(read().await, Some(5), "o-4 took 5 and gave them back");
}
