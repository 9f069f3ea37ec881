package vpcd

import (
	"net"
	"syscall"
)

// quickAck re-arms TCP_QUICKACK (Linux clears it after a while). The vpcd
// driver writes the 2-byte length and the payload with separate send calls;
// with Nagle on its side and delayed ACKs on ours every APDU would stall
// ~40 ms waiting for the ACK of the length bytes. Acknowledging at once
// brings the round trip down to well under a millisecond of network time.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
