//! `vaarta demo`: three real nodes (full engine, sled, libp2p over TCP on loopback) in
//! temporary homes, showing discovery, an encrypted conversation in English and Hindi, one
//! device going away and catching up when it returns.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use vaarta_node::api::OutgoingMessage;
use vaarta_node::{Home, Node, Options, Request};

struct Clock(Instant);

impl Clock {
    fn say(&self, msg: impl AsRef<str>) {
        println!(
            "[{:>6.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }
}

fn opts(peers: &[String]) -> Result<Options> {
    Ok(Options {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        peers: peers.iter().map(|p| p.parse()).collect::<Result<_, _>>()?,
        // mDNS does not run on loopback interfaces; `vaarta up` on a LAN uses it.
        mdns: false,
        publish_api: false,
        ..Options::default()
    })
}

async fn wait_for<F>(what: &str, timeout: Duration, mut check: F) -> Result<Duration>
where
    F: AsyncFnMut() -> bool,
{
    let t = Instant::now();
    while t.elapsed() < timeout {
        if check().await {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

async fn bodies(n: &Node, conv: &str) -> Vec<String> {
    match n
        .call(Request::Messages {
            conversation: conv.into(),
            limit: 100,
            from_page: None,
            before: None,
        })
        .await
    {
        Ok(Value::Array(a)) => a
            .iter()
            .map(|m| m["body"].as_str().unwrap_or("").to_string())
            .collect(),
        _ => Vec::new(),
    }
}

async fn send(n: &Node, conv: &str, body: &str, precedence: &str) -> Result<()> {
    n.call(Request::Send {
        conversation: conv.into(),
        messages: vec![OutgoingMessage {
            body: body.into(),
            precedence: Some(precedence.into()),
            expires_in_ms: None,
            removed_expires_in_s: None,
            reply_to: None,
        }],
    })
    .await
    .map_err(|e| anyhow!(e.message))?;
    Ok(())
}

async fn links(n: &Node) -> usize {
    n.call(Request::Peers)
        .await
        .ok()
        .and_then(|p| {
            p["connected"]
                .as_array()
                .map(|a| a.iter().filter(|l| l["ready"] == true).count())
        })
        .unwrap_or(0)
}

pub fn run(keep: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    rt.block_on(demo(keep))
}

async fn demo(keep: bool) -> Result<()> {
    let clock = Clock(Instant::now());
    let root = tempfile::Builder::new().prefix("vaarta-demo-").tempdir()?;
    println!("Vaarta demo: three field devices on this machine, talking over TCP on 127.0.0.1.");
    println!(
        "No server: each node is a full peer with its own keys, database and encrypted links.\n"
    );
    let names = ["Asha", "Bhavesh", "Chitra"];
    let homes: Vec<Home> = names
        .iter()
        .map(|n| Home::new(root.path().join(n.to_lowercase())))
        .collect();
    for (h, n) in homes.iter().zip(names) {
        h.init(n).map_err(|e| anyhow!("{e}"))?;
    }
    let a = Node::start(&homes[0], opts(&[])?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let a_addr = a.listen[0].to_string();
    let b = Node::start(&homes[1], opts(std::slice::from_ref(&a_addr))?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let b_addr = b.listen[0].to_string();
    let c_peers = vec![a_addr.clone(), b_addr.clone()];
    let c = Node::start(&homes[2], opts(&c_peers)?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    clock.say(format!(
        "started {} ({}), {} ({}), {} ({}) in {}",
        names[0],
        a.listen[0],
        names[1],
        b.listen[0],
        names[2],
        c.listen[0],
        root.path().display()
    ));
    let t = wait_for("links", Duration::from_secs(20), async || {
        links(&a).await >= 2 && links(&b).await >= 2 && links(&c).await >= 2
    })
    .await?;
    clock.say(format!(
        "all three linked (Noise-encrypted, device keys proven) in {} ms",
        t.as_millis()
    ));

    let (bd, cd) = (b.device_id.clone(), c.device_id.clone());
    // Bhavesh and Chitra know Asha: they accept her device, so her invitation is taken at
    // once (a stranger's would wait in `vaarta invites`).
    for n in [&b, &c] {
        n.call(Request::AcceptInvitation {
            id: a.device_id.clone(),
        })
        .await
        .map_err(|e| anyhow!(e.message))?;
    }
    let created = a
        .call(Request::CreateConversation {
            title: "Flood relief – Darbhanga".into(),
            members: vec![bd, cd],
            history_from_join: false,
        })
        .await
        .map_err(|e| anyhow!(e.message))?;
    let conv = created["id"].as_str().unwrap_or("").to_string();
    clock.say(format!(
        "Asha created \"Flood relief – Darbhanga\" ({}) and added Bhavesh and Chitra by device id",
        &conv[..8]
    ));
    let t = wait_for("invitations", Duration::from_secs(20), async || {
        let ok = |v: Result<Value, _>| {
            v.map(|c: Value| {
                c["member"] == true && c["members"].as_array().is_some_and(|m| m.len() == 3)
            })
            .unwrap_or(false)
        };
        ok(b.call(Request::Conversation {
            conversation: conv.clone(),
        })
        .await)
            && ok(c
                .call(Request::Conversation {
                    conversation: conv.clone(),
                })
                .await)
    })
    .await?;
    clock.say(format!(
        "Bhavesh and Chitra received the invitation and the conversation key ({} ms)",
        t.as_millis()
    ));

    let script: [(&Node, &str, &str, &str); 3] = [
        (
            &a,
            "Asha",
            "Boat team reached ghat 3. Need 40 tarpaulins and ORS.",
            "routine",
        ),
        (&b, "Bhavesh", "तिरपाल भेज रहे हैं, एक घंटे में पहुँचेंगे।", "priority"),
        (
            &c,
            "Chitra",
            "Medical camp set up at the school. 12 patients so far.",
            "routine",
        ),
    ];
    let all = [&a, &b, &c];
    for (from, name, text, prec) in script {
        let t0 = Instant::now();
        send(from, &conv, text, prec).await?;
        let mut times = Vec::new();
        for n in all.iter().filter(|n| !std::ptr::eq(**n, from)) {
            wait_for("delivery", Duration::from_secs(20), async || {
                bodies(n, &conv).await.iter().any(|b| b == text)
            })
            .await?;
            times.push(t0.elapsed().as_millis());
        }
        clock.say(format!(
            "{name}: \"{text}\"  → reached both others in {} ms",
            times.iter().max().unwrap_or(&0)
        ));
    }

    clock.say("Chitra's phone goes out of range (node stopped)");
    c.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    let missed = [
        (
            &a,
            "FLASH: water rising at the embankment, move everyone to high ground now.",
            "flash",
        ),
        (&b, "सभी परिवार स्कूल भवन में पहुँच गए हैं।", "immediate"),
    ];
    for (from, text, prec) in missed {
        send(from, &conv, text, prec).await?;
    }
    wait_for("A and B in sync", Duration::from_secs(20), async || {
        bodies(&a, &conv).await.len() == 5 && bodies(&b, &conv).await.len() == 5
    })
    .await?;
    clock.say("Asha and Bhavesh sent 2 more messages (one FLASH) while Chitra was away");

    let c = Node::start(&homes[2], opts(&c_peers)?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    clock.say(format!(
        "Chitra is back (same home, new address {})",
        c.listen[0]
    ));
    let t = wait_for("catch-up", Duration::from_secs(30), async || {
        bodies(&c, &conv).await.len() == 5
    })
    .await?;
    clock.say(format!(
        "Chitra caught up with everything she missed in {} ms (range reconciliation, FLASH first)",
        t.as_millis()
    ));

    // Receipts settle a moment after the messages (acknowledgements, and the reconciliations
    // that recover those a stopped node never sent).
    for n in [&a, &c] {
        wait_for("receipts", Duration::from_secs(10), async || {
            matches!(n.call(Request::Messages { conversation: conv.clone(), limit: 20, from_page: None, before: None }).await, Ok(Value::Array(m)) if m.iter().filter(|m| m["mine"] == true).all(|m| m["state"] == "delivered"))
        })
        .await
        .ok();
    }
    let authors = match c
        .call(Request::Conversation {
            conversation: conv.clone(),
        })
        .await
    {
        Ok(info) => crate::fmt::Authors::of(&info),
        Err(_) => crate::fmt::Authors::default(),
    };
    println!("\nChitra's log now:");
    if let Ok(Value::Array(msgs)) = c
        .call(Request::Messages {
            conversation: conv.clone(),
            limit: 20,
            from_page: None,
            before: None,
        })
        .await
    {
        for m in &msgs {
            println!("  {}", crate::fmt::message_line(m, &authors));
        }
    }
    println!("\nAsha's view of her own messages (delivery receipts):");
    if let Ok(Value::Array(msgs)) = a
        .call(Request::Messages {
            conversation: conv.clone(),
            limit: 20,
            from_page: None,
            before: None,
        })
        .await
    {
        for m in msgs.iter().filter(|m| m["mine"] == true) {
            println!("  {}", crate::fmt::message_line(m, &authors));
        }
    }
    let st = a
        .call(Request::Status)
        .await
        .map_err(|e| anyhow!(e.message))?;
    println!(
        "\nAsha's safety number: {} (compare it in person to rule out impersonation)",
        st["safety_number"].as_str().unwrap_or("")
    );
    for n in [a, b, c] {
        n.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    }
    if keep {
        let p = root.keep();
        println!(
            "\nHomes kept in {}: try `vaarta --home {}/asha log {}`",
            p.display(),
            p.display(),
            &conv[..8]
        );
    }
    println!(
        "\nDone. Next: `vaarta init --name YOUR_NAME`, then `vaarta up` on two machines on the same Wi-Fi."
    );
    Ok(())
}
