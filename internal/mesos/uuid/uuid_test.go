package uuid

import (
	"encoding/base64"
	"testing"
)

func TestValid(t *testing.T) {
	for i := 0; i < 100; i++ {
		if !Valid(New()) {
			t.Fatal("New made an invalid UUID")
		}
	}
	// From the recordings: a real executor's uuid is valid; "abc" and a
	// version-0 UUID are refused by Mesos.
	for s, want := range map[string]bool{"Q4+9scagQMmg5SEgyMIJ7g==": true, "YWJj": false, "By/xOqX6BlypqbeilpkvHg==": false} {
		b, _ := base64.StdEncoding.DecodeString(s)
		if Valid(b) != want {
			t.Errorf("%s: Valid = %v", s, !want)
		}
	}
	if s := String(New()); len(s) != 36 {
		t.Errorf("String = %q", s)
	}
}
