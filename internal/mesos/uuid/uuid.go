// Package uuid makes and checks the 16-byte UUIDs Mesos uses for status
// update acknowledgements and stream IDs.
package uuid

import (
	"crypto/rand"
	"fmt"
)

// New returns 16 random bytes shaped as an RFC 4122 version-4 UUID.
func New() []byte {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

// NewString returns a new UUID in its canonical text form.
func NewString() string { return String(New()) }

// String formats 16 bytes as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
func String(b []byte) string {
	if len(b) != 16 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Valid is Mesos' check of an update uuid: 16 bytes of an RFC 4122 UUID of
// version 1 to 5.
func Valid(b []byte) bool {
	if len(b) != 16 {
		return false
	}
	v := b[6] >> 4
	return v >= 1 && v <= 5
}
