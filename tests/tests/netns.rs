//! Real multi-host tests in network namespaces (root only; required in CI through
//! VAARTA_REQUIRE_NETNS=1). The namespaces, veths and bridge are created by the test and
//! removed when it ends, pass or fail; no traffic leaves them.

use std::time::Duration;

use vaarta_tests::{LinkModel, Netns, Node, netns_available, netns_with_tools, wait_for};

const T: Duration = Duration::from_secs(90);

fn mdns_up(n: &mut Node) {
    // mDNS on (the default), listen on every interface of the namespace.
    n.up(&["--listen", "/ip4/0.0.0.0/tcp/0"]);
}

#[test]
fn three_nodes_on_one_host_find_each_other_by_mdns() {
    if !netns_available() {
        return;
    }
    let ns = Netns::single(1);
    let mut nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| Node::init(n)).collect();
    for n in &mut nodes {
        n.netns = Some(ns.node_ns(0));
        mdns_up(n);
    }
    for n in &nodes {
        wait_for(
            &format!("{} to find both others by mDNS", n.name),
            T,
            || (n.linked() >= 2).then_some(()),
        );
    }
    nodes[1].accept(&nodes[0]);
    nodes[2].accept(&nodes[0]);
    let conv = nodes[0].ok(&[
        "conv",
        "create",
        "mdns",
        "--member",
        &nodes[1].device_id(),
        "--member",
        &nodes[2].device_id(),
    ]);
    let conv = conv.trim();
    nodes[0].ok(&["send", conv, "found you by mDNS"]);
    for n in &nodes[1..] {
        wait_for("delivery", T, || {
            (n.bodies(conv) == vec!["found you by mDNS".to_string()]).then_some(())
        });
    }
}

#[test]
fn partition_then_heal_converges_across_a_bridge() {
    if !netns_with_tools(&["nft", "tc"]) {
        return;
    }
    // Three "hosts" on a LAN with 5 ms delay and 1% loss on every link.
    let ns = Netns::bridge(
        3,
        2,
        Some(LinkModel {
            delay_ms: 5,
            loss_pct: 1,
            rate_kbit: None,
        }),
    );
    let mut nodes: Vec<Node> = ["north", "centre", "south"]
        .iter()
        .map(|n| Node::init(n))
        .collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.netns = Some(ns.node_ns(i));
        mdns_up(n);
    }
    for n in &nodes {
        wait_for(&format!("{} to discover the others", n.name), T, || {
            (n.linked() >= 2).then_some(())
        });
    }
    nodes[1].accept(&nodes[0]);
    nodes[2].accept(&nodes[0]);
    let conv = nodes[0]
        .ok(&[
            "conv",
            "create",
            "district",
            "--member",
            &nodes[1].device_id(),
            "--member",
            &nodes[2].device_id(),
        ])
        .trim()
        .to_string();
    for n in &nodes[1..] {
        wait_for("membership", T, || n.is_member_of(&conv, 3).then_some(()));
    }
    nodes[0].ok(&["send", &conv, "before the partition"]);
    for n in &nodes {
        wait_for("first message", T, || {
            (n.bodies(&conv).len() == 1).then_some(())
        });
    }

    // Partition: the south host's link goes down. Both sides keep writing.
    ns.set_link(2, false);
    nodes[0].ok(&["send", &conv, "north during the partition"]);
    nodes[1].ok(&["send", &conv, "centre during the partition"]);
    nodes[2].ok(&[
        "send",
        &conv,
        "south during the partition",
        "--precedence",
        "flash",
    ]);
    wait_for("north and centre agree", T, || {
        (nodes[0].bodies(&conv).len() == 3 && nodes[1].bodies(&conv).len() == 3).then_some(())
    });
    assert_eq!(nodes[2].bodies(&conv).len(), 2, "south is cut off");

    // Heal: everyone converges to the same five messages in the same order.
    ns.set_link(2, true);
    for n in &nodes {
        wait_for(&format!("{} to converge", n.name), T, || {
            (n.bodies(&conv).len() == 4).then_some(())
        });
    }
    let first = nodes[0].bodies(&conv);
    for n in &nodes[1..] {
        assert_eq!(n.bodies(&conv), first, "{} differs", n.name);
    }
}
