package master

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// parseTestResources reads "cpus:4;mem:4096;ports:[31000-32000]" (role "*").
func parseTestResources(s string) (Resources, error) {
	var out Resources
	for _, item := range strings.Split(s, ";") {
		name, val, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("bad resource %q", item)
		}
		r := &mesospb.Resource{Name: proto.String(name), Role: proto.String("*")}
		if strings.HasPrefix(val, "[") {
			r.Type = mesospb.Value_RANGES.Enum()
			r.Ranges = &mesospb.Value_Ranges{}
			for _, rg := range strings.Split(strings.Trim(val, "[]"), ",") {
				b, e, _ := strings.Cut(strings.TrimSpace(rg), "-")
				bi, err1 := strconv.ParseUint(b, 10, 64)
				ei, err2 := strconv.ParseUint(e, 10, 64)
				if err1 != nil || err2 != nil {
					return nil, fmt.Errorf("bad range %q", rg)
				}
				r.Ranges.Range = append(r.Ranges.Range, &mesospb.Value_Range{Begin: proto.Uint64(bi), End: proto.Uint64(ei)})
			}
		} else {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return nil, err
			}
			r.Type = mesospb.Value_SCALAR.Enum()
			r.Scalar = &mesospb.Value_Scalar{Value: proto.Float64(v)}
		}
		out = append(out, r)
	}
	return out, nil
}
