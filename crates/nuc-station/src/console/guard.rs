//! The console's front door: which requests may reach the agent at all, judged on the `Host`,
//! `Origin` and `Sec-Fetch-Site` headers before any handler runs.
//!
//! It owns one rule: only the agent's own page, loaded from the agent's own origin, may drive
//! the agent. It must never let a request through on the strength of a cookie or of the
//! network alone (any page in the browser can make the browser reach 127.0.0.1), and never
//! answer a CORS preflight positively: no `Access-Control-Allow-*` header is ever sent.

use axum::http::Method;

/// The agent's own origin, e.g. `http://127.0.0.1:8480`, and its authority (`127.0.0.1:8480`).
#[derive(Debug, Clone)]
pub struct Own {
    pub origin: String,
    pub authority: String,
}

impl Own {
    pub fn new(addr: std::net::SocketAddr) -> Own {
        let authority = addr.to_string();
        Own {
            origin: format!("http://{authority}"),
            authority,
        }
    }
}

/// Why a request was turned away (403), with the reason code the page and the docs use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `Host` is not the agent's address: a DNS-rebinding page, or the console opened under
    /// another name (e.g. `localhost`).
    #[error("WRONG_HOST: the console answers only at {expected}, not at host {got:?}")]
    WrongHost { expected: String, got: String },
    /// `Origin` names another page.
    #[error(
        "FOREIGN_ORIGIN: requests are accepted only from the console's own page {expected}, not from {got:?}"
    )]
    ForeignOrigin { expected: String, got: String },
    /// A request that may change something came without an `Origin` at all.
    #[error("ORIGIN_REQUIRED: a {method} request must carry the Origin of the console's page")]
    OriginRequired { method: String },
    /// The browser says the request comes from another site (`Sec-Fetch-Site`).
    #[error("FOREIGN_ORIGIN: the browser reports this request as {site:?}, not same-origin")]
    CrossSite { site: String },
}

impl Refusal {
    /// The reason code (the part of the message before the colon).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::WrongHost { .. } => "WRONG_HOST",
            Refusal::ForeignOrigin { .. } | Refusal::CrossSite { .. } => "FOREIGN_ORIGIN",
            Refusal::OriginRequired { .. } => "ORIGIN_REQUIRED",
        }
    }
}

/// Judges one request. `api`: the path is under `/api/` (the agent's actions and its live
/// channel), as opposed to the page's own static files.
pub fn judge(
    own: &Own,
    method: &Method,
    api: bool,
    host: Option<&str>,
    origin: Option<&str>,
    fetch_site: Option<&str>,
) -> Result<(), Refusal> {
    // Host first: a rebinding page has the right Origin for *its* name, and a wrong Host.
    let host = host.unwrap_or("");
    if !host.eq_ignore_ascii_case(&own.authority) {
        return Err(Refusal::WrongHost {
            expected: own.authority.clone(),
            got: host.to_owned(),
        });
    }
    match origin {
        // Exact match only: no prefix, no scheme or port variation, and `null` (sandboxed
        // frames, file: pages) is another origin.
        Some(o) if o == own.origin => Ok(()),
        Some(o) => Err(Refusal::ForeignOrigin {
            expected: own.origin.clone(),
            got: o.to_owned(),
        }),
        None => {
            // Browsers send Origin on every POST (and on every cross-origin request); only
            // same-origin GETs and navigations go without it.
            if method != Method::GET && method != Method::HEAD {
                return Err(Refusal::OriginRequired {
                    method: method.to_string(),
                });
            }
            match fetch_site {
                None | Some("same-origin") => Ok(()),
                // A typed address or a bookmark opens the page, never an API call.
                Some("none") if !api => Ok(()),
                Some(site) => Err(Refusal::CrossSite {
                    site: site.to_owned(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Own {
        Own::new("127.0.0.1:8480".parse().unwrap())
    }

    #[test]
    fn only_the_own_origin_and_host_pass() {
        let o = own();
        let host = Some("127.0.0.1:8480");
        let me = Some("http://127.0.0.1:8480");
        assert_eq!(judge(&o, &Method::POST, true, host, me, None), Ok(()));
        for bad in [
            "http://127.0.0.1:8481",
            "https://127.0.0.1:8480",
            "http://localhost:8480",
            "http://127.0.0.1:8480.evil.example",
            "null",
            "http://evil.example",
        ] {
            let r = judge(&o, &Method::POST, true, host, Some(bad), None).unwrap_err();
            assert_eq!(r.code(), "FOREIGN_ORIGIN", "{bad}");
        }
        let r = judge(&o, &Method::GET, true, Some("evil.example:8480"), me, None).unwrap_err();
        assert_eq!(r.code(), "WRONG_HOST");
        let r = judge(&o, &Method::GET, false, None, None, None).unwrap_err();
        assert_eq!(r.code(), "WRONG_HOST");
    }

    #[test]
    fn without_origin_only_same_origin_reads_pass() {
        let o = own();
        let host = Some("127.0.0.1:8480");
        let r = judge(&o, &Method::POST, true, host, None, None).unwrap_err();
        assert_eq!(r.code(), "ORIGIN_REQUIRED");
        assert_eq!(
            judge(&o, &Method::GET, true, host, None, Some("same-origin")),
            Ok(())
        );
        assert_eq!(
            judge(&o, &Method::GET, false, host, None, Some("none")),
            Ok(())
        );
        let r = judge(&o, &Method::GET, true, host, None, Some("none")).unwrap_err();
        assert_eq!(r.code(), "FOREIGN_ORIGIN");
        for site in ["cross-site", "same-site"] {
            let r = judge(&o, &Method::GET, false, host, None, Some(site)).unwrap_err();
            assert_eq!(r.code(), "FOREIGN_ORIGIN", "{site}");
        }
    }
}
