// Package kube runs the upstream kube-apiserver and kube-controller-manager
// of k8s.io/kubernetes in this process (each in a km process of its own:
// one process per component keeps upstream's signal handling, logging and
// shutdown as they are).
package kube

import (
	_ "time/tzdata" // CronJob time zones, as upstream's main

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric
	"k8s.io/component-base/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// RunAPIServer runs the upstream kube-apiserver with args until it gets
// SIGTERM or SIGINT; it returns the exit code.
func RunAPIServer(args []string) int {
	cmd := apiserver.NewAPIServerCommand()
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

// RunControllerManager runs the upstream kube-controller-manager with args.
func RunControllerManager(args []string) int {
	cmd := controllermanager.NewControllerManagerCommand()
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

// VersionStamped says whether the binary was built with the Kubernetes
// version in its ldflags (make build does it). Without it the apiserver
// reports v0.0.0-master and kubectl refuses to talk to it.
func VersionStamped() (string, bool) {
	v := version.Get().GitVersion
	return v, v != "" && v[:min(len(v), 6)] != "v0.0.0"
}
