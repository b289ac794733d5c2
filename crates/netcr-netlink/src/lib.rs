//! netcr's netlink layer: the only crate that opens netlink sockets or calls `setns`.
//!
//! [`Rtnl`] is a synchronous rtnetlink socket over netlink-proto (driven on the calling thread
//! by a small blocking executor), sending many requests per datagram and matching replies by
//! sequence number. [`Transport`] is the small trait the core uses, and [`Connector`] the
//! factory it takes sockets from, so it can be tested against fakes. [`Netns`] holds
//! namespaces as fds. [`RawSocket`] dumps what only has to be found and named (any netlink
//! protocol) and sends nfnetlink transactions, [`nftables`] reads and writes nf_tables
//! messages, and [`xtables`] reads legacy iptables tables.

#![warn(missing_docs)]

pub mod error;
pub mod netns;
pub mod nexthop;
pub mod nftables;
pub mod ops;
pub mod raw;
pub mod tc;
pub mod transport;
pub mod xtables;

pub use error::{Error, ExtAck, Result};
pub use netns::{Netns, NetnsGuard};
pub use ops::{single, RtnlExt};
pub use raw::{Protocol, RawSocket, RawTransport, ReceivedMessage};
pub use transport::{
    Connector, Kernel, RawMessage, Reply, Request, Rtnl, Stats, Transport, RAW_MESSAGE_TYPES,
};

pub use netlink_packet_core;
pub use netlink_packet_route;
