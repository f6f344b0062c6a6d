//! `GET /metrics`: the Prometheus text endpoint every Hyperverse process serves
//! (feature `metrics-http`).

use std::net::TcpListener;
use std::sync::Arc;

use prometheus::{Registry, TextEncoder};

/// The metrics of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
}

/// Serves `GET /metrics` on `listener` with what `render` returns, from a thread of its
/// own (actix-web wants its own runtime, and a scrape must not wait on a busy event
/// loop); the server lives as long as the process.
pub fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(move || {
        let render = render.clone();
        App::new().route(
            "/metrics",
            web::get().to(move || {
                let body = render();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || actix_web::rt::System::new().block_on(server))?;
    Ok(())
}
