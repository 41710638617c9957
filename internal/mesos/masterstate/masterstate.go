// Package masterstate reads the Mesos master's /slaves endpoint (the
// shape Apache Mesos 1.11 serves, which km's built-in master copies). The
// v1 scheduler API tells a framework about agents only through offers; a
// framework that has suppressed its offers hears of no new agent, so km's
// scheduler reads this list to keep one Node per agent.
package masterstate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

// Agent is one registered agent.
type Agent struct {
	ID       string
	Hostname string
	// IP is taken from the agent's libprocess PID, slave(1)@IP:PORT.
	IP         string
	Port       int
	Active     bool
	Attributes []*mesospb.Attribute
	// Resources are the agent's total (unreserved and reserved alike).
	Resources resources.Resources
}

// MaxBody bounds what Parse reads: /slaves of 5,000 agents is ~20 MiB.
const MaxBody = 64 << 20

type slavesJSON struct {
	Slaves []struct {
		ID         string                     `json:"id"`
		Hostname   string                     `json:"hostname"`
		Port       int                        `json:"port"`
		PID        string                     `json:"pid"`
		Active     bool                       `json:"active"`
		Attributes map[string]json.RawMessage `json:"attributes"`
		Resources  map[string]json.RawMessage `json:"resources"`
	} `json:"slaves"`
}

// Parse reads a /slaves (or /state) body.
func Parse(r io.Reader) ([]Agent, error) {
	var v slavesJSON
	dec := json.NewDecoder(io.LimitReader(r, MaxBody))
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("the master's agent list is not the JSON Mesos serves: %v", err)
	}
	out := make([]Agent, 0, len(v.Slaves))
	for _, s := range v.Slaves {
		if s.ID == "" {
			return nil, fmt.Errorf("the master lists an agent without an id")
		}
		a := Agent{ID: s.ID, Hostname: s.Hostname, Port: s.Port, Active: s.Active}
		if at := strings.LastIndexByte(s.PID, '@'); at >= 0 {
			if host, port, err := net.SplitHostPort(s.PID[at+1:]); err == nil {
				a.IP = host
				if p, err := strconv.Atoi(port); err == nil && a.Port == 0 {
					a.Port = p
				}
			}
		}
		attrs, err := flagString(s.Attributes)
		if err != nil {
			return nil, fmt.Errorf("agent %s: attributes: %v", s.ID, err)
		}
		if attrs != "" {
			if a.Attributes, err = resources.ParseAttributes(attrs); err != nil {
				return nil, fmt.Errorf("agent %s: attributes: %v", s.ID, err)
			}
		}
		res, err := flagString(s.Resources)
		if err != nil {
			return nil, fmt.Errorf("agent %s: resources: %v", s.ID, err)
		}
		if a.Resources, err = resources.Parse(res, "*"); err != nil {
			return nil, fmt.Errorf("agent %s: resources: %v", s.ID, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// flagString turns Mesos' summary map ({"cpus": 4, "ports": "[1-2]"})
// into the flag syntax, in name order so that the result is stable.
func flagString(m map[string]json.RawMessage) (string, error) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		if strings.ContainsAny(k, ":;()") {
			return "", fmt.Errorf("name %q has a character names cannot have", k)
		}
		var val string
		dec := json.NewDecoder(strings.NewReader(string(m[k])))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return "", fmt.Errorf("%s: %v", k, err)
		}
		switch x := v.(type) {
		case json.Number:
			val = x.String()
		case string:
			if strings.ContainsAny(x, ";") {
				return "", fmt.Errorf("%s: value %q has a ';'", k, x)
			}
			val = x
		default:
			return "", fmt.Errorf("%s: %s is neither a number nor a string", k, m[k])
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k + ":" + val)
	}
	return b.String(), nil
}

// Client fetches the list from a master.
type Client struct {
	HTTP *http.Client
}

// Agents GETs /slaves from the master at base (scheme://host:port).
func (c Client) Agents(ctx context.Context, base *url.URL) ([]Agent, error) {
	u := *base
	u.Path, u.RawQuery = "/slaves", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", u.String(), resp.Status, strings.TrimSpace(string(b)))
	}
	return Parse(resp.Body)
}
