//! Checks that need the whole lab: names, buses, addresses, gateways and routes.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;

pub(super) fn validate(topo: &Topology, src: &Source, diags: &mut Vec<Diagnostic>) {
    let mut err = |loc: &Loc, msg: String| diags.push(src.diag(loc, msg));

    if let Err(e) = safe_name(&topo.name.value) {
        err(
            &topo.name.loc,
            format!(
                "lab name \"{}\" is not a safe file name: {e}",
                topo.name.value
            ),
        );
    }
    for node in &topo.nodes {
        if let Err(e) = safe_name(&node.name.value) {
            err(
                &node.name.loc,
                format!(
                    "node name \"{}\" is not a safe file name: {e}",
                    node.name.value
                ),
            );
        }
    }
    for bus in topo.buses.iter().filter(|b| b.declared) {
        if let Err(e) = safe_name(&bus.name) {
            err(
                &bus.loc,
                format!("bus name \"{}\" is not a safe file name: {e}", bus.name),
            );
        }
    }

    // A bus exists if it is declared or at least two interfaces share it; a bus named by one
    // interface only is almost always a typo.
    let mut members: HashMap<&str, usize> = HashMap::new();
    for node in &topo.nodes {
        for bus in node.interfaces.iter().filter_map(Interface::bus) {
            *members.entry(bus.value.as_str()).or_default() += 1;
        }
    }
    let known_bus = |name: &str| {
        topo.buses.iter().any(|b| b.declared && b.name == name)
            || members.get(name).copied().unwrap_or(0) >= 2
    };
    let mut known: Vec<&str> = topo
        .buses
        .iter()
        .map(|b| b.name.as_str())
        .filter(|n| known_bus(n))
        .collect();
    known.sort_unstable();
    let known_list = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    for node in &topo.nodes {
        for bus in node.interfaces.iter().filter_map(Interface::bus) {
            if !known_bus(&bus.value) {
                err(
                    &bus.loc,
                    format!(
                        "unknown bus \"{}\" (known: {known_list}); a bus with a single member must be declared with [buses.{}]",
                        bus.value, bus.value
                    ),
                );
            } else if let Err(e) = safe_name(&bus.value) {
                err(
                    &bus.loc,
                    format!("bus name \"{}\" is not a safe file name: {e}", bus.value),
                );
            }
        }
    }

    // Host taps: netstack nodes only, valid Linux names, one interface per tap; interface names
    // of Linux nodes are Linux interface names.
    let mut taps: HashMap<&str, (&str, &Loc)> = HashMap::new();
    for node in &topo.nodes {
        for ifc in &node.interfaces {
            if node.kind.value == NodeKind::Linux {
                if let Some(problem) = ifname_problem(&ifc.name.value) {
                    err(
                        &ifc.name.loc,
                        format!(
                            "interface name \"{}\" is not a Linux interface name: {problem}",
                            ifc.name.value
                        ),
                    );
                }
            }
            let Some(tap) = ifc.tap() else { continue };
            if node.kind.value != NodeKind::Netstack {
                err(
                    &tap.loc,
                    format!(
                        "host taps (`tap = ...`) are for netstack nodes; the interfaces of a {} node sit on buses",
                        node.kind.value.as_str()
                    ),
                );
                continue;
            }
            if let Some(problem) = ifname_problem(&tap.value) {
                err(
                    &tap.loc,
                    format!(
                        "tap name \"{}\" is not a Linux interface name: {problem}",
                        tap.value
                    ),
                );
            } else if let Some((other, first)) =
                taps.insert(&tap.value, (&node.name.value, &tap.loc))
            {
                err(
                    &tap.loc,
                    format!(
                        "tap \"{}\" is already used by node {other} (at {}); each host tap attaches one interface",
                        tap.value, first.path
                    ),
                );
            }
            let n = &ifc.name.value;
            let unit = n.strip_prefix("virt").unwrap_or("");
            if unit.is_empty() || unit.len() > 4 || !unit.bytes().all(|b| b.is_ascii_digit()) {
                err(
                    &ifc.name.loc,
                    format!(
                        "a tap interface of a netstack node is named virtN (virt0, virt1, ...), not \"{n}\""
                    ),
                );
            }
        }
    }

    // Interface names and addresses.
    let mut owners: HashMap<IpAddr, (&Node, &Interface, &Loc)> = HashMap::new();
    for node in &topo.nodes {
        let mut names: HashMap<&str, &Loc> = HashMap::new();
        for ifc in &node.interfaces {
            if let Some(first) = names.insert(&ifc.name.value, &ifc.name.loc) {
                err(
                    &ifc.name.loc,
                    format!(
                        "duplicate interface name \"{}\" on node {} (first at {})",
                        ifc.name.value, node.name.value, first.path
                    ),
                );
            }
            for a in &ifc.addrs {
                if let Some(problem) = host_problem(&a.value) {
                    err(
                        &a.loc,
                        format!("malformed address \"{}\": {problem}", a.value),
                    );
                    continue;
                }
                match owners.get(&a.value.addr) {
                    Some((other, _, loc)) => err(
                        &a.loc,
                        format!(
                            "duplicate address {} (already on node {} at {}, line {})",
                            a.value.addr,
                            other.name.value,
                            loc.path,
                            src.line_col(loc.span.start).0
                        ),
                    ),
                    None => {
                        owners.insert(a.value.addr, (node, ifc, &a.loc));
                    }
                }
            }
        }
    }

    // Routes: the gateway must be on a connected subnet, belong to another node on that bus,
    // and that node must forward.
    for node in &topo.nodes {
        // One default route per family.
        let mut seen: HashMap<(RouteDest, bool), &Loc> = HashMap::new();
        for r in &node.routes {
            if let Some(first) = seen.insert((r.to.value, r.via.value.is_ipv4()), &r.to.loc) {
                err(
                    &r.to.loc,
                    format!(
                        "duplicate route to {} (first at {})",
                        r.to.value, first.path
                    ),
                );
            }
            let via = r.via.value;
            if let Some(scope) = &r.via_scope {
                // Link-local gateways are made by the nodes themselves: only the interface can
                // be checked here.
                if !node.interfaces.iter().any(|i| &i.name.value == scope) {
                    let names: Vec<&str> = node
                        .interfaces
                        .iter()
                        .map(|i| i.name.value.as_str())
                        .collect();
                    err(
                        &r.via.loc,
                        format!(
                            "gateway {via}%{scope}: {} has no interface {scope} (it has: {})",
                            node.name.value,
                            names.join(", ")
                        ),
                    );
                }
                continue;
            }
            let connected = node
                .interfaces
                .iter()
                .find_map(|i| i.addrs.iter().find(|a| a.value.contains(via)).map(|_| i));
            let Some(out_ifc) = connected else {
                let subnets: Vec<String> = node
                    .interfaces
                    .iter()
                    .flat_map(|i| i.addrs.iter())
                    .filter(|a| a.value.addr.is_ipv4() == via.is_ipv4())
                    .map(|a| {
                        Prefix {
                            addr: a.value.addr,
                            len: a.value.prefix,
                        }
                        .network()
                        .to_string()
                    })
                    .collect();
                err(
                    &r.via.loc,
                    format!(
                        "gateway {via} is not on any connected subnet of {} (connected: {})",
                        node.name.value,
                        if subnets.is_empty() {
                            "none".to_string()
                        } else {
                            subnets.join(", ")
                        }
                    ),
                );
                continue;
            };
            match owners.get(&via) {
                Some((owner, _, _)) if owner.name.value == node.name.value => err(
                    &r.via.loc,
                    format!("gateway {via} is this node's own address"),
                ),
                Some((owner, ifc, _)) if ifc.link.key() != out_ifc.link.key() => err(
                    &r.via.loc,
                    format!(
                        "route to nowhere: gateway {via} belongs to {} on {}, but {} reaches that subnet on {}",
                        owner.name.value,
                        link_name(&ifc.link),
                        node.name.value,
                        link_name(&out_ifc.link)
                    ),
                ),
                Some((owner, _, _)) if !owner.forwarding => err(
                    &r.via.loc,
                    format!(
                        "route to nowhere: gateway {via} is node {}, which does not forward (set forwarding = true on it)",
                        owner.name.value
                    ),
                ),
                Some(_) => {}
                // Beyond a host tap is the host (or whatever it bridges to): not ours to check.
                None if out_ifc.tap().is_some() => {}
                None => err(
                    &r.via.loc,
                    format!(
                        "route to nowhere: no node on {} has address {via}",
                        link_name(&out_ifc.link)
                    ),
                ),
            }
        }
    }

    // Checks refer to nodes and buses that exist.
    let node_names: Vec<&str> = topo.nodes.iter().map(|n| n.name.value.as_str()).collect();
    let mut check_node = |at: &At<String>| {
        if !node_names.contains(&at.value.as_str()) {
            err(
                &at.loc,
                format!(
                    "unknown node \"{}\" (known: {})",
                    at.value,
                    node_names.join(", ")
                ),
            );
        }
    };
    for c in &topo.checks {
        match &c.action {
            CheckAction::Ping { from, .. } | CheckAction::Traceroute { from, .. } => {
                check_node(from)
            }
            CheckAction::Exec { node, .. } => check_node(node),
        }
    }
    for c in &topo.checks {
        if let Some(b) = &c.expect_on_bus {
            if !known_bus(&b.bus.value) {
                diags.push(src.diag(
                    &b.bus.loc,
                    format!("unknown bus \"{}\" (known: {known_list})", b.bus.value),
                ));
            }
        }
    }
}

/// `bus lan1` or `tap tap3`, for messages.
fn link_name(link: &Link) -> String {
    match link {
        Link::Bus(b) => format!("bus {}", b.value),
        Link::Tap(t) => format!("tap {}", t.value),
    }
}

/// What is wrong with an interface address as a host address, if anything.
fn host_problem(a: &IfAddr) -> Option<&'static str> {
    match a.addr {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                return Some("not a unicast host address");
            }
            if a.prefix < 31 {
                let host_bits = u32::from(v4) & !v4_mask(a.prefix);
                if host_bits == 0 {
                    return Some("this is the network address of its subnet");
                }
                if host_bits == !v4_mask(a.prefix) {
                    return Some("this is the broadcast address of its subnet");
                }
            }
            None
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast host address")
            } else {
                None
            }
        }
    }
}
