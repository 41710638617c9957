package resources

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, role, want string
	}{
		{"cpus:4;mem:4096;disk:10000;ports:[31000-32000]", "", "cpus(*):4; mem(*):4096; disk(*):10000; ports(*):[31000-32000]"},
		{"cpus(k8s):2", "", "cpus(k8s):2"},
		{"mem:4096.5", "*", "mem(*):4096.5"},
		// Same name and role add up; ranges and sets are normalized.
		{"cpus(k8s):2; cpus:1; cpus(k8s):0.5; ports(k8s):[1-5, 3-10, 12]; gpus:{c,a, b}", "*",
			"cpus(k8s):2.5; cpus(*):1; ports(k8s):[1-10, 12-12]; gpus(*):{a, b, c}"},
		{"ports:[31000-31010];ports:[31005-31020,100-200]", "", "ports(*):[100-200, 31000-31020]"},
		{"cpus:0.1;cpus:0.2", "", "cpus(*):0.3"}, // not 0.30000000000000004
		{"cpus:0.0005", "", "cpus(*):0.001"},     // Mesos' rounding
		// The default role, and "*" overriding it.
		{"cpus:1;mem(*):2", "k8s", "cpus(k8s):1; mem(*):2"},
		{"cpus(eng/web):1", "", "cpus(eng/web):1"},
		// Spaces inside values are dropped, as Mesos does; newlines separate.
		{" cpus : 4 ; ports : [ 31000 - 32000 , 33000-33010 ] \n mem: 1 e3 ", "", "cpus(*):4; ports(*):[31000-32000, 33000-33010]; mem(*):1000"},
		{"cpus(k8s ):+2.50", "", "cpus(k8s):2.5"},
		// Empty amounts vanish.
		{"cpus:0;ports:[];gpus:{}", "", ""},
		{";;", "", ""},
		{"", "", ""},
		{"ports:[0-18446744073709551615]", "", "ports(*):[0-18446744073709551615]"},
		// The JSON form.
		{`[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},
		   {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31010},{"begin":31011,"end":31020}]},"role":"web"},
		   {"name":"gpus","type":"SET","set":{"item":["b","a"]},"reservations":[{"type":"STATIC","role":"ml"}]},
		   {"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}]`, "",
			"cpus(*):2.5; ports(web):[31000-31020]; gpus(ml):{a, b}"},
		{` [{"name":"mem","type":"scalar","scalar":{"value":64}}]`, "k8s", "mem(k8s):64"},
		{`[]`, "", ""},
	} {
		got, err := Parse(tc.in, tc.role)
		if err != nil {
			t.Errorf("Parse(%q, %q): %v", tc.in, tc.role, err)
			continue
		}
		if s := String(got); s != tc.want {
			t.Errorf("Parse(%q, %q) = %s, want %s", tc.in, tc.role, s, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// Whole messages: what was wrong, quoted, and what to write.
		{"cpus:four", `bad resource "cpus:four": value "four" is not a number; write e.g. cpus:4`},
		{"cpus:4;mem", `bad resource "mem": expected name:value, e.g. cpus:4 or ports:[31000-32000]`},
		{"mem:-1", `bad resource "mem:-1": value "-1" is negative; write e.g. mem:4`},
		{"ports:[5-1]", `bad resource "ports:[5-1]": range "5-1" ends before it begins`},
		{"ports:[1-x]", `bad resource "ports:[1-x]": range "1-x" is not begin-end with whole numbers, e.g. 31000-32000`},
		{":4", `bad resource ":4": empty name; write name:value, e.g. cpus:4`},
		{"cpus:1;cpus:[1-2]", `bad resources: "cpus" is given both as SCALAR and as RANGES; a resource name has one type`},
		{`[{"name":"x"}]`, `bad resources JSON: item 0 ("x"): "type" is ""; use SCALAR, RANGES or SET`},
		// Parts of messages.
		{"cpus(:1", `unbalanced '(' in "cpus("`},
		{"cpus)(:1", `unbalanced '('`},
		{"cpus():1", `empty role in parentheses`},
		{"cpus(k8s)x:1", `unexpected "x" after the role`},
		{"cpus(a b):1", `role "a b" may not contain spaces`},
		{"cpus(-a):1", `role "-a" may not start a part with '-'`},
		{"cpus(a//b):1", `role "a//b" has an empty part`},
		{"cpus(..):1", `role ".." may not have . or ..`},
		{"cpus(a*):1", `role "a*" may not contain`},
		{"cpu s:1", `name "cpu s" may not contain spaces`},
		{"cp,us:1", `name "cp,us" may not contain`},
		{"cpus:1:2", `more than one ':'`},
		{"cpus:", `no value; write e.g. cpus:4`},
		{"cpus:nan", `value "nan" is not a number`},
		{"cpus:inf", `value "inf" is not a number`},
		{"cpus:0x10", `value "0x10" is not a number`},
		{"cpus:1_000", `value "1_000" is not a number`},
		{"cpus:1e400", `value "1e400" is too large`},
		{"mem:1e13", `value "1e13" is too large (at most 9007199254740.992)`},
		{"cpus:0.0001", `value "0.0001" is below Mesos' precision of 0.001`},
		{"ports:[1-2", `ranges "[1-2" are not written [begin-end, ...]`},
		{"ports:[1-2]]", `are not written`},
		{"ports:[[1-2]]", `are not written`},
		{"ports:[1-2-3]", `range "1-2-3" is not begin-end`},
		{"ports:[-1-2]", `is not begin-end`},
		{"gpus:{a,b", `set "{a,b" is not written {item, ...}`},
		{"gpus:{a,a}", `set item "a" is given twice`},
		{"gpus:{a(b)}", `set item "a(b)" must be a non-empty word`},
		{"cpus:1", ""}, // control
		{`[{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}]`, `item 0 ("cpus"): value "-1" is negative`},
		{`[{"name":"cpus","type":"SCALAR"}]`, `type SCALAR needs exactly the field "scalar" with its value`},
		{`[{"name":"cpus","type":"SCALAR","scalar":{"value":1},"ranges":{}}]`, `needs exactly the field "scalar"`},
		{`[{"name":"cpus","type":"SCALAR","scalar":{}}]`, `"scalar" needs a "value"`},
		{`[{"type":"SCALAR","scalar":{"value":1}}]`, `item 0: "name" is missing`},
		{`[{"name":"","type":"SCALAR","scalar":{"value":1}}]`, `item 0 (""): empty name`},
		{`[{"name":"p","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]`, `range 5-1 ends before it begins`},
		{`[{"name":"p","type":"RANGES","ranges":{"range":[{"begin":5}]}}]`, `each range needs "begin" and "end"`},
		{`[{"name":"g","type":"SET","set":{"item":["a b"]}}]`, `set item "a b" must be a non-empty word`},
		{`[{"name":"d","type":"SCALAR","scalar":{"value":1},"disk":{}}]`, `bad resources JSON: json: unknown field "disk"; expected a list like [{"name":"cpus"`},
		{`[{"name":"c","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"DYNAMIC","role":"a"}]}]`, `only STATIC reservations`},
		{`[{"name":"c","type":"SCALAR","scalar":{"value":1},"role":"b","reservations":[{"type":"STATIC","role":"a"}]}]`, `role "b" and reservations for "a" disagree`},
		{`[{"name":"c","type":"SCALAR","scalar":{"value":1},"role":"a b"}]`, `role "a b" may not contain spaces`},
		{`[{"name":"c","type":"TEXT","text":{"value":"x"}}]`, `unknown field "text"`},
		{`[`, `bad resources JSON: unexpected EOF`},
		{`[] x`, `unexpected data after the list`},
		{`[{"name":"c","type":"SCALAR","scalar":{"value":1}},{"name":"c","type":"SET","set":{"item":["a"]}}]`, `"c" is given both as SCALAR and as SET`},
	} {
		_, err := Parse(tc.in, "*")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.in, err)
		case tc.want == "":
		case err == nil:
			t.Errorf("Parse(%q) succeeded, want error %q", tc.in, tc.want)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("Parse(%q):\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
	if _, err := Parse("cpus:1", "a b"); err == nil || err.Error() != `bad default role "a b": may not contain spaces or any of \*;:()[]{},` {
		t.Errorf("bad default role: %v", err)
	}
}

// The flag syntax writes reservations in the pre-refinement format; the
// same reservation in the post-refinement format is the same resource.
func TestParseReservationFormats(t *testing.T) {
	parsed := mustParse(t, "cpus(k8s):2")
	post := &mesospb.Resource{Name: proto.String("cpus"), Type: mesospb.Value_SCALAR.Enum(),
		Scalar:       &mesospb.Value_Scalar{Value: proto.Float64(2)},
		Reservations: []*mesospb.Resource_ReservationInfo{{Type: mesospb.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String("k8s")}}}
	if parsed[0].GetRole() != "k8s" || len(parsed[0].Reservations) != 0 {
		t.Fatalf("parsed %v", parsed[0])
	}
	if !Equal(parsed, Resources{post}) {
		t.Fatalf("pre- and post-refinement static reservations differ")
	}
	if got := String(Add(parsed, Resources{post})); got != "cpus(k8s):4" {
		t.Fatalf("added: %s", got)
	}
}

func TestParseAttributes(t *testing.T) {
	as, err := ParseAttributes("rack:r1;zone:a;level:2;ports:[1-5, 3-7];tags:{x, y};url:http://h:80/p;neg:-1;ver:1.2.3;big:1e999;\n zero:0 ;sp:a b")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ   mesospb.Value_Type
		value string
	}{
		{mesospb.Value_TEXT, "r1"}, {mesospb.Value_TEXT, "a"}, {mesospb.Value_SCALAR, "2"},
		{mesospb.Value_RANGES, "[1-7]"}, {mesospb.Value_SET, "{x, y}"}, {mesospb.Value_TEXT, "http://h:80/p"},
		{mesospb.Value_TEXT, "-1"}, {mesospb.Value_TEXT, "1.2.3"}, {mesospb.Value_TEXT, "1e999"},
		{mesospb.Value_SCALAR, "0"}, {mesospb.Value_TEXT, "ab"},
	}
	if len(as) != len(want) {
		t.Fatalf("got %d attributes: %v", len(as), as)
	}
	for i, a := range as {
		if a.GetType() != want[i].typ || AttributeString(a) != want[i].value {
			t.Errorf("%s: %v %q, want %v %q", a.GetName(), a.GetType(), AttributeString(a), want[i].typ, want[i].value)
		}
	}
	const s = "rack:r1;zone:a;level:2;ports:[1-7];tags:{x, y};url:http://h:80/p;neg:-1;ver:1.2.3;big:1e999;zero:0;sp:ab"
	if got := AttributesString(as); got != s {
		t.Errorf("AttributesString = %s\nwant %s", got, s)
	}
	again, err := ParseAttributes(s)
	if err != nil || len(again) != len(as) {
		t.Fatalf("re-parse: %v", err)
	}
	for i := range as {
		if !proto.Equal(as[i], again[i]) {
			t.Errorf("round trip changed %v to %v", as[i], again[i])
		}
	}

	for _, tc := range []struct{ in, want string }{
		{"rack", `bad attribute "rack": expected name:value, e.g. rack:r1`},
		{"rack:r1;:x", `bad attribute ":x": empty name; write name:value, e.g. rack:r1`},
		{"rack: ", `bad attribute "rack:": empty value; write name:value, e.g. rack:r1`},
		{"a:[1-2", `bad attribute "a:[1-2": unbalanced brackets in "[1-2"`},
		{"a:(x", `unbalanced brackets`},
		{"a:x)(", `unbalanced brackets`},
		{"a:x[1]", `bad attribute "a:x[1]": '[' may only start ranges, e.g. ports:[1-5]`},
		{"a:x{1}", `'{' may only start a set`},
		{"a:{x}y", `set "{x}y" is not written`},
		{"a:[2-1]", `range "2-1" ends before it begins`},
		{"a:1e-310", `"1e-310" is too small a number`},
	} {
		_, err := ParseAttributes(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAttributes(%q): got %v, want %s", tc.in, err, tc.want)
		}
	}
}
