//! `vaarta invites`: invitations from devices that are not contacts yet (held by the node
//! until accepted or declined), and the line `up` prints when one arrives.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;
use vaarta_node::Home;
use vaarta_node::api::Request;

use crate::{Conn, emit, emit_all, print_json};

#[derive(Subcommand, Debug)]
pub enum InvitesCommand {
    /// Accept an invitation (its id, or a unique prefix) and join its conversation; or,
    /// given a device id, accept that device: its invitations are taken from now on
    Accept {
        /// Invitation id (from `vaarta invites`) or a device id
        id: String,
    },
    /// Decline an invitation (it is not fetched again)
    Decline {
        /// Invitation id (from `vaarta invites`)
        id: String,
    },
}

/// The line for an invitation (`up` and `vaarta invites`).
pub fn line(id: &str, inviter: &str) -> String {
    format!("invitation {id} from device {inviter}: `vaarta invites accept {id}` to join")
}

pub fn run(home: &Home, c: Option<InvitesCommand>, json: bool) -> Result<()> {
    let conn = Conn::open(home)?;
    let r = match c {
        None => conn.request(Request::Invitations)?,
        Some(InvitesCommand::Accept { id }) => conn.request(Request::AcceptInvitation { id })?,
        Some(InvitesCommand::Decline { id }) => conn.request(Request::DeclineInvitation { id })?,
    };
    if json {
        return print_json(&r);
    }
    match &r {
        Value::Array(list) if list.is_empty() => emit("no invitations waiting"),
        Value::Array(list) => emit_all(
            &list
                .iter()
                .map(|i| {
                    line(
                        i["id"].as_str().unwrap_or(""),
                        i["inviter"].as_str().unwrap_or(""),
                    )
                })
                .collect::<Vec<_>>(),
        ),
        v if v["conversation"].is_string() => emit(&format!(
            "declined {}",
            v["conversation"].as_str().unwrap_or("")
        )),
        v => {
            let convs: Vec<&str> = v["conversations"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            if let Some(d) = v["device"].as_str() {
                emit(&format!("accepted device {d}"))?;
            }
            emit_all(
                &convs
                    .iter()
                    .map(|c| format!("joined {c}"))
                    .collect::<Vec<_>>(),
            )
        }
    }
}

/// Prints a line for each invitation the running node holds, now and as they arrive.
///
/// It subscribes to the node's events before it lists the held invitations, so one that
/// arrives in between is printed (once: an event for an invitation already listed is not
/// printed again).
pub async fn announce(node: &vaarta_node::Node) {
    let mut rx = node.events.subscribe();
    let mut listed = std::collections::HashSet::new();
    if let Ok(Value::Array(list)) = node.call(Request::Invitations).await {
        if !list.is_empty() {
            let _ = emit(&format!(
                "{} invitation(s) from devices you have not accepted are waiting:",
                list.len()
            ));
        }
        for i in list {
            let id = i["id"].as_str().unwrap_or("").to_string();
            let _ = emit(&line(&id, i["inviter"].as_str().unwrap_or("")));
            listed.insert(id);
        }
    }
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let e = match rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            if let Ok(v) = serde_json::from_str::<Value>(&e)
                && v["type"] == "invitation"
            {
                let id = v["conversation"].as_str().unwrap_or("");
                if listed.remove(id) {
                    continue;
                }
                let _ = emit(&line(id, v["inviter"].as_str().unwrap_or("")));
            }
        }
    });
}
