//! The registry conformance suite through the RPC: a `RegistryClient` over real TCP to
//! `server::serve` on a fresh in-memory backend, with a shared secret.

use std::sync::Arc;

use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{RegistryApi, conformance};
use registry_svc::backend::memory::MemoryRegistry;
use registry_svc::server::{ServerConfig, serve};
use tokio::net::TcpListener;

const SECRET: &[u8] = b"conformance secret";

async fn fresh() -> Arc<dyn RegistryApi> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let backend = Arc::new(MemoryRegistry::new(conformance::limits()));
    let config = ServerConfig {
        secret: Some(SECRET.to_vec()),
        ..ServerConfig::default()
    };
    tokio::spawn(serve(
        listener,
        backend,
        config,
        std::future::pending::<()>(),
    ));
    let client = RegistryClient::connect(addr, Some(SECRET.to_vec()), ClientConfig::default())
        .await
        .expect("connect to the registry");
    Arc::new(client)
}

hyperverse_core::registry_conformance_tests!(fresh);
