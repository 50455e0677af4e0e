//! `storefront`: the shop's web shop and storefront API. Everything but this
//! line lives in the library and the shared skeleton, so tests drive the
//! same code.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shop_runtime::service::main::<storefront::Storefront>().await
}
