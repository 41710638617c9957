// Package version holds what `km version` reports. KM is stamped at build
// time by the Makefile (-ldflags -X).
package version

// KM is the km release, stamped by the build.
var KM = "dev"

const (
	// Kubernetes is the version of the Kubernetes API and of the upstream
	// control plane that km embeds.
	Kubernetes = "v1.36.3"
	// MesosAPI is the Mesos HTTP API km speaks as scheduler and executor,
	// and serves as built-in master and agent.
	MesosAPI = "v1"
	// MesosCompat is the Apache Mesos release whose behaviour km's built-in
	// master and agent follow (and whose wire recordings km is tested on).
	MesosCompat = "1.11.0"
)
