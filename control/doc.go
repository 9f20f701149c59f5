// Package control is mrtd's control socket: its wire protocol, the server a
// running daemon answers on, and the client that mrtd status, scale, restart
// and config use.
//
// The socket is <runtime-dir>/<instance>.sock (SocketPath), mode 0600
// (Listen). Each connection carries one request and one answer, both a JSON
// object, from a process of the daemon's own effective uid; the server checks
// the peer's uid (SO_PEERCRED) and answers any other uid with an error:
//
//	{"command":"status"}
//	{"command":"scale","workers":8}
//	{"command":"restart","worker":2}
//
// The answer (Response) is the pool's status after the command, with
// "error" set when the command failed or was refused. A request may be at
// most 64 KiB; a connection lasts at most a minute.
//
// The field names are the protocol: an old client talks to a new daemon and
// the other way round, so they do not change.
//
// Imports: control imports no other mrtd package. The daemon adapts its pool
// to the Pool interface; cmd/mrtd uses Client. In particular control must not
// import pool, supervisor, container, daemon or cmd/mrtd.
package control
