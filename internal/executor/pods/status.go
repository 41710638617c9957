package pods

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Phase is the pod's phase as the kubelet computes it.
func (p *Pod) Phase() corev1.PodPhase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phaseLocked()
}

func (p *Pod) phaseLocked() corev1.PodPhase {
	if p.failed != "" {
		return corev1.PodFailed
	}
	if !p.initialized {
		return corev1.PodPending
	}
	running, succeeded, failed, waiting := 0, 0, 0, 0
	for _, c := range p.containers {
		switch {
		case c.state.Running != nil:
			running++
		case c.state.Terminated != nil && c.finished:
			if c.state.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		case c.state.Terminated != nil:
			running++ // about to restart
		default:
			if c.last.Terminated != nil {
				running++ // CrashLoopBackOff: the pod still runs
			} else {
				waiting++
			}
		}
	}
	if p.done && p.terminating {
		// Killed: nothing runs or restarts any more, whatever state a
		// container was left in (waiting out a CrashLoopBackOff, say).
		if succeeded == len(p.containers) {
			return corev1.PodSucceeded
		}
		return corev1.PodFailed
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case failed > 0:
		return corev1.PodFailed
	case succeeded == len(p.containers):
		return corev1.PodSucceeded
	}
	return corev1.PodRunning
}

// Status is the pod's status as the executor writes it.
func (p *Pod) Status(hostIP string) corev1.PodStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := metav1.Now()
	st := corev1.PodStatus{
		Phase:     p.phaseLocked(),
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     hostIP,
		PodIPs:    []corev1.PodIP{{IP: hostIP}},
		StartTime: &p.startTime,
		QOSClass:  p.spec.Status.QOSClass,
	}
	if p.failed != "" {
		st.Reason, st.Message = p.failReason, p.failed
	}
	allReady := len(p.containers) > 0
	for _, c := range p.containers {
		if !c.ready {
			allReady = false
		}
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s, reason = corev1.ConditionTrue, ""
		}
		return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now}
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, true, ""),
		cond(corev1.PodInitialized, p.initialized, "ContainersNotInitialized"),
		cond(corev1.ContainersReady, allReady, "ContainersNotReady"),
		cond(corev1.PodReady, allReady, "ContainersNotReady"),
		cond(corev1.PodScheduled, true, ""),
	}
	for _, c := range p.init {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status())
	}
	for _, c := range p.containers {
		st.ContainerStatuses = append(st.ContainerStatuses, c.status())
	}
	return st
}

func (c *container) status() corev1.ContainerStatus {
	started := c.state.Running != nil && c.started
	return corev1.ContainerStatus{
		Name:                 c.spec.Name,
		State:                c.state,
		LastTerminationState: c.last,
		Ready:                c.ready && c.state.Running != nil,
		RestartCount:         c.restarts,
		Image:                c.spec.Image,
		ImageID:              "",
		ContainerID:          "km-process://" + c.runID,
		Started:              &started,
	}
}

// Message explains a pod that cannot run ("" otherwise).
func (p *Pod) Message() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}
