//! Credentials, sent in a header and never in a URL, and connect tickets.

use std::fmt;

use crate::error::{read_bounded, Error};

/// The most bytes of a `POST /tickets` reply that are read (it is about 100).
const MAX_TICKET_REPLY: usize = 4 * 1024;

/// A credential the app holds: a JWT sent as `Authorization: Bearer`, or an API key sent as
/// `X-API-Key`. Its `Debug` output hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A JWT (or an API key) sent as `Authorization: Bearer <token>`.
    Bearer(String),
    /// An API key sent as `X-API-Key: <key>`.
    ApiKey(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(..)"),
            Credential::ApiKey(_) => f.write_str("ApiKey(..)"),
        }
    }
}

impl Credential {
    /// Adds the credential's header to `request`.
    pub(crate) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credential::Bearer(token) => request.bearer_auth(token),
            Credential::ApiKey(key) => request.header("x-api-key", key),
        }
    }
}

/// Trades `credential` for a single-use connect ticket: `POST url` with the credential in a
/// header, answered `201 {"ticket": "...", "expires_in": 30}`.
pub(crate) async fn fetch_ticket(
    http: &reqwest::Client,
    url: &reqwest::Url,
    credential: &Credential,
) -> Result<String, Error> {
    let endpoint = url.path();
    let response = credential
        .apply(http.post(url.clone()))
        .send()
        .await
        .map_err(|e| Error::network(endpoint, e))?;
    if !response.status().is_success() {
        return Err(Error::from_response(endpoint, response).await);
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        ticket: String,
    }
    let body = read_bounded(response, MAX_TICKET_REPLY).await;
    match serde_json::from_slice::<Reply>(&body) {
        Ok(Reply { ticket }) if !ticket.is_empty() => Ok(ticket),
        _ => Err(Error::BadTicketReply {
            endpoint: endpoint.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!(
            "{:?}",
            [
                Credential::Bearer("t0ken".into()),
                Credential::ApiKey("k3y".into())
            ]
        );
        assert_eq!(shown, "[Bearer(..), ApiKey(..)]");
    }
}
