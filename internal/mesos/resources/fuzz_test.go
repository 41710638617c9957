package resources

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

var fuzzSeeds = []string{
	"cpus:4;mem:4096;disk:10000;ports:[31000-32000]",
	"cpus(k8s):2;cpus:1;mem(eng/web):4096.5",
	"ports:[1-2,5,3-4];gpus:{b,a}",
	"ports(*):[0-18446744073709551615]",
	" cpus : 0.0005 ; mem : 1e3 \n disk:0",
	`[{"name":"cpus","type":"SCALAR","scalar":{"value":1}},{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":5}]},"role":"web"}]`,
	`[{"name":"gpus","type":"SET","set":{"item":["a"]},"reservations":[{"type":"STATIC","role":"ml"}]}]`,
	"rack:r1;zone:a;level:2;ports:[1-5];tags:{x,y};url:http://h:80",
	"cpus:four", "cpus(", "a:[1-2", "a:-1", "a:1e-310",
}

// FuzzParse: Parse and ParseAttributes never panic, and what they accept
// is written back by String and AttributesString in a form they read
// back to the same thing.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		defer watchdog(s)()
		if as, err := ParseAttributes(s); err == nil {
			out := AttributesString(as)
			again, err := ParseAttributes(out)
			if err != nil {
				t.Fatalf("AttributesString of %q does not parse: %q: %v", s, out, err)
			}
			if len(again) != len(as) {
				t.Fatalf("round trip of %q: %d attributes, then %d", s, len(as), len(again))
			}
			for i := range as {
				if !proto.Equal(as[i], again[i]) {
					t.Fatalf("round trip of %q changed %v to %v", s, as[i], again[i])
				}
			}
		}
		for _, role := range []string{"*", "k8s"} {
			r, err := Parse(s, role)
			if err != nil {
				continue
			}
			checkNormal(t, "Parse", r)
			out := String(r)
			again, err := Parse(out, "*")
			if err != nil {
				t.Fatalf("String() of %q does not parse: %q: %v", s, out, err)
			}
			if !Equal(r, again) || String(again) != out {
				t.Fatalf("round trip of %q changed %q to %q", s, out, String(again))
			}
			// The math on what was parsed.
			if len(Subtract(r, r)) != 0 || !Contains(Add(r, r), r) {
				t.Fatalf("r-r or r+r ⊇ r fails for %q", s)
			}
			if _, _, rest, err := AllocatePorts(r, nil, 2); err == nil && Count(Ports(rest)) != Count(Ports(r))-2 && Count(Ports(r)) != math.MaxUint64 {
				t.Fatalf("AllocatePorts lost ports of %q", s)
			}
		}
	})
}

// FuzzMath: the algebra of checkProperties on any two parsed lists.
func FuzzMath(f *testing.F) {
	for i := 0; i+1 < len(fuzzSeeds); i++ {
		f.Add(fuzzSeeds[i], fuzzSeeds[i+1])
	}
	f.Add("cpus:1;ports:[1-5]", "cpus:0.5;ports:[2-3]")
	f.Fuzz(func(t *testing.T, sa, sb string) {
		defer watchdog(sa + "|" + sb)()
		a, err1 := Parse(sa, "*")
		b, err2 := Parse(sb, "k8s")
		if err1 != nil || err2 != nil {
			return
		}
		sum, diff := Add(a, b), Subtract(a, b)
		checkNormal(t, "Add", sum)
		checkNormal(t, "Subtract", diff)
		checkProperties(t, a, b, sum, diff, Contains(a, b))
		want := Flatten(b, "*")
		if taken, rest, err := Allocate(a, want); err == nil && (!Equal(Add(taken, rest), a) || !Equal(Flatten(taken, "*"), want)) {
			t.Fatalf("Allocate(%s, %s): took %s, left %s", String(a), String(want), String(taken), String(rest))
		}
	})
}

// watchdog crashes the fuzz worker, naming the input, when one input takes
// seconds: the fuzzer itself only notices that a worker stopped.
func watchdog(input string) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("input %q has run for 10s", input))
		}
	}()
	return func() { close(done) }
}
