//! `labctl graph`: the lab as a DOT or Mermaid diagram. Nodes are boxes, buses are ellipses,
//! host taps are diamonds, and each edge is one interface, labelled with its name and addresses.

use crate::topology::{Link, Topology};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

pub fn render(topo: &Topology, format: Format) -> String {
    match format {
        Format::Dot => dot(topo),
        Format::Mermaid => mermaid(topo),
    }
}

fn edge_label(ifc: &crate::topology::Interface) -> Vec<String> {
    let mut parts = vec![ifc.name.value.clone()];
    parts.extend(ifc.addrs.iter().map(|a| a.value.to_string()));
    parts
}

/// The host taps the lab's interfaces attach to, once each, in order of first mention.
fn taps(topo: &Topology) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for t in topo
        .nodes
        .iter()
        .flat_map(|n| n.interfaces.iter().filter_map(|i| i.tap()))
    {
        if !out.contains(&t.value.as_str()) {
            out.push(&t.value);
        }
    }
    out
}

/// The graph id of what an interface attaches to (`bus:NAME` or `tap:NAME`).
fn link_id(link: &Link) -> String {
    match link {
        Link::Bus(b) => format!("bus:{}", b.value),
        Link::Tap(t) => format!("tap:{}", t.value),
    }
}

fn dot(topo: &Topology) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = format!("graph {} {{\n", q(&topo.name.value));
    s.push_str("  graph [overlap=false];\n");
    for bus in &topo.buses {
        s.push_str(&format!(
            "  {} [shape=ellipse, style=filled, fillcolor=lightblue, label={}];\n",
            q(&format!("bus:{}", bus.name)),
            q(&bus.name)
        ));
    }
    for tap in taps(topo) {
        s.push_str(&format!(
            "  {} [shape=diamond, label={}];\n",
            q(&format!("tap:{tap}")),
            q(&format!("host tap {tap}"))
        ));
    }
    for node in &topo.nodes {
        let mut label = node.name.value.clone();
        if node.kind.value != crate::topology::NodeKind::Netstack {
            label.push_str(&format!("\\n({})", node.kind.value.as_str()));
        }
        if node.forwarding {
            label.push_str("\\n(router)");
        }
        s.push_str(&format!(
            "  {} [shape=box, label=\"{}\"];\n",
            q(&format!("node:{}", node.name.value)),
            label.replace('"', "\\\"")
        ));
    }
    for node in &topo.nodes {
        for ifc in &node.interfaces {
            s.push_str(&format!(
                "  {} -- {} [label={}];\n",
                q(&format!("node:{}", node.name.value)),
                q(&link_id(&ifc.link)),
                q(&edge_label(ifc).join("\n")).replace('\n', "\\n")
            ));
        }
    }
    s.push_str("}\n");
    s
}

fn mermaid(topo: &Topology) -> String {
    // Mermaid ids must be plain words; names may contain '.' and '-'.
    let id = |prefix: &str, name: &str| {
        let clean: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("{prefix}_{clean}")
    };
    let mut s = String::from("graph LR\n");
    for bus in &topo.buses {
        s.push_str(&format!("  {}(({}))\n", id("bus", &bus.name), bus.name));
    }
    for tap in taps(topo) {
        s.push_str(&format!("  {}[/host tap {tap}/]\n", id("tap", tap)));
    }
    for node in &topo.nodes {
        let shape = if node.forwarding {
            format!("{{{{{}}}}}", node.name.value)
        } else {
            format!("[{}]", node.name.value)
        };
        s.push_str(&format!("  {}{}\n", id("node", &node.name.value), shape));
    }
    for node in &topo.nodes {
        for ifc in &node.interfaces {
            s.push_str(&format!(
                "  {} ---|\"{}\"| {}\n",
                id("node", &node.name.value),
                edge_label(ifc).join(" "),
                match &ifc.link {
                    Link::Bus(b) => id("bus", &b.value),
                    Link::Tap(t) => id("tap", &t.value),
                }
            ));
        }
    }
    s
}
