//! Static files, embedded in the binary at build time and served with a
//! content hash as ETag, so that browsers revalidate cheaply.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// Every file under `static/`, with its content type.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "css/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/css/app.css"),
    ),
    (
        "js/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/js/app.js"),
    ),
    (
        "js/create.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/js/create.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../static/favicon.svg"),
    ),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", web::get().to(asset));
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Some((_, kind, body)) = FILES.iter().find(|(p, _, _)| *p == path.as_str()) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("Not found");
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body))[..16]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"));
    if fresh {
        res.finish()
    } else {
        res.content_type(*kind).body(*body)
    }
}
