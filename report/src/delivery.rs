//! One attempt to deliver a signed report to the router's `POST /v1/reports`, with the answer
//! sorted into what the sender should do next. Resending is always safe: the router recognises
//! an identical report and answers `already_recorded`.

use crate::report::Report;

/// What the router's answer to one attempt means for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The report is in the router's books (`accepted` or `already_recorded`): drop it from the
    /// queue.
    Acknowledged(String),
    /// No answer, or 408, 429 or 503: try the same report again later.
    Retry(String),
    /// Refused for good (bad signature, period, capacity...): resending it cannot help.
    Refused(String),
}

/// The reports endpoint under a router's base URL (`http://host:port`).
pub fn endpoint(url: &str) -> String {
    format!("{}/v1/reports", url.trim_end_matches('/'))
}

/// Posts one signed report once and classifies the answer.
pub fn post_once(agent: &ureq::Agent, url: &str, report: &Report) -> Delivery {
    let body = match serde_json::to_string(report) {
        Ok(b) => b,
        Err(e) => return Delivery::Refused(format!("cannot encode the report: {e}")),
    };
    let json = |resp: ureq::Response| -> serde_json::Value {
        resp.into_string()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    match agent
        .post(&endpoint(url))
        .set("Content-Type", "application/json")
        .send_string(&body)
    {
        Ok(resp) => {
            let v = json(resp);
            Delivery::Acknowledged(v["status"].as_str().unwrap_or("accepted").to_owned())
        }
        Err(ureq::Error::Status(code, resp)) => {
            let v = json(resp);
            let reason = v["reason"].as_str().unwrap_or("?").to_owned();
            // The report is in the books (whoever delivered it first): that is success,
            // whatever status a daemon answers it with.
            if reason == "already_recorded" || v["status"] == "already_recorded" {
                return Delivery::Acknowledged("already_recorded".to_owned());
            }
            let message = v["message"].as_str().unwrap_or("");
            let text = format!("{code} {reason}: {message}");
            if matches!(code, 408 | 429 | 503) {
                Delivery::Retry(text)
            } else {
                Delivery::Refused(text)
            }
        }
        Err(e) => Delivery::Retry(e.to_string()),
    }
}
