//! The shop's gRPC contract, package `ecommerce`, generated at build time from
//! `proto/ecommerce/*.proto`.
//!
//! Services depend on this crate instead of copying protos. The sets in
//! [`reflection`] feed each server's reflection so `grpcurl` can list and
//! describe every method it serves, comments included.

pub mod money;

/// Code generated at build time; lints are for hand-written code.
#[allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    non_camel_case_types
)]
mod generated {
    /// Messages, clients (`*_client`) and servers (`*_server`) of package `ecommerce`.
    pub mod ecommerce {
        tonic::include_proto!("ecommerce");
    }

    /// The book's package `ecommerce`, with only the book's fields and methods.
    #[cfg(feature = "book")]
    pub mod book {
        include!(concat!(env!("OUT_DIR"), "/book/ecommerce.rs"));
    }
}

pub use generated::ecommerce;

/// A point in time as the contract carries it (`google.protobuf.Timestamp`).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Encoded `FileDescriptorSet` of the contract and everything it imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ecommerce_descriptor");

/// What each server's reflection serves: its own service with every type it
/// references, and no other service of the contract (`grpcurl list` on the
/// catalog shows `ecommerce.ProductInfo`, not the order service).
pub mod reflection {
    /// `ecommerce.ProductInfo` (`product_info.proto` and its imports).
    pub const PRODUCT_INFO: &[u8] = tonic::include_file_descriptor_set!("product_info_descriptor");
    /// `ecommerce.OrderManagement` (`order_management.proto` and its imports).
    pub const ORDER_MANAGEMENT: &[u8] =
        tonic::include_file_descriptor_set!("order_management_descriptor");
    /// `ecommerce.Storefront` (`storefront.proto` and its imports, whose
    /// messages it uses but whose services it does not serve).
    pub const STOREFRONT: &[u8] = tonic::include_file_descriptor_set!("storefront_descriptor");
}

/// Code generated from the book's own minimal protos (`proto/book/`), used by
/// tests to play the part of the book's unchanged clients.
#[cfg(feature = "book")]
pub mod book {
    pub use crate::generated::book as ecommerce;
}
