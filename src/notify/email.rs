//! Email alerts over SMTP (lettre, tokio, rustls): plain, STARTTLS (required) or implicit
//! TLS, optional authentication, a multipart/alternative message (text + HTML), and a
//! timeout on the whole send. Server certificates are verified against webpki-roots plus
//! the optional `ca_file` (extra PEM roots, e.g. a private CA). Errors are scrubbed of the
//! recipient, username and password.
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notifier, NotifyError, SmtpConfig, SmtpTls, scrub};
use crate::notify::outbox::OutboxRow;

/// Sends `email` outbox rows through one SMTP server.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    /// Scrubbed from every error text.
    secrets: Vec<String>,
}

impl EmailNotifier {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, NotifyError> {
        let from: Mailbox = cfg.from.parse().map_err(|_| {
            NotifyError::Config(format!("smtp.from {:?} is not an email address", cfg.from))
        })?;
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let mut builder = TlsParameters::builder(cfg.host.clone());
                if let Some(path) = &cfg.ca_file {
                    builder = builder.add_root_certificate(load_ca_file(path)?);
                }
                let params = builder.build().map_err(|e| {
                    let what = if cfg.ca_file.is_some() {
                        " (alerts.smtp.ca_file)"
                    } else {
                        ""
                    };
                    NotifyError::Config(format!("smtp TLS for {}{what}: {e}", cfg.host))
                })?;
                if cfg.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.effective_port())
            .tls(tls)
            .timeout(Some(cfg.timeout));
        let mut secrets = Vec::new();
        if let Some(user) = &cfg.username {
            let password = cfg.password.clone().unwrap_or_default();
            secrets.push(user.clone());
            secrets.push(password.clone());
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        secrets.retain(|s| !s.is_empty());
        Ok(EmailNotifier {
            transport: builder.build(),
            from,
            timeout: cfg.timeout,
            secrets,
        })
    }

    fn scrubbed(&self, text: &str, target: &str) -> String {
        let mut secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        secrets.push(target);
        scrub(text, &secrets)
    }
}

/// The root certificates in the PEM file `path` (`alerts.smtp.ca_file`).
fn load_ca_file(path: &Path) -> Result<Certificate, NotifyError> {
    let err =
        |d: String| NotifyError::Config(format!("alerts.smtp.ca_file {}: {d}", path.display()));
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    // lettre accepts a PEM without any certificate (and ignores other blocks): refuse it.
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(err(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into(),
        ));
    }
    Certificate::from_pem(&pem).map_err(|e| err(format!("not a valid PEM certificate: {e}")))
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn channel(&self) -> &'static str {
        "email"
    }

    async fn send(&self, msg: &OutboxRow) -> Result<(), NotifyError> {
        let to: Mailbox = msg
            .target
            .parse()
            .map_err(|_| NotifyError::Invalid("the recipient is not an email address".into()))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                msg.body_text.clone(),
                msg.body_html.clone(),
            ))
            .map_err(|e| NotifyError::Invalid(self.scrubbed(&e.to_string(), &msg.target)))?;
        // lettre's own timeout applies per command; this bounds the whole exchange.
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Err(_) => Err(NotifyError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(NotifyError::Smtp(
                self.scrubbed(&e.to_string(), &msg.target),
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str) -> OutboxRow {
        let now = chrono::Utc::now();
        OutboxRow {
            id: 1,
            budget: "b".into(),
            period_key: "p".into(),
            threshold_key: "t".into(),
            channel: "email".into(),
            target: target.into(),
            subject: "s".into(),
            body_text: "t".into(),
            body_html: "<p>h</p>".into(),
            slack_payload: String::new(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_without_secrets() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            username: Some("alerts-user".into()),
            password: Some("s3cret-pa55word".into()),
            from: "bursar@example.com".into(),
            timeout: Duration::from_secs(5),
            ca_file: None,
        };
        let n = EmailNotifier::new(&cfg).unwrap();
        let e = n.send(&row("cfo@example.com")).await.unwrap_err();
        let s = format!("{e} {e:?}");
        assert!(
            !s.contains("s3cret") && !s.contains("cfo@example.com"),
            "{s}"
        );
        let e = n.send(&row("not an address")).await.unwrap_err();
        assert!(matches!(e, NotifyError::Invalid(_)));
    }

    #[test]
    fn tls_modes_build() {
        for tls in [SmtpTls::None, SmtpTls::Starttls, SmtpTls::Tls] {
            let cfg = SmtpConfig {
                host: "smtp.example.com".into(),
                tls,
                ..SmtpConfig::default()
            };
            EmailNotifier::new(&cfg).unwrap();
        }
    }
}
