package master

import "github.com/k8sm/k8sm/internal/mesos/resources"

func parseTestResources(s string) (resources.Resources, error) { return resources.Parse(s, "*") }
