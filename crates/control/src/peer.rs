//! Who is on the other end of a local connection: the peer's uid of a unix socket (SO_PEERCRED) or of
//! a loopback TCP connection (the kernel's socket table through NETLINK_SOCK_DIAG), and the rule for
//! who may use a control listener: pilot-host's own user and root.
//!
//! A loopback TCP client is a socket of this machine, so the kernel knows its owner: the query names
//! the client's socket exactly (its address and port, then ours) and reads back its uid. Nothing here
//! trusts what the client says about itself.

use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

/// Returns whether the user `uid` may use pilot-host's control listeners: its own user or root.
pub fn allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Returns why `uid` is refused, for the answer and the log.
pub fn refusal(uid: u32, what: &str) -> String {
    format!(
        "user {uid} may not use {what}: only pilot-host's own user ({}) and root may",
        nix::unistd::geteuid()
    )
}

/// Returns the uid owning the peer socket of the TCP connection from `peer` to `local`, both on
/// this machine.
pub fn tcp_peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<u32> {
    let family = if peer.is_ipv4() { AF_INET } else { AF_INET6 };
    // The client's socket: its own address is our peer, its destination is us.
    let socket_id = SocketId {
        source_port: peer.port(),
        destination_port: local.port(),
        source_address: peer.ip(),
        destination_address: local.ip(),
        interface_id: 0,
        // All 0xff: "no cookie", match on the addresses alone.
        cookie: [0xff; 8],
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.send(&buf, 0)?;
    let mut answer = vec![0u8; 8192];
    let n = socket.recv(&mut &mut answer[..], 0)?;
    let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&answer[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match message.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => Ok(r.header.uid),
        NetlinkPayload::Error(e) => Err(e.to_io()),
        other => Err(io::Error::other(format!(
            "unexpected answer from the kernel: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_the_owner_of_a_loopback_client() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let uid = tcp_peer_uid(server.local_addr().unwrap(), peer).unwrap();
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        assert!(allowed(uid));
        drop(client);
    }
}
