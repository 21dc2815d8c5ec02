//! Adapters to the services outside Stagedoor. Each service sits behind a trait
//! of the part that needs it; the adapters here implement those traits with the
//! services' own clients, and are built once at start from the configuration.
//! Nothing here touches the database: what an adapter reads goes through the
//! domain that asked for it.

use std::sync::Arc;

use aws_sdk_cognitoidentityprovider::config::{SharedCredentialsProvider, SharedHttpClient};

use crate::catalog::provider::EntityProvider;
use crate::config::Config;

pub mod cognito;

/// The HTTP client of every AWS SDK client: rustls with ring, and the system's
/// root certificates.
fn aws_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The catalog's entity providers that the configuration names. AWS clients
/// use `aws_credentials` when given, else AWS's standard credential chain.
pub async fn entity_providers(
    config: &Config,
    aws_credentials: Option<SharedCredentialsProvider>,
) -> Vec<Arc<dyn EntityProvider>> {
    let mut providers: Vec<Arc<dyn EntityProvider>> = Vec::new();
    if config.cognito_providers.is_empty() {
        return providers;
    }
    let http = aws_http_client();
    for c in &config.cognito_providers {
        let directory =
            cognito::CognitoDirectory::connect(c, aws_credentials.clone(), http.clone()).await;
        providers.push(Arc::new(cognito::CognitoProvider::new(
            c,
            Arc::new(directory),
        )));
    }
    providers
}
