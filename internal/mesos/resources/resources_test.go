package resources

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

func mustParse(t testing.TB, s string) Resources {
	t.Helper()
	r, err := Parse(s, "*")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParse(t *testing.T) {
	r := mustParse(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]")
	if Scalar(r, "cpus") != 4 || Scalar(r, "mem") != 4096 || Scalar(r, "disk") != 10000 {
		t.Fatalf("scalars: %s", String(r))
	}
	if got := RangesString(Ports(r)); got != "[31000-32000]" {
		t.Fatalf("ports %s", got)
	}
	r = mustParse(t, "cpus(k8s):2; cpus:1; cpus(k8s):0.5; ports(k8s):[1-5, 3-10, 12]; gpus:{a,c,b}")
	if got := String(r); got != "cpus(k8s):2.5; cpus(*):1; ports(k8s):[1-10, 12-12]; gpus(*):{a,b,c}" {
		t.Fatalf("got %s", got)
	}
	if got := String(AllocatableTo(r, "other")); got != "cpus(*):1; gpus(*):{a,b,c}" {
		t.Fatalf("allocatable to another role: %s", got)
	}
	json := `[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31010}]},"role":"web"}]`
	if got := String(mustParse(t, json)); got != "cpus(*):2; ports(web):[31000-31010]" {
		t.Fatalf("JSON form: %s", got)
	}
	for in, want := range map[string]string{
		"cpus:four":      `bad resource "cpus:four": value "four" is not a number; write e.g. cpus:4`,
		"cpus":           `bad resource "cpus": expected name:value`,
		"mem:-1":         `mem cannot be negative`,
		"ports:[5-1]":    `range "5-1" ends before it begins`,
		"ports:[1-x]":    `is not begin-end with whole numbers`,
		"cpus(:1":        `unbalanced '('`,
		":4":             `empty name`,
		`[{"name":"x"}]`: `has type ""`,
	} {
		_, err := Parse(in, "*")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func TestParseAttributes(t *testing.T) {
	as, err := ParseAttributes("rack:r1;zone:a;level:2;ports:[1-5];tags:{x,y}")
	if err != nil {
		t.Fatal(err)
	}
	want := []mesospb.Value_Type{mesospb.Value_TEXT, mesospb.Value_TEXT, mesospb.Value_SCALAR, mesospb.Value_RANGES, mesospb.Value_SET}
	for i, a := range as {
		if a.GetType() != want[i] {
			t.Errorf("%s: %v, want %v", a.GetName(), a.GetType(), want[i])
		}
	}
	if AttributeString(as[2]) != "2" || AttributeString(as[3]) != "[1-5]" {
		t.Errorf("rendering %s %s", AttributeString(as[2]), AttributeString(as[3]))
	}
	if _, err := ParseAttributes("rack"); err == nil || !strings.Contains(err.Error(), `bad attribute "rack"`) {
		t.Errorf("got %v", err)
	}
}

func TestMath(t *testing.T) {
	a := mustParse(t, "cpus:4;mem:4096;ports:[31000-32000]")
	b := mustParse(t, "cpus:0.1;mem:32;ports:[31000-31000,31500-31600]")
	d := Subtract(a, b)
	if got := String(d); got != "cpus(*):3.9; mem(*):4064; ports(*):[31001-31499, 31601-32000]" {
		t.Fatalf("subtract: %s", got)
	}
	if !Contains(a, b) || Contains(b, a) || !Contains(a, d) || !Equal(Add(d, b), a) {
		t.Fatal("contains/equal")
	}
	// Allocation roles keep resources apart.
	if Contains(WithAllocationRole(a, "x"), a) {
		t.Fatal("allocated resources are not unallocated ones")
	}
	if Scalar(Flatten(mustParse(t, "cpus(a):1;cpus(b):2"), "*"), "cpus") != 3 || len(Flatten(mustParse(t, "cpus(a):1;cpus(b):2"), "*")) != 1 {
		t.Fatal("flatten")
	}
	// 0.1 added ten times is exactly 1 (Mesos' fixed point).
	var sum Resources
	for i := 0; i < 10; i++ {
		sum = Add(sum, mustParse(t, "cpus:0.1"))
	}
	if Scalar(sum, "cpus") != 1 {
		t.Fatalf("fixed point: %v", Scalar(sum, "cpus"))
	}
}

func TestAllocatePorts(t *testing.T) {
	offer := mustParse(t, "cpus:1;ports:[31000-31002,31005-31005]")
	ports, rest, err := AllocatePorts(offer, []uint64{31005}, 2)
	if err != nil || len(ports) != 3 || ports[0] != 31005 || ports[1] != 31000 || ports[2] != 31001 {
		t.Fatalf("%v %v", ports, err)
	}
	if got := RangesString(Ports(rest)); got != "[31002-31002]" || Scalar(rest, "cpus") != 1 {
		t.Fatalf("rest %s", String(rest))
	}
	if _, _, err := AllocatePorts(offer, []uint64{80}, 0); err == nil || err.Error() != "port 80 is not in the offered ranges [31000-31002, 31005-31005]" {
		t.Fatalf("got %v", err)
	}
	if _, _, err := AllocatePorts(offer, nil, 5); err == nil {
		t.Fatal("5 ports from 4")
	}
}

func randomResources(rng *rand.Rand) Resources {
	var out Resources
	roles := []string{"*", "k8s"}
	for _, name := range []string{"cpus", "mem", "disk"} {
		if rng.Intn(3) > 0 {
			out = append(out, ScalarResource(name, float64(rng.Intn(10000))/1000, roles[rng.Intn(2)]))
		}
	}
	if rng.Intn(2) > 0 {
		var rs []Range
		for i := 0; i < 1+rng.Intn(4); i++ {
			b := uint64(31000 + rng.Intn(1000))
			rs = append(rs, Range{b, b + uint64(rng.Intn(20))})
		}
		out = append(out, RangesResource("ports", rs, roles[rng.Intn(2)]))
	}
	return out
}

// Properties: subtract after add is identity; a+b contains both; what is
// allocated is in the offer, never twice.
func TestProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 2000; i++ {
		a, b := randomResources(rng), randomResources(rng)
		// Ranges are sets: the identity holds for ports a does not have
		// already (Mesos never offers a port twice).
		for _, r := range b {
			if r.GetType() == mesospb.Value_RANGES {
				r.Ranges = ToRanges(Minus(FromRanges(r.GetRanges()), Ports(a)))
			}
		}
		sum := Add(a, b)
		if !Equal(Subtract(sum, b), a) {
			t.Fatalf("(a+b)-b != a\na=%s\nb=%s\ngot %s", String(a), String(b), String(Subtract(sum, b)))
		}
		if !Contains(sum, a) || !Contains(sum, b) {
			t.Fatalf("a+b does not contain a and b")
		}
		if Contains(a, b) && !Equal(Add(Subtract(a, b), b), a) {
			t.Fatalf("b ⊆ a but (a-b)+b != a")
		}
		free := Ports(a)
		if n := int(Count(free)); n > 0 {
			want := rng.Intn(n + 1)
			ports, rest, err := AllocatePorts(a, nil, want)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			for _, p := range ports {
				if seen[p] || !InRanges(p, free) || InRanges(p, Ports(rest)) {
					t.Fatalf("port %d allocated twice, outside the offer or still free", p)
				}
				seen[p] = true
			}
			if Count(Ports(rest))+uint64(len(ports)) != Count(free) {
				t.Fatalf("ports lost")
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"cpus:4;mem:4096;disk:10000;ports:[31000-32000]", "cpus(k8s):2", "gpus:{a,b}", "ports:[1-2,5]", `[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]`, "rack:r1;zone:a;level:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseAttributes(s)
		r, err := Parse(s, "*")
		if err != nil {
			return
		}
		again, err := Parse(String(r), "*")
		if err != nil {
			t.Fatalf("String() of %q does not parse: %q: %v", s, String(r), err)
		}
		if !Equal(r, again) {
			t.Fatalf("round trip changed %q: %q vs %q", s, String(r), String(again))
		}
	})
}

func BenchmarkAddSubtractContains(b *testing.B) {
	agent := mustParse(b, "cpus:8;mem:32768;disk:100000;ports:[31000-32000]")
	task := mustParse(b, "cpus:0.5;mem:512;ports:[31005-31005]")
	for i := 0; i < b.N; i++ {
		r := Subtract(agent, task)
		if !Contains(agent, task) {
			b.Fatal("contains")
		}
		r = Add(r, task)
		_ = r
	}
}
