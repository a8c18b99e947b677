//! From TOML text to the model: walks the spanned TOML tree by hand (instead of serde) so that
//! every unknown key and every bad value is reported, each with its span, rather than the first.

use std::net::IpAddr;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::*;

type Value<'i> = Spanned<DeValue<'i>>;

struct Cx<'a> {
    src: &'a Source,
    diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err(&mut self, span: Range<usize>, path: &str, message: impl Into<String>) {
        let loc = Loc {
            span,
            path: path.to_string(),
        };
        self.diags.push(self.src.diag(&loc, message.into()));
    }

    /// Reports keys not in `allowed`, naming the ones that are.
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], path: &str) {
        for (key, _) in table.iter() {
            let k: &str = key.get_ref();
            if !allowed.contains(&k) {
                let p = join(path, k);
                self.err(
                    key.span(),
                    &p,
                    format!("unknown key \"{k}\" (known: {})", allowed.join(", ")),
                );
            }
        }
    }

    fn table<'v, 'i>(&mut self, v: &'v Value<'i>, path: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.err(
                    v.span(),
                    path,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn array<'v, 'i>(&mut self, v: &'v Value<'i>, path: &str) -> Option<&'v [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                self.err(
                    v.span(),
                    path,
                    format!("expected an array, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, path: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(
                    v.span(),
                    path,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn at_string(&mut self, v: &Value<'_>, path: &str) -> Option<At<String>> {
        let value = self.string(v, path)?;
        Some(At {
            value,
            loc: loc(v, path),
        })
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    v.span(),
                    path,
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, path: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                self.err(
                    v.span(),
                    path,
                    format!("expected an integer, found {}", other.type_str()),
                );
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.err(v.span(), path, format!("must be between {min} and {max}"));
                None
            }
        }
    }

    fn ip(&mut self, v: &Value<'_>, path: &str) -> Option<IpAddr> {
        let s = self.string(v, path)?;
        match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    v.span(),
                    path,
                    format!("malformed address \"{s}\": expected an IPv4 or IPv6 address"),
                );
                None
            }
        }
    }

    /// A command: a string split on whitespace, or an array of strings.
    fn argv(&mut self, v: &Value<'_>, path: &str) -> Option<Vec<String>> {
        let argv: Vec<String> = match v.get_ref() {
            DeValue::String(s) => s.split_whitespace().map(str::to_string).collect(),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{path}[{i}]"))?);
                }
                out
            }
            other => {
                self.err(
                    v.span(),
                    path,
                    format!(
                        "expected a command (a string or an array of strings), found {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        if argv.is_empty() {
            self.err(v.span(), path, "empty command");
            return None;
        }
        Some(argv)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn loc(v: &Value<'_>, path: &str) -> Loc {
    Loc {
        span: v.span(),
        path: path.to_string(),
    }
}

fn get<'v, 'i>(t: &'v DeTable<'i>, key: &str) -> Option<&'v Value<'i>> {
    t.iter()
        .find(|(k, _)| {
            let s: &str = k.get_ref();
            s == key
        })
        .map(|(_, v)| v)
}

fn key_span(t: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    t.iter()
        .find(|(k, _)| {
            let s: &str = k.get_ref();
            s == key
        })
        .map(|(k, _)| k.span())
}

/// Parses an address with its prefix length (`10.0.0.1/24`, `fd00::1/64`).
pub(crate) fn parse_ifaddr(s: &str) -> Result<IfAddr, String> {
    let Some((a, l)) = s.split_once('/') else {
        return Err(format!(
            "malformed address \"{s}\": needs a prefix length, e.g. \"10.0.0.1/24\""
        ));
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("malformed address \"{s}\": \"{a}\" is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = l
        .parse()
        .ok()
        .filter(|&p| p <= max)
        .ok_or_else(|| format!("malformed address \"{s}\": prefix length must be 0..={max}"))?;
    Ok(IfAddr { addr, prefix })
}

fn parse_dest(s: &str) -> Result<RouteDest, String> {
    if s == "default" {
        return Ok(RouteDest::Default);
    }
    if let Some((a, l)) = s.split_once('/') {
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("malformed destination \"{s}\": \"{a}\" is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = l.parse().ok().filter(|&p| p <= max).ok_or_else(|| {
            format!("malformed destination \"{s}\": prefix length must be 0..={max}")
        })?;
        return Ok(RouteDest::Net(Prefix { addr, len }));
    }
    let addr: IpAddr = s.parse().map_err(|_| {
        format!(
            "malformed destination \"{s}\": expected \"default\", a prefix such as \"10.0.2.0/24\" or a host address"
        )
    })?;
    let len = if addr.is_ipv4() { 32 } else { 128 };
    Ok(RouteDest::Net(Prefix { addr, len }))
}

pub(super) fn parse(
    src: &Source,
    file: &Path,
    base: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Topology> {
    let root = match DeTable::parse(&src.text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let mut message = e.message().trim().to_string();
            if message.starts_with("duplicate key") {
                let key = src.text.get(span.clone()).unwrap_or("").trim_matches('"');
                message =
                    format!("duplicate key \"{key}\": node, bus and key names must be unique");
            }
            let loc = Loc {
                span,
                path: String::new(),
            };
            diags.push(src.diag(&loc, message));
            return None;
        }
    };
    let mut cx = Cx { src, diags };
    let root = root.get_ref();
    cx.check_keys(
        root,
        &["name", "description", "buses", "nodes", "checks"],
        "",
    );

    let name = match get(root, "name") {
        Some(v) => cx.at_string(v, "name"),
        None => {
            cx.err(
                0..0,
                "name",
                "missing lab name: add `name = \"mylab\"` at the top",
            );
            None
        }
    };
    if let Some(d) = get(root, "description") {
        cx.string(d, "description");
    }

    let mut buses = Vec::new();
    if let Some(v) = get(root, "buses") {
        if let Some(t) = cx.table(v, "buses") {
            for (key, bv) in t.iter() {
                let bname: &str = key.get_ref();
                let path = format!("buses.{bname}");
                let mut bus = BusSpec {
                    name: bname.to_string(),
                    size: None,
                    capture: false,
                    netbsd: false,
                    declared: true,
                    loc: Loc {
                        span: key.span(),
                        path: path.clone(),
                    },
                };
                if let Some(bt) = cx.table(bv, &path) {
                    cx.check_keys(bt, &["size", "capture", "netbsd"], &path);
                    if let Some(v) = get(bt, "size") {
                        let p = format!("{path}.size");
                        bus.size = cx
                            .integer(
                                v,
                                &p,
                                shmif::format::MIN_BUS_SIZE as i64,
                                shmif::format::MAX_BUS_SIZE as i64,
                            )
                            .map(|n| n as u64);
                    }
                    if let Some(v) = get(bt, "capture") {
                        bus.capture = cx.boolean(v, &format!("{path}.capture")).unwrap_or(false);
                    }
                    if let Some(v) = get(bt, "netbsd") {
                        bus.netbsd = cx.boolean(v, &format!("{path}.netbsd")).unwrap_or(false);
                    }
                    // A NetBSD kernel truncates every bus to 1 MiB: any other size cannot be
                    // shared with one.
                    let min = shmif::format::MIN_BUS_SIZE;
                    if let (true, Some(size), Some(v)) = (bus.netbsd, bus.size, get(bt, "size")) {
                        if size != min {
                            cx.err(
                                v.span(),
                                &format!("{path}.size"),
                                format!(
                                    "a bus with `netbsd = true` is {min} bytes (1 MiB, NetBSD's fixed size), not {size}: remove `size` or set it to {min}"
                                ),
                            );
                        }
                    }
                }
                buses.push(bus);
            }
        }
    }

    let mut nodes = Vec::new();
    match get(root, "nodes") {
        Some(v) => {
            if let Some(t) = cx.table(v, "nodes") {
                for (key, nv) in t.iter() {
                    let nname: &str = key.get_ref();
                    let name = At {
                        value: nname.to_string(),
                        loc: Loc {
                            span: key.span(),
                            path: format!("nodes.{nname}"),
                        },
                    };
                    if let Some(node) = parse_node(&mut cx, name, nv, base) {
                        nodes.push(node);
                    }
                }
            }
        }
        None => cx.err(0..0, "nodes", "no nodes: add a [nodes.NAME] table"),
    }

    let mut checks = Vec::new();
    if let Some(v) = get(root, "checks") {
        if let Some(items) = cx.array(v, "checks") {
            for (i, cv) in items.iter().enumerate() {
                if let Some(c) = parse_check(&mut cx, cv, &format!("checks[{i}]")) {
                    checks.push(c);
                }
            }
        }
    }

    // Buses named only by interfaces, in order of first mention.
    for node in &nodes {
        for bus in node.interfaces.iter().filter_map(Interface::bus) {
            if !buses.iter().any(|b| b.name == bus.value) {
                buses.push(BusSpec {
                    name: bus.value.clone(),
                    size: None,
                    capture: false,
                    netbsd: false,
                    declared: false,
                    loc: bus.loc.clone(),
                });
            }
        }
    }

    Some(Topology {
        file: file.to_path_buf(),
        name: name?,
        buses,
        nodes,
        checks,
    })
}

fn parse_node(cx: &mut Cx<'_>, name: At<String>, v: &Value<'_>, base: &Path) -> Option<Node> {
    let path = name.loc.path.clone();
    let t = cx.table(v, &path)?;
    cx.check_keys(
        t,
        &[
            "kind",
            "forwarding",
            "interfaces",
            "routes",
            "sysctl",
            "ipsec",
            "exec",
        ],
        &path,
    );
    let mut node = Node {
        kind: At {
            value: NodeKind::Netstack,
            loc: name.loc.clone(),
        },
        name,
        forwarding: false,
        interfaces: Vec::new(),
        routes: Vec::new(),
        sysctl: Vec::new(),
        ipsec: None,
        exec: Vec::new(),
    };
    if let Some(v) = get(t, "kind") {
        let p = format!("{path}.kind");
        if let Some(s) = cx.string(v, &p) {
            let kind = match s.as_str() {
                "netstack" => Some(NodeKind::Netstack),
                "linux" => Some(NodeKind::Linux),
                "rump" => Some(NodeKind::Rump),
                other => {
                    cx.err(
                        v.span(),
                        &p,
                        format!("unknown node kind \"{other}\" (known: netstack, linux, rump)"),
                    );
                    None
                }
            };
            if let Some(kind) = kind {
                node.kind = At {
                    value: kind,
                    loc: loc(v, &p),
                };
            }
        }
    }
    if let Some(v) = get(t, "forwarding") {
        node.forwarding = cx
            .boolean(v, &format!("{path}.forwarding"))
            .unwrap_or(false);
    }
    if let Some(v) = get(t, "interfaces") {
        let p = format!("{path}.interfaces");
        if let Some(items) = cx.array(v, &p) {
            let mut counts = IfCounts::default();
            for (i, iv) in items.iter().enumerate() {
                let ip = format!("{p}[{i}]");
                if let Some(ifc) = parse_interface(cx, iv, &ip, node.kind.value, &mut counts) {
                    node.interfaces.push(ifc);
                }
            }
        }
    }
    if let Some(v) = get(t, "routes") {
        let p = format!("{path}.routes");
        if let Some(items) = cx.array(v, &p) {
            for (i, rv) in items.iter().enumerate() {
                if let Some(r) = parse_route(cx, rv, &format!("{p}[{i}]")) {
                    node.routes.push(r);
                }
            }
        }
    }
    if let Some(v) = get(t, "sysctl") {
        let p = format!("{path}.sysctl");
        if let Some(st) = cx.table(v, &p) {
            flatten_sysctl(cx, st, "", &p, &mut node.sysctl);
        }
    }
    if let Some(v) = get(t, "ipsec") {
        let p = format!("{path}.ipsec");
        node.ipsec = parse_ipsec(cx, v, &p, base);
    }
    if let Some(v) = get(t, "exec") {
        let p = format!("{path}.exec");
        if let Some(items) = cx.array(v, &p) {
            for (i, ev) in items.iter().enumerate() {
                let ep = format!("{p}[{i}]");
                if let Some(argv) = cx.argv(ev, &ep) {
                    node.exec.push(At {
                        value: argv,
                        loc: loc(ev, &ep),
                    });
                }
            }
        }
    }
    Some(node)
}

/// How many interfaces of each link type a node has so far, for default names.
#[derive(Default)]
struct IfCounts {
    all: usize,
    bus: usize,
    tap: usize,
}

fn parse_interface(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &str,
    kind: NodeKind,
    counts: &mut IfCounts,
) -> Option<Interface> {
    let t = cx.table(v, path)?;
    cx.check_keys(t, &["bus", "tap", "addrs", "name", "mtu"], path);
    let link = match (get(t, "bus"), get(t, "tap")) {
        (Some(bv), None) => Link::Bus(cx.at_string(bv, &format!("{path}.bus"))?),
        (None, Some(tv)) => Link::Tap(cx.at_string(tv, &format!("{path}.tap"))?),
        (Some(_), Some(_)) => {
            let span = key_span(t, "tap").unwrap_or(v.span());
            cx.err(
                span,
                path,
                "give exactly one of `bus` (a bus of the lab) or `tap` (a host tap device), not both",
            );
            return None;
        }
        (None, None) => {
            cx.err(
                v.span(),
                path,
                "missing `bus`: every interface sits on a bus (or, on a netstack node, on a host tap: `tap = \"NAME\"`)",
            );
            return None;
        }
    };
    let default_name = match (kind, &link) {
        (NodeKind::Linux, _) => format!("eth{}", counts.all),
        (_, Link::Bus(_)) => format!("shmif{}", counts.bus),
        (_, Link::Tap(_)) => format!("virt{}", counts.tap),
    };
    counts.all += 1;
    match link {
        Link::Bus(_) => counts.bus += 1,
        Link::Tap(_) => counts.tap += 1,
    }
    let name = match get(t, "name") {
        Some(nv) => cx.at_string(nv, &format!("{path}.name"))?,
        None => At {
            value: default_name,
            loc: loc(v, path),
        },
    };
    let mut ifc = Interface {
        name,
        link,
        addrs: Vec::new(),
        mtu: None,
    };
    if let Some(av) = get(t, "addrs") {
        let p = format!("{path}.addrs");
        if let Some(items) = cx.array(av, &p) {
            for (i, item) in items.iter().enumerate() {
                let ap = format!("{p}[{i}]");
                if let Some(s) = cx.string(item, &ap) {
                    match parse_ifaddr(&s) {
                        Ok(a) => ifc.addrs.push(At {
                            value: a,
                            loc: loc(item, &ap),
                        }),
                        Err(e) => cx.err(item.span(), &ap, e),
                    }
                }
            }
        }
    }
    if let Some(mv) = get(t, "mtu") {
        ifc.mtu = cx
            .integer(mv, &format!("{path}.mtu"), 68, 1500)
            .map(|n| n as u32);
    }
    Some(ifc)
}

fn parse_route(cx: &mut Cx<'_>, v: &Value<'_>, path: &str) -> Option<Route> {
    let t = cx.table(v, path)?;
    cx.check_keys(t, &["to", "via"], path);
    let (Some(tv), Some(vv)) = (get(t, "to"), get(t, "via")) else {
        cx.err(
            v.span(),
            path,
            "a route needs `to` and `via`, e.g. { to = \"default\", via = \"10.0.1.1\" }",
        );
        return None;
    };
    let tp = format!("{path}.to");
    let to = cx.string(tv, &tp).and_then(|s| match parse_dest(&s) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(tv.span(), &tp, e);
            None
        }
    });
    let vp = format!("{path}.via");
    // A link-local gateway names its interface, as NetBSD's route(8) takes it.
    let (via, via_scope) = match cx.string(vv, &vp) {
        Some(text) => match text.split_once('%') {
            Some((a, ifc)) => match a.parse::<std::net::Ipv6Addr>() {
                Ok(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 && !ifc.is_empty() => {
                    (Some(IpAddr::V6(v6)), Some(ifc.to_string()))
                }
                _ => {
                    cx.err(
                        vv.span(),
                        &vp,
                        format!("malformed gateway \"{text}\": only an IPv6 link-local address takes a %INTERFACE, e.g. \"fe80::1%eth0\""),
                    );
                    (None, None)
                }
            },
            None => (cx.ip(vv, &vp), None),
        },
        None => (None, None),
    };
    let (to, via) = (to?, via?);
    if let RouteDest::Net(p) = to {
        if p.addr.is_ipv4() != via.is_ipv4() {
            cx.err(
                vv.span(),
                &vp,
                format!("gateway {via} and destination {p} are not the same address family"),
            );
            return None;
        }
    }
    Some(Route {
        to: At {
            value: to,
            loc: loc(tv, &tp),
        },
        via: At {
            value: via,
            loc: loc(vv, &vp),
        },
        via_scope,
    })
}

fn flatten_sysctl(
    cx: &mut Cx<'_>,
    t: &DeTable<'_>,
    prefix: &str,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    for (key, v) in t.iter() {
        let k: &str = key.get_ref();
        let name = join(prefix, k);
        let p = format!("{path}.\"{name}\"");
        let value = match v.get_ref() {
            DeValue::Table(sub) => {
                flatten_sysctl(cx, sub, &name, path, out);
                continue;
            }
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .map(|n| n.to_string())
                .unwrap_or_else(|_| i.as_str().to_string()),
            DeValue::Boolean(b) => (if *b { "1" } else { "0" }).to_string(),
            DeValue::String(s) => s.to_string(),
            other => {
                cx.err(
                    v.span(),
                    &p,
                    format!(
                        "expected an integer, boolean or string, found {}",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        out.push((name, value));
    }
}

fn parse_ipsec(cx: &mut Cx<'_>, v: &Value<'_>, path: &str, base: &Path) -> Option<At<Ipsec>> {
    let ipsec = match v.get_ref() {
        DeValue::String(s) => Ipsec::Inline(s.to_string()),
        DeValue::Table(t) => {
            cx.check_keys(t, &["file", "setkey"], path);
            match (get(t, "file"), get(t, "setkey")) {
                (Some(f), None) => {
                    let fp = format!("{path}.file");
                    let f_str = cx.string(f, &fp)?;
                    let full = base.join(&f_str);
                    if !full.is_file() {
                        cx.err(
                            f.span(),
                            &fp,
                            format!("setkey file {} does not exist", full.display()),
                        );
                        return None;
                    }
                    Ipsec::File(full)
                }
                (None, Some(s)) => Ipsec::Inline(cx.string(s, &format!("{path}.setkey"))?),
                _ => {
                    cx.err(
                        v.span(),
                        path,
                        "give exactly one of `file` (a setkey file) or `setkey` (inline setkey text)",
                    );
                    return None;
                }
            }
        }
        other => {
            cx.err(
                v.span(),
                path,
                format!(
                    "expected setkey text or a table {{ file = \"...\" }}, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    Some(At {
        value: ipsec,
        loc: loc(v, path),
    })
}

fn parse_check(cx: &mut Cx<'_>, v: &Value<'_>, path: &str) -> Option<Check> {
    let t = cx.table(v, path)?;
    cx.check_keys(
        t,
        &["name", "ping", "traceroute", "exec", "expect_on_bus"],
        path,
    );
    let given: Vec<&str> = ["ping", "traceroute", "exec"]
        .into_iter()
        .filter(|k| get(t, k).is_some())
        .collect();
    if given.len() != 1 {
        let span = key_span(t, given.get(1).copied().unwrap_or("")).unwrap_or(v.span());
        cx.err(
            span,
            path,
            format!(
                "a check needs exactly one of `ping`, `traceroute` or `exec` (found {})",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(" and ")
                }
            ),
        );
        return None;
    }
    let kind = given[0];
    let kv = get(t, kind).expect("present");
    let kp = format!("{path}.{kind}");
    let kt = cx.table(kv, &kp)?;
    let field = |cx: &mut Cx<'_>, key: &str| -> Option<&Value<'_>> {
        let f = get(kt, key);
        if f.is_none() {
            cx.err(kv.span(), &kp, format!("missing `{key}`"));
        }
        f
    };
    let action = match kind {
        "ping" => {
            cx.check_keys(kt, &["from", "to", "count", "expect"], &kp);
            let from = field(cx, "from").and_then(|f| cx.at_string(f, &format!("{kp}.from")));
            let to = field(cx, "to").and_then(|f| cx.ip(f, &format!("{kp}.to")));
            let count = match get(kt, "count") {
                Some(c) => cx.integer(c, &format!("{kp}.count"), 1, 1000)? as u32,
                None => 1,
            };
            let expect_success = match get(kt, "expect") {
                Some(e) => {
                    let ep = format!("{kp}.expect");
                    match cx.string(e, &ep)?.as_str() {
                        "success" => true,
                        "failure" => false,
                        other => {
                            cx.err(
                                e.span(),
                                &ep,
                                format!("expected \"success\" or \"failure\", found \"{other}\""),
                            );
                            return None;
                        }
                    }
                }
                None => true,
            };
            CheckAction::Ping {
                from: from?,
                to: to?,
                count,
                expect_success,
            }
        }
        "traceroute" => {
            cx.check_keys(kt, &["from", "to", "hops"], &kp);
            let from = field(cx, "from").and_then(|f| cx.at_string(f, &format!("{kp}.from")));
            let to = field(cx, "to").and_then(|f| cx.ip(f, &format!("{kp}.to")));
            let mut hops = Vec::new();
            let hp = format!("{kp}.hops");
            if let Some(items) = field(cx, "hops").and_then(|h| cx.array(h, &hp)) {
                for (i, h) in items.iter().enumerate() {
                    hops.push(cx.ip(h, &format!("{hp}[{i}]"))?);
                }
            }
            CheckAction::Traceroute {
                from: from?,
                to: to?,
                hops,
            }
        }
        _ => {
            cx.check_keys(kt, &["node", "cmd", "status", "output"], &kp);
            let node = field(cx, "node").and_then(|f| cx.at_string(f, &format!("{kp}.node")));
            let argv = field(cx, "cmd").and_then(|f| cx.argv(f, &format!("{kp}.cmd")));
            let status = match get(kt, "status") {
                Some(s) => cx.integer(s, &format!("{kp}.status"), 0, 255)? as i32,
                None => 0,
            };
            let output = match get(kt, "output") {
                Some(o) => {
                    let op = format!("{kp}.output");
                    let re = cx.string(o, &op)?;
                    if let Err(e) = regex::Regex::new(&re) {
                        cx.err(o.span(), &op, format!("bad regular expression: {e}"));
                        return None;
                    }
                    Some(re)
                }
                None => None,
            };
            CheckAction::Exec {
                node: node?,
                argv: argv?,
                status,
                output,
            }
        }
    };
    let expect_on_bus = match get(t, "expect_on_bus") {
        Some(ev) => Some(parse_bus_expect(cx, ev, &format!("{path}.expect_on_bus"))?),
        None => None,
    };
    let name = match get(t, "name") {
        Some(n) => cx.string(n, &format!("{path}.name"))?,
        None => describe(&action, expect_on_bus.as_ref()),
    };
    Some(Check {
        name,
        action,
        expect_on_bus,
        loc: loc(v, path),
    })
}

fn parse_bus_expect(cx: &mut Cx<'_>, v: &Value<'_>, path: &str) -> Option<BusExpect> {
    let t = cx.table(v, path)?;
    cx.check_keys(t, &["bus", "proto", "src", "dst", "present"], path);
    let (Some(bv), Some(pv)) = (get(t, "bus"), get(t, "proto")) else {
        cx.err(v.span(), path, "needs `bus` and `proto`");
        return None;
    };
    let bus = cx.at_string(bv, &format!("{path}.bus"));
    let pp = format!("{path}.proto");
    let proto = cx.string(pv, &pp).and_then(|s| {
        let found = Proto::ALL.iter().find(|(n, _)| *n == s).map(|(_, p)| *p);
        if found.is_none() {
            let known: Vec<&str> = Proto::ALL.iter().map(|(n, _)| *n).collect();
            cx.err(
                pv.span(),
                &pp,
                format!("unknown protocol \"{s}\" (known: {})", known.join(", ")),
            );
        }
        found
    });
    let src = match get(t, "src") {
        Some(s) => Some(cx.ip(s, &format!("{path}.src"))?),
        None => None,
    };
    let dst = match get(t, "dst") {
        Some(s) => Some(cx.ip(s, &format!("{path}.dst"))?),
        None => None,
    };
    let present = match get(t, "present") {
        Some(p) => cx.boolean(p, &format!("{path}.present"))?,
        None => true,
    };
    Some(BusExpect {
        bus: bus?,
        proto: proto?,
        src,
        dst,
        present,
    })
}

fn describe(action: &CheckAction, bus: Option<&BusExpect>) -> String {
    let mut s = match action {
        CheckAction::Ping {
            from,
            to,
            expect_success,
            ..
        } => format!(
            "ping {} -> {to}{}",
            from.value,
            if *expect_success { "" } else { " fails" }
        ),
        CheckAction::Traceroute { from, to, .. } => format!("traceroute {} -> {to}", from.value),
        CheckAction::Exec { node, argv, .. } => format!("exec {}: {}", node.value, argv.join(" ")),
    };
    if let Some(b) = bus {
        s.push_str(&format!(
            ", {} {} on {}",
            b.proto.as_str(),
            if b.present { "seen" } else { "absent" },
            b.bus.value
        ));
    }
    s
}
