//! The dashboard: a web page for operators at `/ui/` (and `/` redirects there), built from
//! plain HTML, CSS and JavaScript files compiled into the binary, so it needs nothing at run
//! time and no toolchain but cargo.
//!
//! The page is a client of the admin API: it asks for the admin token, keeps it in the tab's
//! memory only, and sends it as `Authorization: Bearer` on every `/api/*` call. The files
//! themselves hold no data and need no token. Every answer carries a strict
//! Content-Security-Policy (scripts, styles and connections from this origin only, no inline
//! code, no `eval`, no framing).
//!
//! It is registered by the admin API's `configure`, so it is served wherever the admin API is.
//! These pages are not API routes: they are not in `http::ROUTES` nor in the OpenAPI document.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// What every dashboard answer is allowed to do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file, by the name it is served under (`/ui/<name>`); `index.html` is also `/ui/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("providers.js", JS),
    asset!("usage.js", JS),
    asset!("events.js", JS),
    asset!("healthcheck.js", JS),
    asset!("explain.js", JS),
];

/// Registers `/`, `/ui` and `/ui/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(to_ui))
        .route("/ui", web::get().to(to_ui))
        .route("/ui/", web::get().to(index))
        .route("/ui/{file}", web::get().to(file));
}

fn secured(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        // Small files: always revalidated, so an upgraded router serves its own page.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    builder
}

async fn to_ui() -> HttpResponse {
    secured(HttpResponse::Found())
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

fn serve(asset: &Asset) -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type(asset.content_type)
        .body(asset.body)
}

fn named(name: &str) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(serve)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard file named {name:?}")))
}

async fn index() -> Result<HttpResponse, ApiError> {
    named("index.html")
}

async fn file(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    named(&path.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_imports_is_served() {
        // A module imported but not listed would 404 in the browser: check the list against
        // the files' own import lines and the page's script tag.
        let served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for a in ASSETS {
            for line in a.body.lines() {
                let Some(rest) = line.split(" from \"./").nth(1) else {
                    continue;
                };
                let name = rest.split('"').next().unwrap_or_default();
                assert!(
                    served.contains(&name),
                    "{} imports {name}, which is not served",
                    a.name
                );
            }
        }
        let index = ASSETS
            .iter()
            .find(|a| a.name == "index.html")
            .map_or("", |a| a.body);
        assert!(index.contains("src=\"/ui/main.js\""));
        assert!(!index.contains("<script>"), "no inline script");
        assert!(!index.contains(" style=\""), "no inline style");
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            assert!(!a.body.contains("eval("), "{} uses eval", a.name);
            assert!(
                !a.body.contains("innerHTML"),
                "{} writes HTML from strings",
                a.name
            );
        }
    }
}
