//! Counters: every dropped packet increments exactly one [`DropReason`], and the protocol
//! counters NetBSD's `netstat -s` shows. Owned by the stack thread, so plain integers.

use serde::Serialize;

macro_rules! drop_reasons {
    ($( $variant:ident => ($proto:literal, $key:literal, $text:literal), )*) => {
        /// Why a packet was dropped. Indexes [`Stats::drops`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason { $( $variant, )* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$( DropReason::$variant, )*];
            pub const COUNT: usize = Self::ALL.len();
            /// The `netstat -s` section this reason is listed under.
            pub fn proto(self) -> &'static str {
                match self { $( DropReason::$variant => $proto, )* }
            }
            /// Stable name for `--json` and tests.
            pub fn key(self) -> &'static str {
                match self { $( DropReason::$variant => $key, )* }
            }
            /// `netstat -s` text, after the count.
            pub fn text(self) -> &'static str {
                match self { $( DropReason::$variant => $text, )* }
            }
        }
    };
}

drop_reasons! {
    EtherTruncated => ("ether", "ether_truncated", "frames shorter than an Ethernet header"),
    EtherUnknownType => ("ether", "ether_unknown_type", "frames with an unsupported ethertype"),
    EtherNotForUs => ("ether", "ether_not_for_us", "frames for another station's MAC address"),
    IfDown => ("ether", "if_down", "packets on an interface that is down or has no link"),
    RxQueueFull => ("ether", "rx_queue_full", "frames dropped because the stack input queue was full"),
    LinkSendFailed => ("ether", "link_send_failed", "frames the link refused to send"),
    ArpTruncated => ("arp", "arp_truncated", "truncated packets"),
    ArpBadFormat => ("arp", "arp_bad_format", "packets with bad hardware/protocol types, lengths or op"),
    ArpBadSender => ("arp", "arp_bad_sender", "packets with a broadcast, multicast or own sender address"),
    ArpNotForUs => ("arp", "arp_not_for_us", "requests for addresses that are not ours"),
    ArpQueueFull => ("arp", "arp_queue_full", "packets dropped waiting for resolution (queue full)"),
    ArpResolveFailed => ("arp", "arp_resolve_failed", "packets dropped because resolution failed"),
    EtherGroupNotJoined => ("ether", "ether_group_not_joined", "multicast frames for groups no interface joined"),
    Ip6LinkMulticast => ("ip6", "ip6_link_multicast", "unicast packets received as link-layer multicast"),
    Ip6BeyondScope => ("ip6", "ip6_beyond_scope", "packets from a link-local source not forwarded (beyond scope)"),
    NdNotForUs => ("icmp6", "nd_not_for_us", "neighbor solicitations for addresses that are not ours"),
    Ip6Truncated => ("ip6", "ip6_truncated", "packets shorter than the IPv6 header or their payload length"),
    Ip6BadVersion => ("ip6", "ip6_bad_version", "packets with a version other than 6"),
    Ip6BadAddress => ("ip6", "ip6_bad_address", "packets with a multicast or unspecified source, or an invalid destination"),
    Ip6BadExtHeader => ("ip6", "ip6_bad_ext_header", "packets with an extension header running past the packet"),
    Ip6ExtChainTooLong => ("ip6", "ip6_ext_chain_too_long", "packets with too many extension headers"),
    Ip6HopByHopNotFirst => ("ip6", "ip6_hop_by_hop_not_first", "packets with a hop-by-hop options header not right after the IPv6 header"),
    Ip6BadOption => ("ip6", "ip6_bad_option", "packets with an option running past its header"),
    Ip6UnknownOption => ("ip6", "ip6_unknown_option", "packets with an unrecognized option whose type says discard"),
    Ip6RoutingType0 => ("ip6", "ip6_routing_type0", "packets with a type 0 routing header and segments left (RFC 5095)"),
    Ip6UnknownRoutingType => ("ip6", "ip6_unknown_routing_type", "packets with an unrecognized routing header and segments left"),
    Ip6NoNextHeader => ("ip6", "ip6_no_next_header", "packets with no next header (59)"),
    Ip6HopLimitExceeded => ("ip6", "ip6_hop_limit_exceeded", "packets with hop limit exceeded in transit"),
    Ip6NoRoute => ("ip6", "ip6_no_route", "packets without a route"),
    Ip6TooBig => ("ip6", "ip6_too_big", "packets too big for the outgoing link"),
    Ip6NotForUs => ("ip6", "ip6_not_for_us", "packets not for us (forwarding off)"),
    Ip6UnknownNextHeader => ("ip6", "ip6_unknown_next_header", "packets for an unknown or unsupported next header"),
    Ip6ParamProblem => ("ip6", "ip6_param_problem", "packets rejected with a parameter problem"),
    Frag6BadLength => ("ip6", "frag6_bad_length", "fragments with M set and a length that is not a multiple of 8"),
    Frag6TooBig => ("ip6", "frag6_too_big", "fragments or datagrams beyond the 65535-byte payload limit"),
    Frag6IncompleteChain => ("ip6", "frag6_incomplete_chain", "first fragments without the whole header chain (RFC 7112)"),
    Frag6Overlap => ("ip6", "frag6_overlap", "fragments dropped for overlap (whole datagram discarded)"),
    Frag6Duplicate => ("ip6", "frag6_duplicate", "duplicate fragments"),
    Frag6Inconsistent => ("ip6", "frag6_inconsistent", "fragments disagreeing on the datagram length"),
    Frag6Timeout => ("ip6", "frag6_timeout", "fragments dropped after reassembly timeout"),
    Frag6Memory => ("ip6", "frag6_memory", "fragments dropped to bound reassembly memory"),
    Icmp6Truncated => ("icmp6", "icmp6_truncated", "messages shorter than their ICMPv6 header"),
    Icmp6BadChecksum => ("icmp6", "icmp6_bad_checksum", "messages with a bad checksum"),
    Icmp6UnhandledType => ("icmp6", "icmp6_unhandled_type", "messages of a type we do not act on"),
    Icmp6NoListener => ("icmp6", "icmp6_no_listener", "replies and errors nobody was waiting for"),
    Icmp6RouterAdvertIgnored => ("icmp6", "icmp6_router_advert_ignored", "router advertisements ignored (not accepting them)"),
    Icmp6RedirectIgnored => ("icmp6", "icmp6_redirect_ignored", "redirects ignored (not from our first-hop router, or not accepting them)"),
    NdBadHopLimit => ("icmp6", "nd_bad_hop_limit", "neighbor discovery messages with a hop limit other than 255"),
    NdBadCode => ("icmp6", "nd_bad_code", "neighbor discovery messages with a nonzero code"),
    NdBadLength => ("icmp6", "nd_bad_length", "neighbor discovery messages shorter than their fixed part"),
    NdBadOption => ("icmp6", "nd_bad_option", "neighbor discovery messages with a zero-length, overrunning or misshapen option"),
    NdBadTarget => ("icmp6", "nd_bad_target", "neighbor discovery messages with a multicast or invalid target"),
    NdBadSourceOption => ("icmp6", "nd_bad_source_option", "solicitations from the unspecified address carrying a link-layer address"),
    NdBadDestination => ("icmp6", "nd_bad_destination", "solicitations from the unspecified address not sent to a solicited-node address"),
    NdBadSolicited => ("icmp6", "nd_bad_solicited", "advertisements to a multicast address with the solicited flag set"),
    NdBadRouterSource => ("icmp6", "nd_bad_router_source", "router advertisements or redirects from a non-link-local source"),
    NdBadRedirectDest => ("icmp6", "nd_bad_redirect_dest", "redirects for a multicast destination"),
    NdBadLinkAddress => ("icmp6", "nd_bad_link_address", "neighbor discovery messages with a multicast link-layer address"),
    NdQueueFull => ("icmp6", "nd_queue_full", "packets dropped waiting for neighbor resolution (queue full)"),
    NdResolveFailed => ("icmp6", "nd_resolve_failed", "packets dropped because neighbor resolution failed"),
    NdDadDuplicate => ("icmp6", "nd_dad_duplicate", "addresses found duplicate by duplicate address detection"),
    IpTruncated => ("ip", "ip_truncated", "packets shorter than their header or total length"),
    IpBadVersion => ("ip", "ip_bad_version", "packets with a version other than 4"),
    IpBadHeaderLen => ("ip", "ip_bad_header_len", "packets with a header length below 20"),
    IpBadTotalLen => ("ip", "ip_bad_total_len", "packets with a total length below the header length"),
    IpBadChecksum => ("ip", "ip_bad_checksum", "bad header checksums"),
    IpBadAddress => ("ip", "ip_bad_address", "packets with a martian source or destination"),
    IpLinkBroadcast => ("ip", "ip_link_broadcast", "unicast packets received as link-layer broadcast"),
    IpNotForUs => ("ip", "ip_not_for_us", "packets not for us (forwarding off)"),
    IpTtlExpired => ("ip", "ip_ttl_expired", "packets with TTL expired in transit"),
    IpNoRoute => ("ip", "ip_no_route", "packets without a route"),
    IpNeedFrag => ("ip", "ip_need_frag", "packets too big with DF set"),
    IpUnknownProtocol => ("ip", "ip_unknown_protocol", "packets for an unknown or unsupported protocol"),
    FragBadLength => ("ip", "frag_bad_length", "fragments with a length that is not a multiple of 8"),
    FragTooBig => ("ip", "frag_too_big", "fragments beyond the 65535-byte datagram limit"),
    FragOverlap => ("ip", "frag_overlap", "fragments dropped for overlap (whole datagram discarded)"),
    FragDuplicate => ("ip", "frag_duplicate", "duplicate fragments"),
    FragInconsistent => ("ip", "frag_inconsistent", "fragments disagreeing on the datagram length"),
    FragTimeout => ("ip", "frag_timeout", "fragments dropped after reassembly timeout"),
    FragMemory => ("ip", "frag_memory", "fragments dropped to bound reassembly memory"),
    IcmpTruncated => ("icmp", "icmp_truncated", "messages shorter than an ICMP header"),
    IcmpBadChecksum => ("icmp", "icmp_bad_checksum", "messages with a bad checksum"),
    IcmpUnhandledType => ("icmp", "icmp_unhandled_type", "messages of a type we do not act on"),
    IcmpNoListener => ("icmp", "icmp_no_listener", "replies and errors nobody was waiting for"),
    UdpTruncated => ("udp", "udp_truncated", "datagrams shorter than a UDP header"),
    UdpBadLength => ("udp", "udp_bad_length", "datagrams with a bad length field"),
    UdpBadChecksum => ("udp", "udp_bad_checksum", "datagrams with a bad checksum"),
    UdpNoPort => ("udp", "udp_no_port", "datagrams to a port nobody listens on"),
    InternalError => ("ether", "internal_error", "frames whose processing hit a bug (panic caught; see the log)"),
}

/// Protocol counters besides drops (NetBSD names in comments where they differ).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub ether_in: u64,
    pub ether_out: u64,
    pub arp_requests_in: u64,
    pub arp_replies_in: u64,
    pub arp_requests_out: u64,
    pub arp_replies_out: u64,
    pub arp_gratuitous_out: u64,
    pub arp_duplicate_address: u64,
    pub ip_in: u64,
    pub ip_delivered: u64,
    pub ip_forwarded: u64,
    pub ip_out: u64,
    pub ip_fragments_in: u64,
    pub ip_reassembled: u64,
    pub ip_fragmented: u64,
    pub ip_fragments_out: u64,
    pub icmp_in: u64,
    pub icmp_out: u64,
    pub icmp_echo_in: u64,
    pub icmp_echo_reply_out: u64,
    pub icmp_errors_out: u64,
    /// "errors not generated because old message was icmp"
    pub icmp_error_about_error: u64,
    /// errors not generated: fragment, broadcast or martian source
    pub icmp_error_suppressed: u64,
    pub icmp_rate_limited: u64,
    pub ip6_in: u64,
    pub ip6_delivered: u64,
    pub ip6_forwarded: u64,
    pub ip6_out: u64,
    pub ip6_fragments_in: u64,
    pub ip6_reassembled: u64,
    pub ip6_fragmented: u64,
    pub ip6_fragments_out: u64,
    pub icmp6_in: u64,
    pub icmp6_out: u64,
    pub icmp6_echo_in: u64,
    pub icmp6_echo_reply_out: u64,
    pub icmp6_errors_out: u64,
    pub icmp6_error_about_error: u64,
    pub icmp6_error_suppressed: u64,
    pub icmp6_rate_limited: u64,
    pub nd_ns_in: u64,
    pub nd_ns_out: u64,
    pub nd_na_in: u64,
    pub nd_na_out: u64,
    /// Advertisements from others for one of our (usable) addresses.
    pub nd_duplicate_address: u64,
    pub udp_in: u64,
}

#[derive(Clone, Debug)]
pub struct Stats {
    pub drops: [u64; DropReason::COUNT],
    pub counters: Counters,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            drops: [0; DropReason::COUNT],
            counters: Counters::default(),
        }
    }
}

impl Stats {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_slot_and_key() {
        let mut keys: Vec<_> = DropReason::ALL.iter().map(|r| r.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
