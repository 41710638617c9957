package resources

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Parse reads the agent's --resources: "name(role):value" items separated
// by ';' where value is a scalar (4, 4096.5), ranges ([31000-32000,
// 33000-33010]) or a set ({a,b}); the role defaults to defaultRole ("*").
// The JSON-array form Mesos also accepts works too. Items of the same name
// and role add up.
func Parse(s, defaultRole string) (Resources, error) {
	if defaultRole == "" {
		defaultRole = "*"
	}
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "[") {
		return parseJSON(t, defaultRole)
	}
	var out Resources
	for _, item := range strings.Split(t, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, err := parseItem(item, defaultRole)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return Add(nil, out), nil
}

func parseItem(item, defaultRole string) (*mesospb.Resource, error) {
	nameRole, value, ok := strings.Cut(item, ":")
	if !ok {
		return nil, errorf("bad resource %q: expected name:value, e.g. cpus:4 or ports:[31000-32000]", item)
	}
	name, role := strings.TrimSpace(nameRole), defaultRole
	if i := strings.IndexByte(name, '('); i >= 0 {
		if !strings.HasSuffix(name, ")") {
			return nil, errorf("bad resource %q: unbalanced '(' in %q; write name(role):value, e.g. cpus(k8s):2", item, nameRole)
		}
		role = strings.TrimSpace(name[i+1 : len(name)-1])
		name = strings.TrimSpace(name[:i])
		if role == "" {
			return nil, errorf("bad resource %q: empty role in parentheses", item)
		}
	}
	if err := checkName(name, role); err != nil {
		return nil, errorf("bad resource %q: %v", item, err)
	}
	value = strings.TrimSpace(value)
	switch {
	case strings.HasPrefix(value, "["):
		rs, err := parseRanges(value)
		if err != nil {
			return nil, errorf("bad resource %q: %v", item, err)
		}
		return RangesResource(name, rs, role), nil
	case strings.HasPrefix(value, "{"):
		if !strings.HasSuffix(value, "}") {
			return nil, errorf("bad resource %q: set %q lacks its closing '}'", item, value)
		}
		var items []string
		for _, x := range strings.Split(value[1:len(value)-1], ",") {
			if x = strings.TrimSpace(x); x != "" {
				items = append(items, x)
			}
		}
		return SetResource(name, items, role), nil
	default:
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errorf("bad resource %q: value %q is not a number; write e.g. %s:4", item, value, name)
		}
		if v < 0 {
			return nil, errorf("bad resource %q: %s cannot be negative", item, name)
		}
		return ScalarResource(name, v, role), nil
	}
}

// parseRanges reads "[a-b, c-d]" (a single value "c" is "c-c").
func parseRanges(v string) ([]Range, error) {
	if !strings.HasSuffix(v, "]") {
		return nil, errorf("ranges %q lack their closing ']'", v)
	}
	var out []Range
	for _, part := range strings.Split(v[1:len(v)-1], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		b, e, isRange := strings.Cut(part, "-")
		if !isRange {
			e = b
		}
		bi, err1 := strconv.ParseUint(strings.TrimSpace(b), 10, 64)
		ei, err2 := strconv.ParseUint(strings.TrimSpace(e), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, errorf("range %q is not begin-end with whole numbers", part)
		}
		if bi > ei {
			return nil, errorf("range %q ends before it begins", part)
		}
		out = append(out, Range{bi, ei})
	}
	return Coalesce(out), nil
}

type jsonResource struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Role   string `json:"role"`
	Scalar *struct {
		Value float64 `json:"value"`
	} `json:"scalar"`
	Ranges *struct {
		Range []struct {
			Begin uint64 `json:"begin"`
			End   uint64 `json:"end"`
		} `json:"range"`
	} `json:"ranges"`
	Set *struct {
		Item []string `json:"item"`
	} `json:"set"`
}

func parseJSON(s, defaultRole string) (Resources, error) {
	var items []jsonResource
	if err := json.Unmarshal([]byte(s), &items); err != nil {
		return nil, errorf("bad --resources JSON: %v; expected a list like [{\"name\":\"cpus\",\"type\":\"SCALAR\",\"scalar\":{\"value\":4}}]", err)
	}
	var out Resources
	for i, it := range items {
		role := it.Role
		if role == "" {
			role = defaultRole
		}
		if err := checkName(it.Name, role); err != nil {
			return nil, errorf("bad --resources JSON: item %d: %v", i, err)
		}
		switch strings.ToUpper(it.Type) {
		case "SCALAR":
			if it.Scalar == nil || it.Scalar.Value < 0 {
				return nil, errorf("bad --resources JSON: %s needs a scalar value of at least 0", it.Name)
			}
			out = append(out, ScalarResource(it.Name, it.Scalar.Value, role))
		case "RANGES":
			if it.Ranges == nil {
				return nil, errorf("bad --resources JSON: %s needs ranges", it.Name)
			}
			var rs []Range
			for _, r := range it.Ranges.Range {
				if r.Begin > r.End {
					return nil, errorf("bad --resources JSON: %s range %d-%d ends before it begins", it.Name, r.Begin, r.End)
				}
				rs = append(rs, Range{r.Begin, r.End})
			}
			out = append(out, RangesResource(it.Name, rs, role))
		case "SET":
			if it.Set == nil {
				return nil, errorf("bad --resources JSON: %s needs a set", it.Name)
			}
			out = append(out, SetResource(it.Name, it.Set.Item, role))
		default:
			return nil, errorf("bad --resources JSON: %s has type %q; use SCALAR, RANGES or SET", it.Name, it.Type)
		}
	}
	return Add(nil, out), nil
}

// ParseAttributes reads the agent's --attributes: "name:value" items
// separated by ';'. As in Mesos, a value that parses as a number is a
// SCALAR, "[..]" is RANGES, "{..}" is a SET, anything else TEXT.
func ParseAttributes(s string) ([]*mesospb.Attribute, error) {
	var out []*mesospb.Attribute
	for _, item := range strings.Split(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return nil, errorf("bad attribute %q: expected name:value, e.g. rack:r1", item)
		}
		a := &mesospb.Attribute{Name: proto.String(name)}
		switch {
		case strings.HasPrefix(value, "["):
			rs, err := parseRanges(value)
			if err != nil {
				return nil, errorf("bad attribute %q: %v", item, err)
			}
			a.Type, a.Ranges = mesospb.Value_RANGES.Enum(), ToRanges(rs)
		case strings.HasPrefix(value, "{") && strings.HasSuffix(value, "}"):
			var items []string
			for _, x := range strings.Split(value[1:len(value)-1], ",") {
				if x = strings.TrimSpace(x); x != "" {
					items = append(items, x)
				}
			}
			a.Type, a.Set = mesospb.Value_SET.Enum(), &mesospb.Value_Set{Item: items}
		default:
			if v, err := strconv.ParseFloat(value, 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
				a.Type, a.Scalar = mesospb.Value_SCALAR.Enum(), &mesospb.Value_Scalar{Value: proto.Float64(v)}
			} else {
				if value == "" {
					return nil, errorf("bad attribute %q: empty value", item)
				}
				a.Type, a.Text = mesospb.Value_TEXT.Enum(), &mesospb.Value_Text{Value: proto.String(value)}
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// AttributeString renders an attribute's value as Mesos does.
func AttributeString(a *mesospb.Attribute) string {
	switch a.GetType() {
	case mesospb.Value_SCALAR:
		return strconv.FormatFloat(a.GetScalar().GetValue(), 'f', -1, 64)
	case mesospb.Value_RANGES:
		return RangesString(FromRanges(a.GetRanges()))
	case mesospb.Value_SET:
		return "{" + strings.Join(a.GetSet().GetItem(), ",") + "}"
	case mesospb.Value_TEXT:
		return a.GetText().GetValue()
	}
	return ""
}

// checkName refuses names and roles that cannot be written back in the
// flag syntax (Mesos' role rules are stricter still).
func checkName(name, role string) error {
	const bad = " \t\r\n;:()[]{},"
	if name == "" {
		return errorf("empty name")
	}
	if strings.ContainsAny(name, bad) {
		return errorf("%q is not a resource name (no spaces or ;:()[]{},)", name)
	}
	if role == "" || strings.ContainsAny(role, bad) || role == "." || role == ".." {
		return errorf("%q is not a role name", role)
	}
	return nil
}
