package resources

import "testing"

func mustParse(t testing.TB, s string) Resources {
	t.Helper()
	r, err := Parse(s, "*")
	if err != nil {
		t.Fatal(err)
	}
	return r
}
