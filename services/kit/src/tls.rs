//! One trust store for every TLS client a function makes: the AWS SDK's, the JWKS fetcher's and
//! any service's own HTTP client.
//!
//! The roots are Mozilla's, compiled in (`webpki-root-certs`), never read from the file system.
//! Reading the system's store cost the first request that reached a store about 7 ms here (a
//! directory of 146 certificates and a bundle, parsed for every new connector); a compiled-in
//! list costs no file access, and what is parsed is parsed once per process. The consequence,
//! written down in docs/benchmarks.md: the roots change when this crate is updated, not when the
//! system's `ca-certificates` is, and `SSL_CERT_FILE` is not read. The legacy database keeps its
//! own CA (`kit::db`), which no public store holds.

use std::sync::{Arc, LazyLock};

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use base64::Engine as _;

/// The rustls configuration every client in this process shares.
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

/// An HTTP client that trusts the shared roots, with a whole-request timeout.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_preconfigured(client_config().as_ref().clone())
        .build()
        .expect("a client with a preconfigured TLS backend builds")
}

/// The HTTP client the AWS SDK's clients get from `kit::aws_config`: the SDK's own hyper client,
/// told to trust the same roots instead of loading the system's, and made when the first request
/// needs a connection, not at start-up.
pub(crate) fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(OnFirstRequest(LazyLock::new(hyper_client)))
}

/// An HTTP client built when the SDK first asks it for a connector. Cold starts that never reach
/// a store skip encoding the roots; and the SDK's check of a client when an SDK client is built
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
    // The SDK takes extra roots only as PEM; it parses them when it first builds a connector.
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem(webpki_root_certs::TLS_SERVER_ROOT_CERTS));
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store of PEM certificates is a valid TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

fn pem(certificates: &[rustls::pki_types::CertificateDer<'_>]) -> Vec<u8> {
    let mut pem = Vec::with_capacity(certificates.iter().map(|c| c.len() * 4 / 3 + 64).sum());
    for certificate in certificates {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_sdk_gets_every_compiled_in_root_as_pem() {
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        let decoded: Vec<_> = CertificateDer::pem_slice_iter(&pem(roots))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(decoded.len(), roots.len());
        assert!(decoded.iter().zip(roots).all(|(a, b)| a == b));
        // Amazon's roots, which every AWS endpoint chains to, are among them.
        let mut store = rustls::RootCertStore::empty();
        let (added, rejected) = store.add_parsable_certificates(roots.iter().cloned());
        assert!(
            added > 100 && rejected == 0,
            "{added} added, {rejected} rejected"
        );
        let amazon = store
            .roots
            .iter()
            .filter(|anchor| {
                String::from_utf8_lossy(anchor.subject.as_ref()).contains("Amazon Root CA")
            })
            .count();
        assert_eq!(amazon, 4, "Amazon Root CA 1 to 4");
    }

    #[test]
    fn every_client_shares_one_configuration() {
        assert!(Arc::ptr_eq(&client_config(), &client_config()));
    }
}
