//! The trust stores of every TLS client a function makes: the AWS SDK's, the JWKS fetcher's and
//! any service's own HTTP client.
//!
//! No root is read from the file system. Reading the system's store cost the first request that
//! reached a store about 7 ms here (a directory of 146 certificates and a bundle, parsed for every
//! new connector). The consequence, written down in docs/benchmarks.md: the roots change when this
//! crate is updated, not when the system's `ca-certificates` is, and `SSL_CERT_FILE` is not read.
//! The legacy database keeps its own CA (`kit::db`), which no public store holds.
//!
//! - The AWS SDK's clients talk to AWS's endpoints and to nothing else, and every one of those
//!   presents a chain to Amazon Trust Services: the SDK trusts those five roots
//!   ([`AMAZON_TRUST_SERVICES`]), not the 113 other CAs that could otherwise vouch for
//!   `dynamodb.<region>.amazonaws.com`. Parsing 5 roots instead of 118 is also what keeps the first
//!   store request within 2 ms of a warm one (`cargo xtask bench lambda`).
//! - Clients of URLs from the configuration (the JWKS fetcher, preprocessing's client for the
//!   hardware API) trust Mozilla's roots, compiled in (`webpki-root-certs`): [`client_config`].

use std::sync::{Arc, LazyLock};

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Amazon Root CA 1 to 4 and Starfield Services Root Certificate Authority – G2 (which
/// cross-signs them), as PEM: the roots of every certificate an AWS endpoint presents. Each is
/// byte for byte one of Mozilla's roots in `webpki-root-certs` (a test checks it), copied here
/// because the SDK takes extra roots only as PEM, which it decodes for every connector.
pub const AMAZON_TRUST_SERVICES: &str = include_str!("amazon-trust-services.pem");

/// The rustls configuration every client of a configured URL shares: Mozilla's roots.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the default protocol versions are supported")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    CONFIG.clone()
}

/// An HTTP client that trusts Mozilla's roots, with a whole-request timeout.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_preconfigured(client_config().as_ref().clone())
        .build()
        .expect("a client with a preconfigured TLS backend builds")
}

/// The HTTP client the AWS SDK's clients get from `kit::aws_config`: the SDK's own hyper client,
/// told to trust Amazon Trust Services' roots instead of loading the system's, and made when the
/// first request needs a connection, not at start-up.
pub(crate) fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(OnFirstRequest(LazyLock::new(hyper_client)))
}

/// An HTTP client built when the SDK first asks it for a connector, so that cold starts that
/// never reach a store build none, and the SDK's check of a client when an SDK client is built
/// has nothing to check yet.
#[derive(Debug)]
struct OnFirstRequest(LazyLock<SharedHttpClient>);

impl HttpClient for OnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }
}

fn hyper_client() -> SharedHttpClient {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AMAZON_TRUST_SERVICES);
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store of PEM certificates is a valid TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    /// Amazon Trust Services' roots, by the common name that ends each one's subject.
    const AMAZON_ROOTS: [&str; 5] = [
        "Amazon Root CA 1",
        "Amazon Root CA 2",
        "Amazon Root CA 3",
        "Amazon Root CA 4",
        "Starfield Services Root Certificate Authority - G2",
    ];

    /// The subjects of the roots, read from the certificates themselves, every one parsable.
    fn subjects(certificates: &[CertificateDer<'static>]) -> Vec<String> {
        let mut store = rustls::RootCertStore::empty();
        let (added, rejected) = store.add_parsable_certificates(certificates.iter().cloned());
        assert_eq!((added, rejected), (certificates.len(), 0));
        store
            .roots
            .iter()
            .map(|anchor| String::from_utf8_lossy(anchor.subject.as_ref()).into_owned())
            .collect()
    }

    /// The SDK reads the text with the same parser (`pem_slice_iter`, then `RootCertStore::add`),
    /// and panics on what it cannot parse; every test that reaches the emulator builds it.
    #[test]
    fn the_sdk_trusts_exactly_amazon_trust_services_roots_as_mozilla_ships_them() {
        let ours: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let subjects = subjects(&ours);
        assert_eq!(subjects.len(), AMAZON_ROOTS.len(), "{subjects:?}");
        for (subject, name) in subjects.iter().zip(AMAZON_ROOTS) {
            assert!(subject.ends_with(name), "{subject:?} is not {name}");
        }
        for root in &ours {
            assert!(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.contains(root),
                "a root that Mozilla's list (webpki-root-certs) does not hold: update \
                 amazon-trust-services.pem from it"
            );
        }
    }

    #[test]
    fn clients_of_configured_urls_trust_all_of_mozillas_roots() {
        let all = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        let subjects = subjects(all);
        assert!(all.len() > 100);
        assert!(subjects.iter().any(|s| s.ends_with(AMAZON_ROOTS[0])));
        assert!(Arc::ptr_eq(&client_config(), &client_config()));
    }
}
