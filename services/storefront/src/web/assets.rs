//! Static files (styles, the script, product images), embedded in the
//! binary at build time, with validators so browsers revalidate cheaply.

use std::{collections::HashMap, sync::OnceLock};

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest as _, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/static_files.rs"));
}

struct Asset {
    bytes: &'static [u8],
    etag: HeaderValue,
    content_type: &'static str,
}

fn assets() -> &'static HashMap<&'static str, Asset> {
    static ASSETS: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        embedded::FILES
            .iter()
            .map(|(name, bytes)| {
                let digest = Sha256::digest(bytes);
                let etag = format!("\"{}\"", &format!("{digest:x}")[..16]);
                let content_type = match name.rsplit('.').next() {
                    Some("css") => "text/css; charset=utf-8",
                    Some("js") => "text/javascript; charset=utf-8",
                    Some("svg") => "image/svg+xml",
                    Some("png") => "image/png",
                    _ => "application/octet-stream",
                };
                (
                    *name,
                    Asset {
                        bytes,
                        etag: HeaderValue::from_str(&etag)
                            .unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
                        content_type,
                    },
                )
            })
            .collect()
    })
}

pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = assets().get(path.as_str()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    if headers.get(header::IF_NONE_MATCH) == Some(&asset.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [cache, (header::ETAG, asset.etag.clone())],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::ETAG, asset.etag.clone()),
            cache,
        ],
        asset.bytes,
    )
        .into_response()
}
