//! A small blocking client of the local API (used by the CLI and by tests).

use std::time::Duration;

use serde_json::Value;

use crate::ApiError;
use crate::api::Request;

/// Every byte but the unreserved ones (RFC 3986: letters, digits, `-._~`) is encoded, so an
/// id holding `/`, `?`, `#`, `%` or a space stays one path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment of an API URL.
/// `.` and `..` (which a URL resolver would treat as "here" and "up") are encoded too.
pub fn segment(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b == b'.') {
        return "%2E".repeat(s.len());
    }
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(addr: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: format!("http://{addr}"),
            token: token.to_string(),
            agent,
        }
    }

    /// POSTs `body` to `path` with no overall timeout (exports and bundles of any size).
    fn post_untimed(&self, path: &str, body: &impl serde::Serialize) -> Result<Value, ApiError> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .config()
            .timeout_global(None)
            .build()
            .send_json(serde_json::to_value(body).unwrap_or(Value::Null));
        self.finish(r)
    }

    fn finish(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ApiError> {
        let mut r = r.map_err(|e| ApiError {
            status: 503,
            message: format!("cannot reach the node's API at {}: {e}", self.base),
        })?;
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(ApiError {
                status,
                message: v
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("request failed")
                    .to_string(),
            })
        }
    }

    fn get(&self, path: &str) -> Result<Value, ApiError> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.finish(r)
    }

    fn send_json(&self, method: &str, path: &str, body: Value) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let r = match method {
            "POST" => self
                .agent
                .post(url)
                .header("Authorization", auth)
                .send_json(body),
            "PATCH" => self
                .agent
                .patch(url)
                .header("Authorization", auth)
                .send_json(body),
            "PUT" => self
                .agent
                .put(url)
                .header("Authorization", auth)
                .send_json(body),
            _ => self.agent.delete(url).header("Authorization", auth).call(),
        };
        self.finish(r)
    }

    /// Runs a request over HTTP (each request maps to one endpoint of docs/api.md).
    pub fn request(&self, req: Request) -> Result<Value, ApiError> {
        use serde_json::json;
        let enc = |s: &str| segment(s);
        let message_path = |conv: &str, msg: &str, what: &str| {
            format!(
                "/v1/conversations/{}/messages/{}/{what}",
                segment(conv),
                segment(msg)
            )
        };
        if let Request::Conversation { conversation }
        | Request::Rename { conversation, .. }
        | Request::AddMember { conversation, .. }
        | Request::RemoveMember { conversation, .. }
        | Request::Messages { conversation, .. }
        | Request::Send { conversation, .. }
        | Request::Edit { conversation, .. }
        | Request::Delete { conversation, .. }
        | Request::React { conversation, .. }
        | Request::Ack { conversation, .. }
        | Request::Read { conversation, .. }
        | Request::Rollcall { conversation, .. }
        | Request::Realert { conversation, .. }
        | Request::ReadReceipts { conversation, .. } = &req
            && conversation.trim().is_empty()
        {
            return Err(ApiError::bad(crate::api::EMPTY_CONVERSATION));
        }
        if let Request::AcceptInvitation { id } | Request::DeclineInvitation { id } = &req
            && id.trim().is_empty()
        {
            return Err(ApiError::bad("give the invitation's id (`vaarta invites`)"));
        }
        match req {
            Request::Status => self.get("/v1/status"),
            Request::Peers => self.get("/v1/peers"),
            Request::Conversations => self.get("/v1/conversations"),
            Request::Conversation { conversation } => {
                self.get(&format!("/v1/conversations/{}", enc(&conversation)))
            }
            Request::Rename {
                conversation,
                title,
            } => self.send_json(
                "PATCH",
                &format!("/v1/conversations/{}", enc(&conversation)),
                json!({"title": title}),
            ),
            Request::CreateConversation {
                title,
                members,
                history_from_join,
            } => self.send_json(
                "POST",
                "/v1/conversations",
                json!({"title": title, "members": members, "history_from_join": history_from_join}),
            ),
            Request::AddMember {
                conversation,
                device,
                admin,
            } => self.send_json(
                "POST",
                &format!("/v1/conversations/{}/members", enc(&conversation)),
                json!({"device": device, "admin": admin}),
            ),
            Request::RemoveMember {
                conversation,
                device,
            } => self.send_json(
                "DELETE",
                &format!(
                    "/v1/conversations/{}/members/{}",
                    enc(&conversation),
                    enc(&device)
                ),
                Value::Null,
            ),
            Request::Messages {
                conversation,
                limit,
                from_page,
                before,
            } => self.get(&format!(
                "/v1/conversations/{}/messages?limit={limit}{}{}",
                enc(&conversation),
                from_page
                    .map(|p| format!("&from_page={p}"))
                    .unwrap_or_default(),
                before
                    .map(|b| format!("&before={}", enc(&b)))
                    .unwrap_or_default()
            )),
            Request::Send {
                conversation,
                messages,
            } => self.send_json(
                "POST",
                &format!("/v1/conversations/{}/messages", enc(&conversation)),
                json!({"messages": messages}),
            ),
            Request::Edit {
                conversation,
                message,
                body,
            } => self.send_json(
                "PATCH",
                &format!(
                    "/v1/conversations/{}/messages/{}",
                    enc(&conversation),
                    enc(&message)
                ),
                json!({"body": body}),
            ),
            Request::Delete {
                conversation,
                message,
            } => self.send_json(
                "DELETE",
                &format!(
                    "/v1/conversations/{}/messages/{}",
                    enc(&conversation),
                    enc(&message)
                ),
                Value::Null,
            ),
            Request::React {
                conversation,
                message,
                emoji,
            } => self.send_json(
                "POST",
                &format!(
                    "/v1/conversations/{}/messages/{}/reaction",
                    enc(&conversation),
                    enc(&message)
                ),
                json!({"emoji": emoji}),
            ),
            Request::Ack {
                conversation,
                message,
            } => self.send_json(
                "POST",
                &message_path(&conversation, &message, "ack"),
                Value::Null,
            ),
            Request::Read {
                conversation,
                message,
            } => self.send_json(
                "POST",
                &message_path(&conversation, &message, "read"),
                Value::Null,
            ),
            Request::Rollcall {
                conversation,
                message,
            } => self.get(&message_path(&conversation, &message, "rollcall")),
            Request::Realert {
                conversation,
                message,
            } => self.send_json(
                "POST",
                &message_path(&conversation, &message, "realert"),
                Value::Null,
            ),
            Request::ReadReceipts { conversation, on } => self.send_json(
                "PUT",
                &format!("/v1/conversations/{}/read-receipts", enc(&conversation)),
                json!({"on": on}),
            ),
            Request::Invitations => self.get("/v1/invitations"),
            Request::Directory { query } => self.get(&format!("/v1/directory?q={}", enc(&query))),
            Request::Roles => self.get("/v1/roles"),
            Request::DirectoryAdd { records } => {
                self.send_json("POST", "/v1/directory", json!({"records": records}))
            }
            Request::SendToRole { role, messages } => self.send_json(
                "POST",
                "/v1/roles/messages",
                json!({"role": role, "messages": messages}),
            ),
            Request::AcceptInvitation { id } => self.send_json(
                "POST",
                &format!("/v1/invitations/{}/accept", enc(&id)),
                Value::Null,
            ),
            Request::DeclineInvitation { id } => self.send_json(
                "POST",
                &format!("/v1/invitations/{}/decline", enc(&id)),
                Value::Null,
            ),
            // A large bundle takes longer than the usual timeout.
            Request::BundleExport(args) => self.post_untimed("/v1/bundles/export", &args),
            Request::Export(args) => {
                if args.conversation.trim().is_empty() {
                    return Err(ApiError::bad(crate::api::EMPTY_CONVERSATION));
                }
                // A long conversation takes longer than the usual timeout.
                self.post_untimed("/v1/export", &args)
            }
            Request::BundleRecords { .. } => Err(ApiError::bad(
                "bundle records are taken through POST /v1/bundles/import",
            )),
        }
    }

    /// `POST /v1/bundles/import`: the node imports the bundle at `path` (absolute); each
    /// progress line goes to `progress`; the answer is the final report.
    pub fn import_bundle(
        &self,
        path: &str,
        progress: &mut dyn FnMut(&Value),
    ) -> Result<Value, ApiError> {
        use std::io::BufRead;
        let r = self
            .agent
            .post(format!("{}/v1/bundles/import", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .config()
            .timeout_global(None)
            .build()
            .send_json(serde_json::json!({"path": path}));
        let r = r.map_err(|e| ApiError {
            status: 503,
            message: format!("cannot reach the node's API at {}: {e}", self.base),
        })?;
        if r.status().as_u16() != 200 {
            return self.finish(Ok(r));
        }
        let reader = std::io::BufReader::new(r.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| ApiError::internal(format!("the node's answer: {e}")))?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(d) = v.get("done") {
                return Ok(d.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(ApiError {
                    status: v.get("status").and_then(Value::as_u64).unwrap_or(500) as u16,
                    message: e.as_str().unwrap_or("import failed").to_string(),
                });
            }
            if let Some(p) = v.get("progress") {
                progress(p);
            }
        }
        Err(ApiError::internal(
            "the node ended the import without a report (it may have stopped): run it again",
        ))
    }

    /// A one-time sign-in link for the web app (`POST /v1/login-codes`, docs/web.md):
    /// `{code, url, expires_in_ms}`.
    pub fn login_code(&self) -> Result<Value, ApiError> {
        self.send_json("POST", "/v1/login-codes", Value::Null)
    }

    /// Opens the event stream (server-sent events): one JSON object per `data:` line, until
    /// the connection ends (the node stopped). The node has subscribed this reader when it
    /// returns. The iterator owns the connection, so a thread can read it.
    pub fn events(&self) -> Result<impl Iterator<Item = Value> + Send + use<>, ApiError> {
        use std::io::BufRead;
        let r = self
            .agent
            .get(format!("{}/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .config()
            .timeout_global(None)
            .build()
            .call()
            .map_err(|e| ApiError {
                status: 503,
                message: format!("cannot reach the node: {e}"),
            })?;
        if r.status().as_u16() != 200 {
            return Err(ApiError {
                status: r.status().as_u16(),
                message: "event stream refused".into(),
            });
        }
        let reader = std::io::BufReader::new(r.into_body().into_reader());
        Ok(reader
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()))
            .filter_map(|d| serde_json::from_str(&d).ok()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(super::segment("abc"), "abc");
        assert_eq!(super::segment("12.ab-c_~"), "12.ab-c_~");
        assert_eq!(super::segment("a/b?c d#%"), "a%2Fb%3Fc%20d%23%25");
        assert_eq!(super::segment(".."), "%2E%2E");
        assert_eq!(super::segment(""), "");
        assert_eq!(super::segment("नाव"), "%E0%A4%A8%E0%A4%BE%E0%A4%B5");
    }
}
