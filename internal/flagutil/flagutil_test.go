package flagutil

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestBothSpellingsSetTheSameFlag(t *testing.T) {
	for _, arg := range []string{"--work_dir=/a", "--work-dir=/a"} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.SetNormalizeFunc(WordSepNormalizeFunc)
		dir := fs.String("work_dir", "", "")
		if err := fs.Parse([]string{arg}); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if *dir != "/a" {
			t.Fatalf("%s: got %q", arg, *dir)
		}
	}
}
