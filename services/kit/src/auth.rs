//! Token verification: every token's signature, expiry and issuer are checked before a handler runs.
//!
//! Three kinds of token are accepted, each only in its own algorithm, so a key of one kind can never
//! verify a token of another (no HS/RS confusion, no `alg: none`):
//! - accessory tokens from the accessory user pool: RS256, keys from its JWKS URL;
//! - user tokens from the users' identity provider: RS256, keys from its JWKS URL;
//! - service-to-service tokens: HS256 with a secret the deployment keeps in Secrets Manager (read at
//!   run time, see [`crate::secrets`]), each naming the one service it is for as its `aud`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use http::request::Parts;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell, RwLock};
use uuid::Uuid;

use crate::config::{ConfigError, Env};
use crate::error::ApiError;
use crate::secrets::{Secret, SecretArn, SecretStore};
use crate::types::MacAddress;

/// Who made a request, as proven by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An accessory, named by its MAC address (`cognito:username` or `username`).
    Accessory(MacAddress),
    /// A person, named by the token's `sub`.
    User(Uuid),
    /// Another of our services; `subject` is its `sub`, for the logs.
    Service { subject: String },
}

/// What a JWKS-backed issuer's tokens identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKind {
    Accessory,
    User,
}

/// One RS256 issuer: its `iss`, where its keys are, and the audience to demand, if any.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub kind: IssuerKind,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: Option<String>,
    /// How long after a fetch an unknown `kid` may trigger another one; it bounds what a flood of
    /// made-up key ids can cost.
    pub refetch_cooldown: Duration,
    /// How long after a failed fetch no other is tried; it doubles with each failure in a row, up
    /// to [`LONGEST_FAILURE_BACKOFF`], so a failing key endpoint is not hit by every request.
    pub failure_backoff: Duration,
}

/// The longest a failing key endpoint is left alone between fetches.
pub const LONGEST_FAILURE_BACKOFF: Duration = Duration::from_secs(60);

/// The HS256 secret of service-to-service tokens, as read from its secret. Never printed.
#[derive(Clone)]
pub struct ServiceSecret(Vec<u8>);

impl ServiceSecret {
    pub const MIN_LEN: usize = 32;

    /// A service token for calling the service `audience`, and only it: HS256, `sub` = `subject`,
    /// `aud` = `audience`, valid for five minutes, with `iss` when the deployment names one.
    pub fn issue(&self, subject: &str, audience: &str, issuer: Option<&str>) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = serde_json::json!({
            "sub": subject, "aud": audience, "iat": now, "exp": now + 300,
        });
        if let Some(issuer) = issuer {
            claims["iss"] = serde_json::Value::from(issuer);
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&self.0),
        )
        .expect("HS256 signing cannot fail")
    }
}

impl FromStr for ServiceSecret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < Self::MIN_LEN {
            return Err(format!("must be at least {} bytes long", Self::MIN_LEN));
        }
        Ok(ServiceSecret(s.as_bytes().to_vec()))
    }
}

impl fmt::Debug for ServiceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceSecret(<redacted>)")
    }
}

/// Which tokens a service accepts.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    /// The secret whose value is the HS256 secret of service tokens (not the value itself).
    pub service_secret: Option<SecretArn>,
    pub service_issuer: Option<String>,
    /// The `aud` a service token must name: this service. Without one, no service token is
    /// accepted, so a token minted for one service never works on another.
    pub service_audience: Option<String>,
}

const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

impl AuthConfig {
    /// Reads `ACCESSORY_TOKEN_ISSUER`/`ACCESSORY_JWKS_URL`, `USER_TOKEN_ISSUER`/`USER_JWKS_URL`
    /// (each pair all or nothing, each with an optional `*_TOKEN_AUDIENCE`), and
    /// `SERVICE_TOKEN_SECRET_ARN` with an optional `SERVICE_TOKEN_ISSUER`. At least one must be set.
    /// Service tokens must name `service` (the service reading its configuration) as their `aud`.
    pub fn from_env(env: &Env, service: &str) -> Result<AuthConfig, ConfigError> {
        let mut issuers = Vec::new();
        for (kind, prefix) in [
            (IssuerKind::Accessory, "ACCESSORY"),
            (IssuerKind::User, "USER"),
        ] {
            let issuer_var = format!("{prefix}_TOKEN_ISSUER");
            let jwks_var = format!("{prefix}_JWKS_URL");
            match (env.optional(&issuer_var), env.optional(&jwks_var)) {
                (None, None) => {}
                (Some(issuer), Some(jwks_url)) => issuers.push(IssuerConfig {
                    kind,
                    issuer,
                    jwks_url,
                    audience: env.optional(&format!("{prefix}_TOKEN_AUDIENCE")),
                    refetch_cooldown: DEFAULT_REFETCH_COOLDOWN,
                    failure_backoff: DEFAULT_FAILURE_BACKOFF,
                }),
                (Some(_), None) => return Err(missing_pair(&jwks_var, &issuer_var)),
                (None, Some(_)) => return Err(missing_pair(&issuer_var, &jwks_var)),
            }
        }
        let config = AuthConfig {
            issuers,
            service_secret: env.optional_parsed("SERVICE_TOKEN_SECRET_ARN")?,
            service_issuer: env.optional("SERVICE_TOKEN_ISSUER"),
            service_audience: Some(service.to_owned()),
        };
        if config.issuers.is_empty() && config.service_secret.is_none() {
            return Err(ConfigError::Missing {
                name: "SERVICE_TOKEN_SECRET_ARN".into(),
                hint: "no token issuer is configured; set SERVICE_TOKEN_SECRET_ARN, or ACCESSORY_TOKEN_ISSUER \
                       with ACCESSORY_JWKS_URL, or USER_TOKEN_ISSUER with USER_JWKS_URL"
                    .into(),
            });
        }
        Ok(config)
    }
}

fn missing_pair(missing: &str, present: &str) -> ConfigError {
    ConfigError::Missing {
        name: missing.to_owned(),
        hint: format!("{present} is set, and the two go together"),
    }
}

/// Verifies tokens; built once per cold start and shared by every request.
#[derive(Debug)]
pub struct Verifier {
    issuers: Vec<JwksIssuer>,
    service_secret: Option<Secret<ServiceSecret>>,
    service_issuer: Option<String>,
    service_audience: Option<String>,
}

impl Verifier {
    /// Cheap: no key or secret is read until the first token that needs it arrives. The service
    /// secret is read from `secrets`, its previous version too, so that tokens signed before a
    /// rotation keep verifying.
    pub fn new(config: AuthConfig, secrets: &SecretStore) -> Verifier {
        let http = Arc::new(OnceCell::new());
        Verifier {
            issuers: config
                .issuers
                .into_iter()
                .map(|config| JwksIssuer {
                    config,
                    http: Arc::clone(&http),
                    keys: RwLock::default(),
                    refetch: Mutex::default(),
                })
                .collect(),
            service_secret: config
                .service_secret
                .map(|arn| secrets.secret_with_previous(arn)),
            service_issuer: config.service_issuer,
            service_audience: config.service_audience,
        }
    }

    /// Checks an `Authorization` header value (`Bearer `, in any case, optional) and says who
    /// sent it.
    pub async fn verify(&self, authorization: &str) -> Result<Principal, ApiError> {
        let token = authorization.trim();
        let token = match token.get(..7) {
            // RFC 7235: the scheme is case-insensitive.
            Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim(),
            _ => token,
        };
        if token.is_empty() {
            return Err(unauthorized("the Authorization header holds no token"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        match header.alg {
            Algorithm::RS256 => self.verify_issued(token, header.kid).await,
            Algorithm::HS256 => self.verify_service(token).await,
            other => Err(unauthorized(&format!(
                "tokens signed with {other:?} are not accepted"
            ))),
        }
    }

    async fn verify_issued(&self, token: &str, kid: Option<String>) -> Result<Principal, ApiError> {
        // The unverified `iss` only picks which issuer's keys to try; `decode` then checks it for real.
        let unverified: IssuerClaim = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| unauthorized("malformed token"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| Some(&issuer.config.issuer) == unverified.iss.as_ref())
            .ok_or_else(|| unauthorized("the token's issuer is not accepted"))?;
        let kid = kid.ok_or_else(|| unauthorized("the token names no signing key (kid)"))?;
        let key = issuer.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        match &issuer.config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(rejection)?
            .claims;

        // The contract accepts ID and access tokens; a refresh token, or one that says nothing of
        // its use, is neither. An ID token names its accessory in `cognito:username`, an access
        // token in `username`.
        let name = match claims.token_use.as_deref() {
            Some("id") => claims.cognito_username,
            Some("access") => claims.username,
            _ => {
                return Err(unauthorized(
                    "the token is neither an ID nor an access token",
                ));
            }
        };
        match issuer.config.kind {
            IssuerKind::Accessory => name
                .and_then(|name| name.parse().ok())
                .map(Principal::Accessory)
                .ok_or_else(|| unauthorized("the token names no accessory")),
            IssuerKind::User => claims
                .sub
                .as_deref()
                .map(|sub| sub.rsplit(':').next().unwrap_or(sub))
                .and_then(|sub| Uuid::parse_str(sub).ok())
                .map(Principal::User)
                .ok_or_else(|| unauthorized("the token's subject is not a user id")),
        }
    }

    async fn verify_service(&self, token: &str) -> Result<Principal, ApiError> {
        let (Some(secret), Some(audience)) = (&self.service_secret, &self.service_audience) else {
            return Err(unauthorized("service tokens are not accepted here"));
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        match &self.service_issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            }
            None => validation.set_required_spec_claims(&["exp", "aud"]),
        }
        let versions = secret.get().await?;
        let decode = |secret: &ServiceSecret| {
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&secret.0), &validation)
        };
        // During a rotation, a caller may still sign with the previous value for a few minutes.
        let decoded = match (decode(&versions.current), &versions.previous) {
            (Err(error), Some(previous))
                if matches!(
                    error.kind(),
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                ) =>
            {
                decode(previous)
            }
            (decoded, _) => decoded,
        };
        let claims = decoded.map_err(rejection)?.claims;
        Ok(Principal::Service {
            subject: claims.sub.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
struct IssuerClaim {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    token_use: Option<String>,
    #[serde(rename = "cognito:username")]
    cognito_username: Option<String>,
    username: Option<String>,
}

/// The key endpoint failed just now; the cause was logged when it did.
fn keys_unavailable() -> ApiError {
    ApiError::internal("the issuer's signing keys could not be fetched a moment ago")
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::Unauthorized(message.to_owned())
}

fn rejection(error: jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    if let ErrorKind::MissingRequiredClaim(claim) = error.kind() {
        // The one claim that is missing, by its name (a name the token chose cannot get here:
        // only the claims this module requires are checked for).
        return ApiError::Unauthorized(format!("the token lacks the required claim `{claim}`"));
    }
    unauthorized(match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token's audience is not accepted",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        _ => "the token is not valid",
    })
}

/// An RS256 issuer with its keys, fetched on first use and again when an unknown `kid` shows up.
struct JwksIssuer {
    config: IssuerConfig,
    http: Arc<OnceCell<reqwest::Client>>,
    keys: RwLock<KeyCache>,
    refetch: Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    /// The last fetch failed: when, and how long to leave the endpoint alone.
    failed: Option<(Instant, Duration)>,
}

impl KeyCache {
    /// True while a failed fetch's backoff lasts.
    fn backing_off(&self) -> bool {
        self.failed
            .is_some_and(|(at, backoff)| at.elapsed() < backoff)
    }
}

impl fmt::Debug for JwksIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksIssuer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JwksIssuer {
    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        {
            let cache = self.keys.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            // The endpoint failed a moment ago: answer now, without queueing for another try.
            if cache.backing_off() {
                return Err(keys_unavailable());
            }
        }
        // One fetch at a time; whoever waited re-checks what the previous fetch brought.
        let _refetch = self.refetch.lock().await;
        let (recently, failed) = {
            let cache = self.keys.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            if cache.backing_off() {
                return Err(keys_unavailable());
            }
            let recently = cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.config.refetch_cooldown);
            (recently, cache.failed)
        };
        if recently {
            return Err(unauthorized("the token is signed with an unknown key"));
        }
        let fetched = self.fetch().await;
        let mut cache = self.keys.write().await;
        match fetched {
            Ok(keys) => {
                *cache = KeyCache {
                    keys,
                    fetched_at: Some(Instant::now()),
                    failed: None,
                };
            }
            Err(error) => {
                let backoff = failed.map_or(self.config.failure_backoff, |(_, last)| {
                    (last * 2).min(LONGEST_FAILURE_BACKOFF)
                });
                cache.failed = Some((Instant::now(), backoff));
                return Err(error);
            }
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized("the token is signed with an unknown key"))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, ApiError> {
        let http = self
            .http
            .get_or_init(|| async { crate::tls::http_client(Duration::from_secs(5)) })
            .await;
        let url = &self.config.jwks_url;
        tracing::info!(%url, "fetching signing keys");
        let set: JwkSet = http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(ApiError::internal)?
            .json()
            .await
            .map_err(ApiError::internal)?;
        Ok(set
            .keys
            .iter()
            .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verifier = parts
            .extensions
            .get::<Arc<Verifier>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("no token verifier is installed on this router"))?;
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("this endpoint needs a token in the Authorization header"))?
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        verifier.verify(header).await
    }
}
