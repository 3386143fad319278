//go:build !linux

package rawconn

const supported = false

// read and write are never called where raw calls are not supported: New
// returns nil there.
func (c *Conn) read(uintptr) bool  { return true }
func (c *Conn) write(uintptr) bool { return true }
