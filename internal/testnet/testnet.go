// Package testnet gives tests a loopback TCP listener that accepts and
// closes every connection: a target that is reachable unless a rule or a
// namespace stops the connect.
package testnet

import (
	"net"
	"testing"
)

// Listen returns the address (127.0.0.1:port) of a listener that lives
// until the test ends.
func Listen(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
