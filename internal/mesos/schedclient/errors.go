package schedclient

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// The messages of the ERROR events Mesos sends that a framework must tell
// apart (master.cpp), and km's built-in master sends alike.
const (
	msgFrameworkRemoved = "Framework has been removed"
	msgFailedOver       = "Framework failed over"
)

var (
	// ErrNotSubscribed is wrapped by the errors of calls made while there
	// is no subscription: before the first SUBSCRIBED, or between a
	// disconnection and the next SUBSCRIBED. The offers held from before
	// are void; wait for new ones.
	ErrNotSubscribed = errors.New("not subscribed to a Mesos master (calls are possible from SUBSCRIBED until the next disconnection)")

	// ErrFrameworkRemoved matches (errors.Is) the error Run returns when
	// the master answered ERROR "Framework has been removed": the framework
	// was torn down or stayed disconnected longer than its failover_timeout,
	// and its ID can never subscribe again.
	ErrFrameworkRemoved = errors.New("the Mesos master has removed the framework")

	// ErrFailedOver matches (errors.Is) the error Run returns when the
	// master answered ERROR "Framework failed over": another scheduler
	// subscribed with the same framework ID and now owns it.
	ErrFailedOver = errors.New("another scheduler subscribed with this framework ID")

	// ErrTornDown is returned by Run when the stream ends after a
	// successful Teardown: there is nothing left to resubscribe to.
	ErrTornDown = errors.New("the framework was torn down (TEARDOWN)")
)

// ErrorEvent is the master's ERROR event, as the error that ends Run. Mesos
// closes the stream after an ERROR, and resubscribing would not help: the
// subscription was refused (authorization, validation), the framework was
// removed, or another scheduler took it over.
type ErrorEvent struct {
	Message     string // the master's words
	FrameworkID string // the framework ID subscribed with, if any
	Master      string // host:port of the master that sent it
	// Subscribed tells whether the ERROR came after SUBSCRIBED (the
	// subscription was taken away) or instead of it (it was refused).
	Subscribed bool
}

func (e *ErrorEvent) Error() string {
	id := e.FrameworkID
	if id == "" {
		id = "(new framework)"
	}
	switch e.Message {
	case msgFrameworkRemoved:
		return fmt.Sprintf("the Mesos master at %s answered ERROR %q for framework %s: it was torn down or stayed disconnected longer than its failover_timeout, "+
			"its tasks are gone and its ID cannot subscribe again; forget the stored framework ID (FrameworkInfo.id) and start as a new framework",
			e.Master, e.Message, id)
	case msgFailedOver:
		return fmt.Sprintf("the Mesos master at %s answered ERROR %q: another scheduler subscribed as framework %s and owns it now; "+
			"this one must stop (subscribing again would take the framework back and the two would fight)", e.Master, e.Message, id)
	}
	if !e.Subscribed {
		return fmt.Sprintf("the Mesos master at %s refused to subscribe framework %s with ERROR %q: "+
			"fix the FrameworkInfo (roles, principal, capabilities) or the master's ACLs, then start again", e.Master, id, e.Message)
	}
	return fmt.Sprintf("the Mesos master at %s sent ERROR %q to framework %s and closed the stream", e.Master, e.Message, id)
}

// Is makes errors.Is(err, ErrFrameworkRemoved) and errors.Is(err,
// ErrFailedOver) work on the error Run returns.
func (e *ErrorEvent) Is(target error) bool {
	switch target {
	case ErrFrameworkRemoved:
		return e.Message == msgFrameworkRemoved
	case ErrFailedOver:
		return e.Message == msgFailedOver
	}
	return false
}

// StatusError is an answer of the master other than 200 (SUBSCRIBE,
// UPDATE_FRAMEWORK) or 202 (the other calls), with the master's explanation.
// Run returns it when SUBSCRIBE was refused with a 4xx (a configuration
// error); calls return it as is, so that callers can look at Code.
type StatusError struct {
	Call   schedulerpb.Call_Type
	Code   int
	Body   string // e.g. "Framework is not subscribed"
	Master string // host:port of the master that answered
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("the Mesos master at %s answered %s with %d %s", e.Master, e.Call, e.Code, http.StatusText(e.Code))
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg + e.hint()
}

func (e *StatusError) hint() string {
	switch e.Code {
	case http.StatusUnauthorized:
		return " (the master wants HTTP authentication: put an Authorization header, e.g. Basic, in Config.Header)"
	case http.StatusForbidden:
		if e.Call == schedulerpb.Call_SUBSCRIBE {
			return " (the principal is not allowed: check the credentials and FrameworkInfo.principal)"
		}
		return " (the framework is not subscribed on this master any more, or not allowed to do this: wait for the next SUBSCRIBED; held offers are void)"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return " (no Mesos v1 scheduler API at this address: check the master address and path)"
	case http.StatusNotAcceptable, http.StatusUnsupportedMediaType:
		return " (the master does not speak this encoding)"
	case http.StatusServiceUnavailable:
		return " (no leading master yet, or it is still recovering: try again later)"
	}
	switch {
	case e.Code/100 == 3:
		return " (a redirect this client does not follow: Mesos redirects to the leader with 307; is a proxy in the way?)"
	case e.Code/100 == 2 && e.Call == schedulerpb.Call_SUBSCRIBE:
		return " (a Mesos master answers SUBSCRIBE with 200 and an event stream: is this a Mesos master?)"
	}
	return ""
}

// transient answers to SUBSCRIBE can heal by themselves: 5xx (503 while
// there is no leader or the master recovers), 408 and 429. A 4xx is the
// master saying the request is wrong, and another 2xx or 3xx says the
// server is not what a Mesos master would be (a proxy's login redirect):
// asking again will not change that.
func (e *StatusError) transient() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// permanent marks an error that ends Run: retrying cannot help.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }
