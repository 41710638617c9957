package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Parse reads resources in the syntax of the Mesos agent's --resources:
// "name(role):value" items separated by ';', where the value is a scalar
// ("cpus:4", "mem:4096.5"), ranges ("ports:[31000-32000,33000-33010]") or
// a set ("gpus:{a,b}"), and the role defaults to defaultRole ("" means
// "*"). As in Mesos, spaces inside values are ignored, items of the same
// name and role add up, and input that starts with '[' is the JSON form:
// a list of Resource objects in Mesos' JSON (name, type, scalar, ranges,
// set, role; static reservations).
//
// Reservations are written in the pre-refinement format (role "k8s"),
// which every framework understands; the math treats both formats alike.
func Parse(s, defaultRole string) (Resources, error) {
	if defaultRole == "" {
		defaultRole = "*"
	}
	if why := checkRole(defaultRole); why != "" {
		return nil, fmt.Errorf("bad default role %q: %s", defaultRole, why)
	}
	if t := trimASCII(s); strings.HasPrefix(t, "[") {
		return parseJSON(t, defaultRole)
	}
	var items Resources
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		item = trimASCII(item)
		if item == "" {
			continue
		}
		r, err := parseItem(item, defaultRole)
		if err != nil {
			return nil, err
		}
		items = append(items, r)
	}
	return merge(items)
}

// merge adds up parsed items, refusing one name with two types (which
// Mesos refuses too: "cpus:1;cpus:[1-2]" is a typo, not a resource).
func merge(items Resources) (Resources, error) {
	for i, r := range items {
		for _, p := range items[:i] {
			if p.GetName() == r.GetName() && p.GetType() != r.GetType() {
				return nil, fmt.Errorf("bad resources: %q is given both as %s and as %s; a resource name has one type",
					r.GetName(), p.GetType(), r.GetType())
			}
		}
	}
	return normalized(items, 0), nil
}

func parseItem(item, defaultRole string) (*mesospb.Resource, error) {
	nameRole, value, ok := strings.Cut(item, ":")
	if !ok {
		return nil, fmt.Errorf("bad resource %q: expected name:value, e.g. cpus:4 or ports:[31000-32000]", item)
	}
	if strings.Contains(value, ":") {
		return nil, fmt.Errorf("bad resource %q: more than one ':'; write name:value, e.g. cpus:4", item)
	}
	name, role := trimASCII(nameRole), defaultRole
	if open := strings.IndexByte(nameRole, '('); open >= 0 {
		closing := strings.IndexByte(nameRole, ')')
		if closing < open {
			return nil, fmt.Errorf("bad resource %q: unbalanced '(' in %q; write name(role):value, e.g. cpus(k8s):2", item, nameRole)
		}
		if rest := trimASCII(nameRole[closing+1:]); rest != "" {
			return nil, fmt.Errorf("bad resource %q: unexpected %q after the role; write name(role):value, e.g. cpus(k8s):2", item, rest)
		}
		name, role = trimASCII(nameRole[:open]), trimASCII(nameRole[open+1:closing])
		if role == "" {
			return nil, fmt.Errorf("bad resource %q: empty role in parentheses; write name(role):value, e.g. cpus(k8s):2", item)
		}
	}
	if why := checkName(name); why != "" {
		return nil, fmt.Errorf("bad resource %q: %s", item, why)
	}
	if why := checkRole(role); why != "" {
		return nil, fmt.Errorf("bad resource %q: role %q %s", item, role, why)
	}
	value = removeSpaces(value)
	r := &mesospb.Resource{Name: proto.String(name), Role: proto.String(role)}
	switch {
	case value == "":
		return nil, fmt.Errorf("bad resource %q: no value; write e.g. %s:4", item, name)
	case value[0] == '[':
		rs, err := parseRanges(value)
		if err != nil {
			return nil, fmt.Errorf("bad resource %q: %v", item, err)
		}
		r.Type, r.Ranges = mesospb.Value_RANGES.Enum(), ToRanges(rs)
	case value[0] == '{':
		items, err := parseSet(value)
		if err != nil {
			return nil, fmt.Errorf("bad resource %q: %v", item, err)
		}
		r.Type, r.Set = mesospb.Value_SET.Enum(), &mesospb.Value_Set{Item: items}
	default:
		v, err := parseAmount(value)
		if err != nil {
			return nil, fmt.Errorf("bad resource %q: %v; write e.g. %s:4", item, err, name)
		}
		r.Type, r.Scalar = mesospb.Value_SCALAR.Enum(), &mesospb.Value_Scalar{Value: proto.Float64(v)}
	}
	return r, nil
}

// parseAmount reads a scalar resource value: a decimal number of at least
// 0, kept at Mesos' precision.
func parseAmount(s string) (float64, error) {
	if !isDecimal(s) {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case v < 0:
		return 0, fmt.Errorf("value %q is negative", s)
	case err != nil || v > maxScalar:
		return 0, fmt.Errorf("value %q is too large (at most %s)", s, formatScalar(Round(maxScalar)))
	case v != 0 && Round(v) == 0:
		return 0, fmt.Errorf("value %q is below Mesos' precision of 0.001", s)
	}
	return Round(v), nil
}

// isDecimal accepts what Mesos reads as a number: [+-]digits[.digits]
// [e[+-]digits] (no hex, no underscores, no inf or nan, unlike ParseFloat).
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

// parseRanges reads "[a-b,c-d]" (spaces removed); a single value "c" is
// "c-c". Overlapping ranges are merged, as Mesos does.
func parseRanges(v string) ([]Range, error) {
	if !strings.HasSuffix(v, "]") || strings.ContainsAny(v[1:len(v)-1], "[]") {
		return nil, fmt.Errorf("ranges %q are not written [begin-end, ...], e.g. [31000-32000]", v)
	}
	var out []Range
	for _, part := range strings.Split(v[1:len(v)-1], ",") {
		if part == "" {
			continue
		}
		b, e, isRange := strings.Cut(part, "-")
		if !isRange {
			e = b
		}
		bi, err1 := strconv.ParseUint(b, 10, 64)
		ei, err2 := strconv.ParseUint(e, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("range %q is not begin-end with whole numbers, e.g. 31000-32000", part)
		}
		if bi > ei {
			return nil, fmt.Errorf("range %q ends before it begins", part)
		}
		out = append(out, Range{bi, ei})
	}
	return coalesceInPlace(out), nil
}

// parseSet reads "{a,b}" (spaces removed) for a resource.
func parseSet(v string) ([]string, error) {
	if !strings.HasSuffix(v, "}") || strings.ContainsAny(v[1:len(v)-1], "{}") {
		return nil, fmt.Errorf("set %q is not written {item, ...}, e.g. {gpu0,gpu1}", v)
	}
	var items []string
	for _, x := range strings.Split(v[1:len(v)-1], ",") {
		if x != "" {
			items = append(items, x)
		}
	}
	return setItems(items)
}

// setItems checks the items of a set resource and sorts them. Mesos
// refuses an item given twice.
func setItems(items []string) ([]string, error) {
	for _, x := range items {
		if x == "" || strings.ContainsAny(x, " \t\n\r\v\f;:()[]{},") {
			return nil, fmt.Errorf("set item %q must be a non-empty word without spaces or any of ;:()[]{},", x)
		}
	}
	sorted := slices.Clone(items)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return nil, fmt.Errorf("set item %q is given twice", sorted[i])
		}
	}
	return sorted, nil
}

// asciiSpace is the white space Mesos trims and drops; Unicode spaces
// (U+2008, U+00A0, ...) are part of names and values, as in Mesos.
const asciiSpace = " \t\n\r\v\f"

// trimASCII trims ASCII white space only: strings.TrimSpace would also
// trim Unicode spaces, which removeSpaces keeps, so that a value ending
// in one would not survive a round trip through String.
func trimASCII(s string) string { return strings.Trim(s, asciiSpace) }

// removeSpaces drops ASCII white space, as Mesos drops the spaces in
// values ("[31000 - 32000]" is "[31000-32000]"). Byte by byte: other
// bytes, valid UTF-8 or not, stay as they are.
func removeSpaces(s string) string {
	if strings.IndexAny(s, asciiSpace) < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r', '\v', '\f':
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}

// checkName refuses names that the flag syntax cannot carry back.
func checkName(name string) string {
	if name == "" {
		return "empty name; write name:value, e.g. cpus:4"
	}
	if strings.ContainsAny(name, " \t\n\r\v\f;:()[]{},") {
		return fmt.Sprintf("name %q may not contain spaces or any of ;:()[]{},", name)
	}
	return ""
}

// checkRole applies Mesos' role rules (roles::validate): "*", or
// '/'-separated names that are not "." or "..", do not start with '-' and
// hold no spaces, backslashes or '*'; and nothing the flag syntax uses.
func checkRole(role string) string {
	if role == "*" {
		return ""
	}
	if role == "" {
		return "is empty"
	}
	for _, part := range strings.Split(role, "/") {
		switch {
		case part == "":
			return "has an empty part between '/'"
		case part == "." || part == "..":
			return "may not have . or .. as a part"
		case part[0] == '-':
			return "may not start a part with '-'"
		case strings.ContainsAny(part, " \t\n\r\v\f\\*;:()[]{},"):
			return "may not contain spaces or any of \\*;:()[]{},"
		}
	}
	return ""
}

// The JSON form, as Mesos' protobuf JSON writes a Resource. Pointers tell
// a missing field from a zero one.
type jsonResource struct {
	Name   *string `json:"name"`
	Type   *string `json:"type"`
	Role   *string `json:"role"`
	Scalar *struct {
		Value *float64 `json:"value"`
	} `json:"scalar"`
	Ranges *struct {
		Range []struct {
			Begin *uint64 `json:"begin"`
			End   *uint64 `json:"end"`
		} `json:"range"`
	} `json:"ranges"`
	Set *struct {
		Item []string `json:"item"`
	} `json:"set"`
	Reservations []struct {
		Type string `json:"type"`
		Role string `json:"role"`
	} `json:"reservations"`
}

const jsonExample = `[{"name":"cpus","type":"SCALAR","scalar":{"value":4}}]`

func parseJSON(s, defaultRole string) (Resources, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var list []jsonResource
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("bad resources JSON: %v; expected a list like %s", err, jsonExample)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("bad resources JSON: unexpected data after the list; expected a list like %s", jsonExample)
	}
	items := make(Resources, 0, len(list))
	for i, it := range list {
		r, err := jsonItem(it, defaultRole)
		if err != nil {
			name := ""
			if it.Name != nil {
				name = fmt.Sprintf(" (%q)", *it.Name)
			}
			return nil, fmt.Errorf("bad resources JSON: item %d%s: %v", i, name, err)
		}
		items = append(items, r)
	}
	return merge(items)
}

func jsonItem(it jsonResource, defaultRole string) (*mesospb.Resource, error) {
	if it.Name == nil {
		return nil, errors.New(`"name" is missing`)
	}
	name := *it.Name
	if why := checkName(name); why != "" {
		return nil, errors.New(why)
	}
	role := defaultRole
	if it.Role != nil {
		role = *it.Role
	}
	if len(it.Reservations) > 0 {
		// Static reservations only: dynamic ones are made by frameworks
		// and operators, never on the command line (Mesos refuses them).
		for _, rv := range it.Reservations {
			if rv.Type != "STATIC" {
				return nil, fmt.Errorf("reservation type %q: only STATIC reservations can be given to an agent", rv.Type)
			}
		}
		last := it.Reservations[len(it.Reservations)-1].Role
		if it.Role != nil && *it.Role != last {
			return nil, fmt.Errorf("role %q and reservations for %q disagree; give one of them", *it.Role, last)
		}
		role = last
	}
	if why := checkRole(role); why != "" {
		return nil, fmt.Errorf("role %q %s", role, why)
	}
	r := &mesospb.Resource{Name: proto.String(name), Role: proto.String(role)}
	typ := ""
	if it.Type != nil {
		typ = strings.ToUpper(*it.Type)
	}
	given := 0
	for _, set := range []bool{it.Scalar != nil, it.Ranges != nil, it.Set != nil} {
		if set {
			given++
		}
	}
	switch {
	case typ == "SCALAR" && it.Scalar != nil && given == 1:
		if it.Scalar.Value == nil {
			return nil, errors.New(`"scalar" needs a "value"`)
		}
		v, err := parseAmount(strconv.FormatFloat(*it.Scalar.Value, 'g', -1, 64))
		if err != nil {
			return nil, err
		}
		r.Type, r.Scalar = mesospb.Value_SCALAR.Enum(), &mesospb.Value_Scalar{Value: proto.Float64(v)}
	case typ == "RANGES" && it.Ranges != nil && given == 1:
		rs := make([]Range, 0, len(it.Ranges.Range))
		for _, x := range it.Ranges.Range {
			if x.Begin == nil || x.End == nil {
				return nil, errors.New(`each range needs "begin" and "end"`)
			}
			if *x.Begin > *x.End {
				return nil, fmt.Errorf("range %d-%d ends before it begins", *x.Begin, *x.End)
			}
			rs = append(rs, Range{*x.Begin, *x.End})
		}
		r.Type, r.Ranges = mesospb.Value_RANGES.Enum(), ToRanges(coalesceInPlace(rs))
	case typ == "SET" && it.Set != nil && given == 1:
		items, err := setItems(it.Set.Item)
		if err != nil {
			return nil, err
		}
		r.Type, r.Set = mesospb.Value_SET.Enum(), &mesospb.Value_Set{Item: items}
	case typ != "SCALAR" && typ != "RANGES" && typ != "SET":
		return nil, fmt.Errorf(`"type" is %q; use SCALAR, RANGES or SET`, typ)
	default:
		return nil, fmt.Errorf(`type %s needs exactly the field %q with its value`, typ, strings.ToLower(typ))
	}
	return r, nil
}

// ParseAttributes reads attributes in the syntax of the Mesos agent's
// --attributes: "name:value" items separated by ';'. As in Mesos, spaces
// in values are dropped, and a value that is a number of at least 0 is a
// SCALAR, "[..]" is RANGES, "{..}" a SET and anything else TEXT (a
// negative number too). Only the first ':' separates: "url:http://x" is
// the TEXT "http://x".
func ParseAttributes(s string) ([]*mesospb.Attribute, error) {
	var out []*mesospb.Attribute
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		item = trimASCII(item)
		if item == "" {
			continue
		}
		a, err := parseAttribute(item)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func parseAttribute(item string) (*mesospb.Attribute, error) {
	name, value, ok := strings.Cut(item, ":")
	name, value = trimASCII(name), removeSpaces(value)
	switch {
	case !ok:
		return nil, fmt.Errorf("bad attribute %q: expected name:value, e.g. rack:r1", item)
	case name == "":
		return nil, fmt.Errorf("bad attribute %q: empty name; write name:value, e.g. rack:r1", item)
	case value == "":
		return nil, fmt.Errorf("bad attribute %q: empty value; write name:value, e.g. rack:r1", item)
	case !bracketsMatch(value):
		return nil, fmt.Errorf("bad attribute %q: unbalanced brackets in %q", item, value)
	}
	a := &mesospb.Attribute{Name: proto.String(name)}
	switch {
	case value[0] == '[':
		rs, err := parseRanges(value)
		if err != nil {
			return nil, fmt.Errorf("bad attribute %q: %v", item, err)
		}
		a.Type, a.Ranges = mesospb.Value_RANGES.Enum(), ToRanges(rs)
	case strings.IndexByte(value, '[') >= 0:
		return nil, fmt.Errorf("bad attribute %q: '[' may only start ranges, e.g. ports:[1-5]", item)
	case value[0] == '{':
		if !strings.HasSuffix(value, "}") || strings.ContainsAny(value[1:len(value)-1], "{}") {
			return nil, fmt.Errorf("bad attribute %q: set %q is not written {item, ...}, e.g. {a,b}", item, value)
		}
		var items []string
		for _, x := range strings.Split(value[1:len(value)-1], ",") {
			if x != "" {
				items = append(items, x)
			}
		}
		a.Type, a.Set = mesospb.Value_SET.Enum(), &mesospb.Value_Set{Item: items}
	case strings.IndexByte(value, '{') >= 0:
		return nil, fmt.Errorf("bad attribute %q: '{' may only start a set, e.g. tags:{a,b}", item)
	default:
		if isDecimal(value) {
			v, err := strconv.ParseFloat(value, 64)
			if err == nil && v >= 0 {
				if v != 0 && v < 0x1p-1022 {
					return nil, fmt.Errorf("bad attribute %q: %q is too small a number", item, value)
				}
				a.Type, a.Scalar = mesospb.Value_SCALAR.Enum(), &mesospb.Value_Scalar{Value: proto.Float64(v)}
				return a, nil
			}
			// Negative, or beyond float64: Mesos keeps such values as text.
		}
		a.Type, a.Text = mesospb.Value_TEXT.Enum(), &mesospb.Value_Text{Value: proto.String(value)}
	}
	return a, nil
}

// bracketsMatch is Mesos' checkBracketsMatching for (), [] and {}: each
// kind opens before it closes and all are closed (nesting across kinds is
// not checked, as in Mesos).
func bracketsMatch(s string) bool {
	for _, p := range [3][2]byte{{'(', ')'}, {'[', ']'}, {'{', '}'}} {
		depth := 0
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case p[0]:
				depth++
			case p[1]:
				if depth--; depth < 0 {
					return false
				}
			}
		}
		if depth != 0 {
			return false
		}
	}
	return true
}
