//! Sending webhook deliveries over HTTP: signed like Stripe and GitHub
//! (`opsrun-signature: t=UNIX_SECONDS,v1=HEX(HMAC_SHA256(secret, "t.body"))`), with a
//! timeout, no redirects, a bounded read of the answer, and (unless the installation allows
//! it) no connection to a loopback, private or link-local address: names are resolved by a
//! resolver that drops such addresses, so a name cannot be pointed at the server's own
//! network after it was registered (SSRF, DNS rebinding).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use opsrun_application::ports::DueDelivery;
use opsrun_application::webhooks::{AttemptResult, WebhookPolicy};
use opsrun_domain::{Timestamp, is_public_address};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Most bytes of an answer read (only its status matters; the rest is for the log).
const MAX_ANSWER: usize = 1_024;

/// The signature header's value for `body` sent at `unix_seconds` with `secret`.
///
/// ```
/// let header = opsrun_adapters::webhooks::signature("whsec_k", 1_700_000_000, b"{}");
/// assert!(header.starts_with("t=1700000000,v1="));
/// assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
/// ```
#[must_use]
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_seconds},v1={hex}")
}

/// Resolves names and keeps only public addresses.
#[derive(Debug)]
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public_address(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses, which this server does not call"
                )
                .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends deliveries.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: WebhookPolicy,
    timeout: Duration,
}

impl WebhookSender {
    /// A sender with `timeout` per attempt, under the installation's `policy`.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(policy: WebhookPolicy, timeout: Duration) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment (HTTPS_PROXY) would resolve the target itself and
            // bypass the address check: deliveries always connect directly.
            .no_proxy()
            .user_agent(concat!("opsrun-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(2);
        if !policy.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            client: builder.build()?,
            policy,
            timeout,
        })
    }

    /// The longest an attempt takes.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `body` for `due`, signed at `at`; never fails: how it went is the answer.
    pub async fn send(&self, due: &DueDelivery, body: Vec<u8>, at: Timestamp) -> AttemptResult {
        let started = Instant::now();
        let done = |status: Option<u16>, error: Option<String>| AttemptResult {
            at,
            status,
            latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            error,
        };
        // The registered URL is checked again: the policy may have changed since.
        if let Err(refused) =
            opsrun_application::webhooks::check_url(&due.endpoint.url, self.policy)
        {
            return done(None, Some(refused.to_string()));
        }
        if let Some(ip) = literal_host(&due.endpoint.url)
            && !self.policy.allow_private
            && !is_public_address(ip)
        {
            return done(None, Some(format!("{ip} is not a public address")));
        }
        let delivery = &due.delivery;
        let unix = at.as_millis().div_euclid(1_000);
        let request = self
            .client
            .post(&due.endpoint.url)
            .header("content-type", "application/json")
            .header("opsrun-signature", signature(&due.secret, unix, &body))
            .header("opsrun-event-id", &delivery.event_id)
            .header("opsrun-event-type", delivery.event.key())
            .header("opsrun-delivery-id", delivery.id.to_string())
            .body(body);
        match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if response.status().is_success() {
                    return done(Some(status), None);
                }
                let mut answer = Vec::new();
                while answer.len() < MAX_ANSWER {
                    match response.chunk().await {
                        Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                answer.truncate(MAX_ANSWER);
                let text = String::from_utf8_lossy(&answer).trim().to_owned();
                let error = if status / 100 == 3 {
                    format!("the endpoint answered {status} (redirects are not followed)")
                } else if text.is_empty() {
                    format!("the endpoint answered {status}")
                } else {
                    format!("the endpoint answered {status}: {text}")
                };
                done(Some(status), Some(error))
            }
            Err(error) => {
                let reason = if error.is_timeout() {
                    "timed out".to_owned()
                } else {
                    // The resolver's refusal is the innermost cause.
                    let mut source: &dyn std::error::Error = &error;
                    while let Some(inner) = source.source() {
                        source = inner;
                    }
                    format!("could not connect: {source}")
                };
                done(None, Some(reason))
            }
        }
    }
}

fn literal_host(url: &str) -> Option<IpAddr> {
    match url::Url::parse(url).ok()?.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}
