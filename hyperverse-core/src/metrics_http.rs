//! The HTTP listener every Hyperverse process serves (feature `metrics-http`):
//!
//! - `GET /metrics`: the Prometheus text format;
//! - `GET /livez`: `200 ok` while the process answers at all (a probe that fails means
//!   restart it);
//! - `GET /readyz`: `200 ready` when the process can do its work now, else `503` and
//!   one line saying why (a probe that fails means send it no work).

use std::net::TcpListener;
use std::sync::Arc;

use prometheus::{Registry, TextEncoder};

/// Registers what every Hyperverse process exports beside its own metrics: the process's
/// resources (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, … from `/proc`) and `hv_build_info{service,version}` (always 1),
/// which says what runs where.
pub fn register_process_metrics(registry: &Registry, service: &str) -> prometheus::Result<()> {
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "hv_build_info",
            "Always 1: the service and the version of its build.",
        ),
        &["service", "version"],
    )?;
    info.with_label_values(&[service, env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(info))
}

/// The metrics of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
}

/// Whether a process can do its work now: `Err` says why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A process that is always ready when it answers (nothing to wait for).
pub fn always_ready() -> Readiness {
    Arc::new(|| Ok(()))
}

/// Serves `GET /metrics` (what `render` returns), `/livez` and `/readyz` (what `ready`
/// says) on `listener`, from a thread of its own (actix-web wants its own runtime, and a
/// scrape or probe must not wait on a busy event loop); the server lives as long as the
/// process.
pub fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    ready: Readiness,
) -> std::io::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(move || {
        let render = render.clone();
        let ready = ready.clone();
        App::new()
            .route(
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
            .route(
                "/livez",
                web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
            )
            .route(
                "/readyz",
                web::get().to(move || {
                    let answer = ready();
                    async move {
                        match answer {
                            Ok(()) => HttpResponse::Ok().body("ready\n"),
                            Err(why) => HttpResponse::ServiceUnavailable()
                                .body(format!("not ready: {}\n", why.replace('\n', " "))),
                        }
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
